//! `strata stats`: CPU, memory, pids and block I/O from the containers' cgroups (v1 or v2, as
//! the runtime made them), network bytes from their first process's `/proc/<pid>/net/dev`.
//!
//! Memory is the usage minus the inactive file cache, as Docker's CLI shows it; CPU is the
//! percent of one CPU used between two samples (200 = two CPUs busy). A sample a second is
//! sent while streaming; a single answer also waits a second, so its CPU figure is real.

use std::time::{Duration, Instant};

use strata_proto::engine::{ContainerStats, StatsResponse};
use tokio::sync::mpsc;

use super::record::{Record, Status};
use super::{Containers, Result};

/// The sampling interval.
const INTERVAL: Duration = Duration::from_secs(1);

/// One reading of a container.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    cpu_ns: u64,
    stats: ContainerStats,
}

/// Received and transmitted bytes of every interface but `lo`, from a `/proc/<pid>/net/dev`.
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// A container's reading now (zeros when it is not running).
fn sample(runtime_root: &std::path::Path, rec: &Record) -> Sample {
    let mut s = Sample {
        at: Instant::now(),
        cpu_ns: 0,
        stats: ContainerStats {
            id: rec.id.clone(),
            name: rec.name.clone(),
            ..Default::default()
        },
    };
    if !matches!(rec.state.status, Status::Running | Status::Paused) {
        return s;
    }
    let cgroup = strata_runtime::Container::load(runtime_root, &rec.id)
        .ok()
        .and_then(|c| c.cgroup().cloned());
    if let Some(cg) = cgroup {
        match cg.cpu_usage_ns() {
            Ok(n) => s.cpu_ns = n,
            Err(e) => tracing::debug!(%e, id = rec.id, "reading cpu usage failed"),
        }
        match cg.usage() {
            Ok(u) => {
                s.stats.memory_usage = u.memory.saturating_sub(u.inactive_file);
                s.stats.memory_limit = u.memory_limit.unwrap_or(0);
                s.stats.pids = u.pids;
                s.stats.block_read = u.block_read;
                s.stats.block_write = u.block_write;
            }
            Err(e) => tracing::debug!(%e, id = rec.id, "reading cgroup usage failed"),
        }
    }
    // Host networking has no interfaces of its own (Docker shows none either).
    if rec.settings.network_mode != "host" && rec.state.pid > 0 {
        if let Ok(t) = std::fs::read_to_string(format!("/proc/{}/net/dev", rec.state.pid)) {
            (s.stats.net_rx, s.stats.net_tx) = parse_net_dev(&t);
        }
    }
    s.stats.cpu_total_nanos = s.cpu_ns;
    s
}

/// The percent of one CPU used between two readings.
fn cpu_percent(prev: &Sample, now: &Sample) -> f64 {
    let wall = now.at.duration_since(prev.at).as_nanos() as f64;
    if wall <= 0.0 || now.cpu_ns < prev.cpu_ns {
        return 0.0;
    }
    (now.cpu_ns - prev.cpu_ns) as f64 / wall * 100.0
}

impl Containers {
    /// The containers to show: the named ones (each must exist), or every running one (with
    /// `all`, every one).
    fn stats_targets(&self, named: &[String], all: bool) -> Result<Vec<Record>> {
        if named.is_empty() {
            let mut recs = self.records.all()?;
            recs.retain(|r| all || matches!(r.state.status, Status::Running | Status::Paused));
            recs.sort_by(|a, b| b.created.cmp(&a.created));
            return Ok(recs);
        }
        named.iter().map(|n| self.resolve(n)).collect()
    }

    /// Streams samples of the containers to `tx`: one round after a second, or (`stream`) a
    /// round a second until the client goes. Unknown names fail before anything is sent.
    pub fn stats(
        self: &std::sync::Arc<Self>,
        named: Vec<String>,
        all: bool,
        stream: bool,
        tx: mpsc::Sender<Result<StatsResponse, tonic::Status>>,
    ) -> Result<()> {
        let first = self.stats_targets(&named, all)?;
        let ids: Vec<String> = first.iter().map(|r| r.id.clone()).collect();
        let me = self.clone();
        tokio::spawn(async move {
            let Some(mut prev) = me.sample_all(first).await else {
                return;
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = tx.closed() => return,
                }
                let targets = me.stats_refresh(&named, &ids, all);
                let Some(now) = me.sample_all(targets).await else {
                    return;
                };
                let stats = now
                    .iter()
                    .map(|s| {
                        let mut c = s.stats.clone();
                        if let Some(p) = prev.iter().find(|p| p.stats.id == c.id) {
                            c.cpu_percent = cpu_percent(p, s);
                        }
                        c
                    })
                    .collect();
                if tx.send(Ok(StatsResponse { stats })).await.is_err() || !stream {
                    return;
                }
                prev = now;
            }
        });
        Ok(())
    }

    /// Reads every container (on a blocking thread).
    async fn sample_all(&self, recs: Vec<Record>) -> Option<Vec<Sample>> {
        let root = self.runtime_root.clone();
        tokio::task::spawn_blocking(move || recs.iter().map(|r| sample(&root, r)).collect())
            .await
            .ok()
    }

    /// The targets again: the named containers that still exist, or the current list.
    fn stats_refresh(&self, named: &[String], ids: &[String], all: bool) -> Vec<Record> {
        if named.is_empty() {
            return self.stats_targets(&[], all).unwrap_or_default();
        }
        ids.iter()
            .filter_map(|id| self.records.get(id).ok().flatten())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
                 eth0:    2000      10    0    0    0     0          0         0      300       3    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(t), (2000, 300));
    }

    #[test]
    fn cpu_percent_of_one_cpu() {
        let at = Instant::now();
        let a = Sample {
            at,
            cpu_ns: 0,
            stats: ContainerStats::default(),
        };
        let b = Sample {
            at: at + Duration::from_secs(1),
            cpu_ns: 2_000_000_000,
            stats: ContainerStats::default(),
        };
        assert!((cpu_percent(&a, &b) - 200.0).abs() < 1e-9);
    }
}
