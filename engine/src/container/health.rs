//! Health checks, as Docker's: the image's `HEALTHCHECK` or `--health-cmd` and its timings,
//! run in the container (as an exec) every interval while it runs. A probe that exits 0 makes
//! it `healthy`; `retries` failures in a row (not counting those in the start period) make it
//! `unhealthy`; it is `starting` until one of those. `inspect` shows `State.Health` (status,
//! failing streak, the last five probes), `ps` the status beside `Up …`, and a change emits
//! Docker's `health_status: …` event.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strata_proto::engine::exec_output::Kind;

use super::exec::ExecSpec;
use super::record::{Settings, Status};
use super::Containers;

/// Docker's defaults.
const INTERVAL: i64 = 30_000_000_000;
const TIMEOUT: i64 = 30_000_000_000;
const RETRIES: i32 = 3;
/// Probes kept in `State.Health.Log`.
const KEEP: usize = 5;
/// Output kept of each probe.
const MAX_OUTPUT: usize = 4096;

/// A health check: Docker's `Config.Healthcheck` (times in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// `["CMD-SHELL", cmd]`, `["CMD", arg…]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub retries: i32,
}

/// One probe, as `State.Health.Log` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// starting, healthy or unhealthy.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

/// The check in force for a container: its flags over its image's; `None` for none.
pub fn effective(s: &Settings) -> Option<HealthConfig> {
    if s.no_healthcheck {
        return None;
    }
    let image = s.image_healthcheck.clone().unwrap_or_default();
    let test = if s.health_cmd.is_empty() {
        image.test
    } else {
        vec!["CMD-SHELL".into(), s.health_cmd.clone()]
    };
    if test.is_empty() || test[0] == "NONE" {
        return None;
    }
    let pick = |flag: i64, image: i64, default: i64| {
        if flag > 0 {
            flag
        } else if image > 0 {
            image
        } else {
            default
        }
    };
    Some(HealthConfig {
        test,
        interval: pick(s.health_interval, image.interval, INTERVAL),
        timeout: pick(s.health_timeout, image.timeout, TIMEOUT),
        start_period: pick(s.health_start_period, image.start_period, 0),
        retries: if s.health_retries > 0 {
            s.health_retries
        } else if image.retries > 0 {
            image.retries
        } else {
            RETRIES
        },
    })
}

/// Refuses bad health flags before anything is made.
pub fn check(s: &Settings) -> Result<(), String> {
    for (flag, v) in [
        ("--health-interval", s.health_interval),
        ("--health-timeout", s.health_timeout),
        ("--health-start-period", s.health_start_period),
    ] {
        if v < 0 {
            return Err(format!("invalid {flag}: a duration cannot be negative"));
        }
        if v > 0 && v < 1_000_000 {
            return Err(format!("invalid {flag}: the minimum is 1ms"));
        }
    }
    if s.health_retries < 0 {
        return Err("invalid --health-retries: it cannot be negative".into());
    }
    if s.no_healthcheck && !s.health_cmd.is_empty() {
        return Err("--no-healthcheck conflicts with --health-cmd".into());
    }
    Ok(())
}

/// The command a probe runs.
fn command(test: &[String]) -> Vec<String> {
    match test.first().map(String::as_str) {
        Some("CMD-SHELL") => vec![
            "/bin/sh".into(),
            "-c".into(),
            test.get(1).cloned().unwrap_or_default(),
        ],
        Some("CMD") => test[1..].to_vec(),
        _ => test.to_vec(),
    }
}

/// `Config.Healthcheck`, as Docker's.
pub fn config_doc(s: &Settings) -> Value {
    match effective(s) {
        Some(c) => json!({
            "Test": c.test,
            "Interval": c.interval,
            "Timeout": c.timeout,
            "StartPeriod": c.start_period,
            "Retries": c.retries,
        }),
        None => Value::Null,
    }
}

/// `State.Health`, as Docker's.
pub fn state_doc(h: &Option<Health>) -> Value {
    match h {
        Some(h) => json!({
            "Status": h.status,
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|p| json!({
                "Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output,
            })).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    }
}

/// What `ps` adds to `Up …`.
pub fn ps_suffix(h: &Option<Health>) -> String {
    match h.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".into(),
        Some(s) if !s.is_empty() => format!(" ({s})"),
        _ => String::new(),
    }
}

/// Where a probe leaves the health: `Some(status)` when it changes.
fn record(h: &mut Health, probe: Probe, retries: i32, in_start_period: bool) -> Option<String> {
    let before = h.status.clone();
    if probe.exit_code == 0 {
        h.failing_streak = 0;
        h.status = "healthy".into();
    } else if !in_start_period || h.status == "healthy" {
        h.failing_streak += 1;
        if h.failing_streak >= retries as u32 {
            h.status = "unhealthy".into();
        }
    }
    h.log.push(probe);
    if h.log.len() > KEEP {
        h.log.remove(0);
    }
    (h.status != before).then(|| h.status.clone())
}

