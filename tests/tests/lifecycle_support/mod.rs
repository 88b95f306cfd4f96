//! What the restart-policy, events and live-restore tests share: an engine with busybox, a
//! container's inspect document, and bounded waits for a condition.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use strata_tests::engine::Engine;
pub use strata_tests::engine::{check, engine};

/// The container's inspect document.
pub fn inspect(e: &Engine, name: &str) -> Result<Value> {
    let doc: Value = serde_json::from_str(&e.ok(&["inspect", name])?)
        .with_context(|| format!("inspect {name}"))?;
    Ok(doc[0].clone())
}

/// `State.Status` and `RestartCount`.
pub fn status(e: &Engine, name: &str) -> Result<(String, u64)> {
    let d = inspect(e, name)?;
    Ok((
        d["State"]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        d["RestartCount"].as_u64().unwrap_or(0),
    ))
}

/// Waits (a minute at most: a bound for a failing test, not a timing requirement) until
/// `cond` holds; `what` names it in the error.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("waited a minute for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the container has this status (and, if given, restart count).
pub fn wait_status(e: &Engine, name: &str, want: &str, count: Option<u64>) -> Result<()> {
    let mut last = (String::new(), 0);
    wait_for(&format!("{name} to be {want} ({count:?} restarts)"), || {
        last = status(e, name)?;
        Ok(last.0 == want && count.is_none_or(|c| c == last.1))
    })
    .with_context(|| format!("{name} is {} after {} restarts", last.0, last.1))
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The container's first process, from inspect.
pub fn pid(e: &Engine, name: &str) -> Result<i64> {
    inspect(e, name)?["State"]["Pid"]
        .as_i64()
        .filter(|p| *p > 0)
        .with_context(|| format!("{name} has no pid"))
}

/// A `strata` command whose output lines are read as they come (`logs -f`, `events`); it is
/// killed when dropped.
pub struct Lines {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    /// Runs `strata ARGS` against the engine.
    pub fn spawn(e: &Engine, args: &[&str]) -> Result<Lines> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(strata_tests::harness::find_binary("strata"))
            .arg("--address")
            .arg(&e.address)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("run strata")?;
        let out = child.stdout.take().context("strata's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Ok(Lines { child, rx })
    }

    /// The next line, if one comes within `within`.
    pub fn next(&self, within: Duration) -> Option<String> {
        self.rx.recv_timeout(within).ok()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
