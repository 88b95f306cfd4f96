//! `strata images [-q] [-a] [--no-trunc] [--format json|TEMPLATE] [REPOSITORY[:TAG]]`

use strata_proto::engine::ListImagesRequest;

use super::image_util::{ago, human_size, short_id};
use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only show image ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show all images (there are no intermediate images; accepted for Docker's sake)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Don't truncate ids
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// "table" (default), "json" (one object per line), or a Go template ("{{.Repository}}")
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only images whose repository (and tag) match
    pub repository: Option<String>,
}

/// Splits a familiar reference into repository and tag.
fn repo_tag(t: &str) -> (String, String) {
    let slash = t.rfind('/').map_or(0, |i| i + 1);
    match t[slash..].rfind(':') {
        Some(i) => (t[..slash + i].to_string(), t[slash + i + 1..].to_string()),
        None => (t.to_string(), "<none>".to_string()),
    }
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    crate::format::check(&a.format)?;
    let list = client
        .images()
        .list(ListImagesRequest {})
        .await?
        .into_inner()
        .images;
    let mut rows = Vec::new();
    for i in &list {
        let tags: Vec<(String, String)> = if i.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.tags.iter().map(|t| repo_tag(t)).collect()
        };
        for (repo, tag) in tags {
            if let Some(filter) = &a.repository {
                let (frepo, ftag) = repo_tag(filter);
                if frepo != repo || (ftag != "<none>" && ftag != tag) {
                    continue;
                }
            }
            rows.push((repo, tag, i));
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for (_, _, i) in &rows {
            if seen.insert(&i.id) {
                println!(
                    "{}",
                    if a.no_trunc {
                        i.id.clone()
                    } else {
                        short_id(&i.id)
                    }
                );
            }
        }
        return Ok(0);
    }
    let objects: Vec<serde_json::Value> = rows
        .iter()
        .map(|(repo, tag, i)| {
            serde_json::json!({
                "ID": if a.no_trunc { i.id.clone() } else { short_id(&i.id) },
                "Repository": repo, "Tag": tag, "CreatedAt": i.created,
                "CreatedSince": ago(i.created), "Size": human_size(i.size),
            })
        })
        .collect();
    let keys = [
        "ID",
        "Repository",
        "Tag",
        "CreatedAt",
        "CreatedSince",
        "Size",
    ];
    let titles = [
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
    ];
    if crate::format::print_rows(&a.format, &keys, &titles, &objects)? {
        return Ok(0);
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(10) + 3;
    let tw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6) + 3;
    let id_w = if a.no_trunc { 74 } else { 15 };
    println!(
        "{:<w$}{:<tw$}{:<id_w$}{:<16}SIZE",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
    );
    for (repo, tag, i) in &rows {
        let id = if a.no_trunc {
            i.id.clone()
        } else {
            short_id(&i.id)
        };
        println!(
            "{repo:<w$}{tag:<tw$}{id:<id_w$}{:<16}{}",
            ago(i.created),
            human_size(i.size)
        );
    }
    Ok(0)
}