impl Containers {
    /// Checks the health of container `id` while the run that started at `started_at` lasts.
    pub(super) fn watch_health(self: &Arc<Self>, id: &str, started_at: &str) {
        let Ok(Some(rec)) = self.records.get(id) else {
            return;
        };
        let Some(config) = effective(&rec.settings) else {
            return;
        };
        let (me, id, run) = (self.clone(), id.to_string(), started_at.to_string());
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            let start_period = Duration::from_nanos(config.start_period as u64);
            loop {
                tokio::time::sleep(Duration::from_nanos(config.interval as u64)).await;
                match me.run_status(&id, &run) {
                    None => return,
                    // As Docker's: no probe of a paused container.
                    Some(Status::Paused) => continue,
                    Some(_) => {}
                }
                let in_start_period = began.elapsed() < start_period;
                let probe = me.probe(&id, &config).await;
                let lock = me.lock(&id);
                let _g = lock.lock().await;
                let Ok(Some(mut rec)) = me.records.get(&id) else {
                    return;
                };
                if rec.state.status != Status::Running || rec.state.started_at != run {
                    return;
                }
                let mut h = rec.state.health.take().unwrap_or_default();
                let changed = record(&mut h, probe, config.retries, in_start_period);
                rec.state.health = Some(h);
                if let Err(e) = me.records.update_unflushed(&rec) {
                    tracing::warn!(%e, id, "recording a health check failed");
                }
                me.notify(&rec);
                if let Some(status) = changed {
                    me.emit(&rec, &format!("health_status: {status}"));
                }
            }
        });
    }

    /// The status of the container's run that started at `run`, while it runs or is paused.
    fn run_status(&self, id: &str, run: &str) -> Option<Status> {
        match self.records.get(id) {
            Ok(Some(r))
                if matches!(r.state.status, Status::Running | Status::Paused)
                    && r.state.started_at == run =>
            {
                Some(r.state.status)
            }
            _ => None,
        }
    }

    /// Runs one probe; a probe over its timeout is killed and fails.
    async fn probe(self: &Arc<Self>, id: &str, config: &HealthConfig) -> Probe {
        let start = strata_runtime::state::now_rfc3339();
        let timeout = Duration::from_nanos(config.timeout as u64);
        let spec = ExecSpec {
            cmd: command(&config.test),
            timeout: Some(timeout),
            ..Default::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let began = tokio::time::Instant::now();
        let mut output = Vec::new();
        let mut code = -1;
        match self.exec(id, spec, tokio_stream::empty(), tx).await {
            Ok(()) => {
                while let Some(m) = rx.recv().await {
                    match m.map(|o| o.kind) {
                        Ok(Some(Kind::Stdout(d))) | Ok(Some(Kind::Stderr(d))) => {
                            output.extend_from_slice(&d)
                        }
                        Ok(Some(Kind::ExitCode(c))) => code = c,
                        Ok(_) => {}
                        Err(s) => output.extend_from_slice(s.message().as_bytes()),
                    }
                }
            }
            Err(e) => output.extend_from_slice(e.to_string().as_bytes()),
        }
        let mut output =
            String::from_utf8_lossy(&output[..output.len().min(MAX_OUTPUT)]).into_owned();
        if began.elapsed() >= timeout {
            code = -1;
            output = format!("Health check exceeded timeout ({timeout:?})");
        }
        Probe {
            start,
            end: strata_runtime::state::now_rfc3339(),
            exit_code: code,
            output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn flags_win_over_the_image_and_defaults_fill_in() {
        let mut s = Settings {
            image_healthcheck: Some(HealthConfig {
                test: vec!["CMD".into(), "check".into()],
                interval: 5_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = effective(&s).unwrap();
        assert_eq!(c.test, vec!["CMD", "check"]);
        assert_eq!(
            (c.interval, c.timeout, c.retries),
            (5_000_000_000, TIMEOUT, RETRIES)
        );
        s.health_cmd = "true".into();
        s.health_retries = 1;
        let c = effective(&s).unwrap();
        assert_eq!(c.test, vec!["CMD-SHELL", "true"]);
        assert_eq!(c.retries, 1);
        assert_eq!(command(&c.test), vec!["/bin/sh", "-c", "true"]);
        s.no_healthcheck = true;
        assert!(effective(&s).is_none());
        s.no_healthcheck = false;
        s.health_cmd.clear();
        s.image_healthcheck = Some(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        });
        assert!(effective(&s).is_none());
    }

    #[test]
    fn statuses_follow_dockers_rules() {
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        // In the start period failures do not count.
        assert_eq!(record(&mut h, probe(1), 2, true), None);
        assert_eq!(h.failing_streak, 0);
        assert_eq!(record(&mut h, probe(1), 2, false), None);
        assert_eq!(record(&mut h, probe(1), 2, false), Some("unhealthy".into()));
        assert_eq!(record(&mut h, probe(0), 2, false), Some("healthy".into()));
        assert_eq!(h.failing_streak, 0);
        for _ in 0..10 {
            record(&mut h, probe(0), 2, false);
        }
        assert_eq!(h.log.len(), KEEP);
        assert_eq!(ps_suffix(&Some(h)), " (healthy)");
    }

    #[test]
    fn bad_flags_are_named() {
        let bad = |s: Settings| check(&s).unwrap_err();
        assert!(bad(Settings {
            health_interval: -1,
            ..Default::default()
        })
        .contains("--health-interval"));
        assert!(bad(Settings {
            health_timeout: 10,
            ..Default::default()
        })
        .contains("the minimum is 1ms"));
        assert!(bad(Settings {
            health_retries: -2,
            ..Default::default()
        })
        .contains("--health-retries"));
        assert!(bad(Settings {
            no_healthcheck: true,
            health_cmd: "x".into(),
            ..Default::default()
        })
        .contains("conflicts"));
    }
}
