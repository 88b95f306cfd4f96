//! `strata logs [-f] [--tail N] [-t] CONTAINER`

use std::io::Write;

use strata_proto::engine::LogsRequest;

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Follow the output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub container: String,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let tail = if a.tail == "all" {
        -1
    } else {
        a.tail
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                Failure::new(format!("invalid --tail {:?}: use a number or all", a.tail))
            })?
    };
    let mut s = client
        .containers()
        .logs(LogsRequest {
            container: a.container,
            follow: a.follow,
            tail,
            timestamps: a.timestamps,
        })
        .await?
        .into_inner();
    while let Some(e) = s.message().await? {
        let mut line = Vec::new();
        if a.timestamps {
            line.extend_from_slice(e.time.as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(&e.line);
        if e.stream == "stderr" {
            std::io::stderr().lock().write_all(&line)?;
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&line)?;
            o.flush()?;
        }
    }
    Ok(0)
}
