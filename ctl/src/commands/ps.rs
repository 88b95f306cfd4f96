//! `strata ps [-a] [-q] [--format json|TEMPLATE]`

use strata_proto::engine::ListContainersRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show all containers (default: only running ones)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// "table" (default), "json", or a Go template ("table {{.ID}}\t{{.Names}}")
    #[arg(long, default_value = "table")]
    pub format: String,
}

fn ago(created: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let d = (now - created).max(0);
    match d {
        0..=59 => format!("{d} seconds ago"),
        60..=3599 => format!("{} minutes ago", d / 60),
        3600..=86_399 => format!("{} hours ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    }
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    crate::format::check(&a.format)?;
    let list = client
        .containers()
        .list(ListContainersRequest { all: a.all })
        .await?
        .into_inner()
        .containers;
    if a.quiet {
        for c in &list {
            println!(
                "{}",
                if a.no_trunc {
                    &c.id
                } else {
                    &c.id[..12.min(c.id.len())]
                }
            );
        }
        return Ok(0);
    }
    let objects: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            serde_json::json!({
                "ID": if a.no_trunc { c.id.clone() } else { c.id.chars().take(12).collect() },
                "Names": c.name, "Image": c.image, "Command": c.command,
                "CreatedAt": c.created, "RunningFor": ago(c.created), "State": c.state,
                "Status": c.status, "Ports": c.ports,
            })
        })
        .collect();
    let keys = [
        "ID",
        "Names",
        "Image",
        "Command",
        "CreatedAt",
        "RunningFor",
        "State",
        "Status",
        "Ports",
    ];
    let titles = [
        ("ID", "CONTAINER ID"),
        ("RunningFor", "CREATED"),
        ("CreatedAt", "CREATED AT"),
    ];
    if crate::format::print_rows(&a.format, &keys, &titles, &objects)? {
        return Ok(0);
    }
    let mut rows = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    .map(String::from)];
    for c in &list {
        let mut cmd = format!("\"{}\"", c.command);
        if !a.no_trunc && cmd.chars().count() > 22 {
            cmd = format!("{}…\"", cmd.chars().take(20).collect::<String>());
        }
        let id = if a.no_trunc {
            c.id.clone()
        } else {
            c.id.chars().take(12).collect()
        };
        rows.push([
            id,
            c.image.clone(),
            cmd,
            ago(c.created),
            c.status.clone(),
            c.ports.clone(),
            c.name.clone(),
        ]);
    }
    print!("{}", crate::table::render(&rows));
    Ok(0)
}
