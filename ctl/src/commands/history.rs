//! `strata history [-q] [--no-trunc] [-H=false] [--format json|TEMPLATE] IMAGE`

use strata_proto::engine::HistoryRequest;

use super::image_util::{ago, human_size, short_id};
use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only show image ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Print sizes and dates in human-readable form
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// "table" (default), "json" (one object per line), or a Go template ("{{.CreatedBy}}")
    #[arg(long, default_value = "table")]
    pub format: String,
    pub image: String,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    crate::format::check(&a.format)?;
    let rows = client
        .images()
        .history(HistoryRequest {
            image: a.image.clone(),
        })
        .await?
        .into_inner()
        .entries;
    let id = |s: &str| {
        if a.no_trunc || s == "<missing>" {
            s.to_string()
        } else {
            short_id(s)
        }
    };
    if a.quiet {
        for r in &rows {
            println!("{}", id(&r.id));
        }
        return Ok(0);
    }
    let objects: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "ID": id(&r.id), "CreatedAt": r.created, "CreatedSince": ago(r.created),
                "CreatedBy": r.created_by, "Size": human_size(r.size), "Comment": r.comment,
            })
        })
        .collect();
    let keys = [
        "ID",
        "CreatedAt",
        "CreatedSince",
        "CreatedBy",
        "Size",
        "Comment",
    ];
    let titles = [
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
    ];
    if crate::format::print_rows(&a.format, &keys, &titles, &objects)? {
        return Ok(0);
    }
    println!(
        "{:<15}{:<16}{:<47}{:<10}COMMENT",
        "IMAGE", "CREATED", "CREATED BY", "SIZE"
    );
    for r in &rows {
        let mut by = r.created_by.replace('\n', " ");
        if !a.no_trunc && by.chars().count() > 45 {
            by = format!("{}…", by.chars().take(44).collect::<String>());
        }
        let (created, size) = if a.human {
            (ago(r.created), human_size(r.size))
        } else {
            (r.created.to_string(), r.size.to_string())
        };
        println!(
            "{:<15}{:<16}{:<47}{:<10}{}",
            id(&r.id),
            created,
            by,
            size,
            r.comment
        );
    }
    Ok(0)
}
