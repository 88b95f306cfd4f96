//! `strata stats [--no-stream] [-a] [--no-trunc] [CONTAINER...]`: CPU, memory, network, block
//! I/O and pids of containers, as Docker's table shows them; a new sample a second (the
//! screen cleared first on a terminal) until interrupted, or one with `--no-stream`.

use std::io::{IsTerminal, Write};

use strata_proto::engine::{ContainerStats, StatsRequest};

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show all containers (default: only running ones)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print one sample and exit
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Don't truncate ids
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    pub containers: Vec<String>,
}

/// `v` with `digits` significant digits and no trailing zeros, as Go's `%.<digits>g` prints
/// the numbers Docker's size units give it.
fn significant(v: f64, digits: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let int_digits = v.abs().log10().floor() as i32 + 1;
    let decimals = (digits - int_digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Bytes in binary units with four significant digits (`1.496MiB`), as Docker's memory column.
pub fn binary_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", significant(v, 4), UNITS[u])
}

/// Bytes in decimal units with three significant digits (`1.01kB`), as Docker's I/O columns.
pub fn decimal_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{}{}", significant(v, 3), UNITS[u])
}

/// The host's memory (what an unlimited container's limit shows), from /proc/meminfo.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let kb = l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}

fn row(s: &ContainerStats, host_mem: u64, no_trunc: bool) -> [String; 8] {
    let id = if no_trunc {
        s.id.clone()
    } else {
        s.id.chars().take(12).collect()
    };
    // A running container has at least one process; a stopped one shows zeros, as in Docker.
    let (mem, mem_pct) = if s.pids == 0 {
        ("0B / 0B".to_string(), 0.0)
    } else {
        let limit = if s.memory_limit == 0 {
            host_mem
        } else {
            s.memory_limit
        };
        let pct = if limit > 0 {
            s.memory_usage as f64 / limit as f64 * 100.0
        } else {
            0.0
        };
        (
            format!("{} / {}", binary_size(s.memory_usage), binary_size(limit)),
            pct,
        )
    };
    [
        id,
        s.name.clone(),
        format!("{:.2}%", s.cpu_percent),
        mem,
        format!("{mem_pct:.2}%"),
        format!("{} / {}", decimal_size(s.net_rx), decimal_size(s.net_tx)),
        format!(
            "{} / {}",
            decimal_size(s.block_read),
            decimal_size(s.block_write)
        ),
        s.pids.to_string(),
    ]
}

fn table(stats: &[ContainerStats], host_mem: u64, no_trunc: bool) -> String {
    let mut rows = vec![[
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]
    .map(String::from)];
    rows.extend(stats.iter().map(|s| row(s, host_mem, no_trunc)));
    crate::table::render(&rows)
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let mut stream = client
        .containers()
        .stats(StatsRequest {
            containers: a.containers,
            stream: !a.no_stream,
            all: a.all,
        })
        .await?
        .into_inner();
    let host_mem = host_memory();
    let clear = !a.no_stream && std::io::stdout().is_terminal();
    while let Some(sample) = stream.message().await? {
        let mut out = std::io::stdout().lock();
        let text = table(&sample.stats, host_mem, a.no_trunc);
        let written = if clear {
            write!(out, "\x1b[2J\x1b[H{text}")
        } else {
            write!(out, "{text}")
        };
        written
            .and_then(|()| out.flush())
            .map_err(|e| Failure::new(format!("write the stats: {e}")))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(binary_size(1_568_768), "1.496MiB");
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(8_345_000_000), "7.772GiB");
        assert_eq!(decimal_size(1_010), "1.01kB");
        assert_eq!(decimal_size(648), "648B");
        assert_eq!(decimal_size(0), "0B");
    }

    #[test]
    fn a_stopped_container_shows_zeros() {
        let s = ContainerStats {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            ..Default::default()
        };
        let r = row(&s, 1 << 30, false);
        assert_eq!(r[0], "0123456789ab");
        assert_eq!(r[3], "0B / 0B");
        assert_eq!(r[4], "0.00%");
        let running = ContainerStats {
            pids: 1,
            memory_usage: 1 << 20,
            ..s
        };
        assert_eq!(row(&running, 1 << 30, false)[3], "1MiB / 1GiB");
    }
}
