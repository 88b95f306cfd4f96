//! `strata container prune`, `strata image prune` and `strata system prune`: Docker's warning
//! and `[y/N]` question (unless `-f`), then what was deleted and the space reclaimed, as Docker
//! prints them.

use std::io::{BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use strata_proto::engine::{
    PruneContainersRequest, PruneImagesRequest, PruneResponse, SystemPruneRequest,
};

use super::image_util::human_size;
use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Only containers matching: until=<time> (RFC 3339, Unix seconds or a duration like 10m
    /// before now), label=<key>[=<value>], label!=<key>[=<value>]
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct SystemArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Remove anonymous volumes no container uses too
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Prints `warning` and Docker's question; true only for "y" (or "Y").
pub(super) fn confirm(warning: &str) -> CmdResult<bool> {
    let mut out = std::io::stdout().lock();
    write!(out, "{warning}\nAre you sure you want to continue? [y/N] ")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(format!("write the question: {e}")))?;
    let mut answer = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::new(format!("read the answer: {e}")))?;
    if n == 0 {
        // No answer (end of input): end the question's line.
        println!();
    }
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}

/// "Deleted Containers:" and the ids, then a blank line; nothing when none was deleted.
pub(super) fn section(title: &str, lines: impl IntoIterator<Item = String>) -> String {
    let lines: Vec<String> = lines.into_iter().collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut s = format!("Deleted {title}:\n");
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s.push('\n');
    s
}

fn images_section(r: &PruneResponse) -> String {
    let untagged = r.untagged.iter().map(|t| format!("untagged: {t}"));
    let deleted = r.deleted.iter().map(|d| format!("deleted: {d}"));
    section("Images", untagged.chain(deleted))
}

pub(super) fn total(space: u64) -> String {
    format!("Total reclaimed space: {}\n", human_size(space as i64))
}

/// `until=<time>` as Unix seconds (the engine takes those), other filters as given.
fn container_filters(filters: &[String]) -> CmdResult<Vec<String>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    filters
        .iter()
        .map(|f| match f.split_once('=') {
            Some(("until", t)) => {
                let nanos = super::events::parse_time(t, now)
                    .map_err(|e| Failure::new(format!("invalid filter {f:?}: {e}")))?;
                Ok(format!("until={:.9}", nanos as f64 / 1e9))
            }
            Some(("label" | "label!", v)) if !v.is_empty() => Ok(f.clone()),
            _ => Err(Failure::new(format!(
                "invalid filter {f:?}: use until=<time>, label=<key>[=<value>] or label!=<key>[=<value>]"
            ))),
        })
        .collect()
}

pub async fn containers(a: ContainerArgs, client: &Client) -> CmdResult<i32> {
    let filters = container_filters(&a.filter)?;
    if !a.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let r = client
        .containers()
        .prune(PruneContainersRequest { filters })
        .await?
        .into_inner();
    print!(
        "{}{}",
        section("Containers", r.deleted.clone()),
        total(r.space_reclaimed)
    );
    Ok(0)
}

pub async fn images(a: ImageArgs, client: &Client) -> CmdResult<i32> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning)? {
        return Ok(0);
    }
    let r = client
        .images()
        .prune(PruneImagesRequest { all: a.all })
        .await?
        .into_inner();
    print!("{}{}", images_section(&r), total(r.space_reclaimed));
    Ok(0)
}

pub async fn system(a: SystemArgs, client: &Client) -> CmdResult<i32> {
    let mut warning = "WARNING! This will remove:\n  - all stopped containers\n".to_string();
    if a.volumes {
        warning.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    warning.push_str(if a.all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    if !a.force && !confirm(&warning)? {
        return Ok(0);
    }
    let r = client
        .system()
        .prune(SystemPruneRequest {
            all: a.all,
            volumes: a.volumes,
        })
        .await?
        .into_inner();
    let (c, v, i) = (
        r.containers.unwrap_or_default(),
        r.volumes.unwrap_or_default(),
        r.images.unwrap_or_default(),
    );
    print!(
        "{}{}{}{}",
        section("Containers", c.deleted.clone()),
        section("Volumes", v.deleted.clone()),
        images_section(&i),
        total(c.space_reclaimed + v.space_reclaimed + i.space_reclaimed)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_as_docker_prints_it() {
        assert_eq!(section("Containers", Vec::new()), "");
        assert_eq!(
            section("Containers", vec!["abc".to_string()]),
            "Deleted Containers:\nabc\n\n"
        );
        let r = PruneResponse {
            deleted: vec!["sha256:1".into()],
            untagged: vec!["old:v1".into()],
            space_reclaimed: 1_200_000,
        };
        assert_eq!(
            images_section(&r),
            "Deleted Images:\nuntagged: old:v1\ndeleted: sha256:1\n\n"
        );
        assert_eq!(total(1_200_000), "Total reclaimed space: 1.2MB\n");
        assert_eq!(total(0), "Total reclaimed space: 0B\n");
    }

    #[test]
    fn filters_are_checked_and_times_made_absolute() {
        let f = container_filters(&["until=1700000000".into(), "label=a=b".into()]).unwrap();
        assert_eq!(f, ["until=1700000000.000000000", "label=a=b"]);
        assert!(container_filters(&["until=soon".into()]).is_err());
        assert!(container_filters(&["name=x".into()]).is_err());
        assert!(container_filters(&["label=".into()]).is_err());
    }
}
