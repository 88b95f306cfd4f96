//! End-to-end: health checks as Docker's — `--health-*` flags and the image's `HEALTHCHECK`,
//! `starting` → `unhealthy` → `healthy` seen in `ps`, `inspect` and events, a probe over its
//! timeout killed, none while paused, checks kept across an engine restart, `--no-healthcheck`,
//! bad values refused.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use strata_tests::engine::{check, engine, Engine, BUSYBOX};
use strata_tests::image::{busybox_layer, docker_archive_with};

/// `State.Health` of a container.
fn health(e: &Engine, name: &str) -> Result<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", name])?)?;
    Ok(doc[0]["State"]["Health"].clone())
}

/// Waits until the container's health status is `want`.
fn wait_status(e: &Engine, name: &str, want: &str) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = health(e, name)?;
        if h["Status"] == want {
            return Ok(h);
        }
        ensure!(Instant::now() < deadline, "{name} is not {want}: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn engine_health_goes_from_starting_to_unhealthy_to_healthy() {
    let mut e = engine();
    check((|| {
        let since = e.ok(&["version", "-f", "{{.Server.Version}}"]).map(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })?;
        e.ok(&[
            "run",
            "-d",
            "--name",
            "h",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "100ms",
            "--health-retries",
            "2",
            BUSYBOX,
            "sleep",
            "60",
        ])?;
        let h = health(&e, "h")?;
        ensure!(
            h["Status"] == "starting" || h["Status"] == "unhealthy",
            "{h}"
        );
        let h = wait_status(&e, "h", "unhealthy")?;
        ensure!(
            h["FailingStreak"].as_u64() >= Some(2) && h["Log"][0]["ExitCode"] == 1,
            "{h}"
        );
        ensure!(e
            .ok(&["ps", "--format", "{{.Status}}"])?
            .contains("(unhealthy)"));
        e.ok(&["exec", "h", "touch", "/tmp/ok"])?;
        wait_status(&e, "h", "healthy")?;
        ensure!(e
            .ok(&["ps", "--format", "{{.Status}}"])?
            .contains("(healthy)"));
        let events = e.ok(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            "0s",
            "--filter",
            "container=h",
        ])?;
        let statuses: Vec<&str> = events
            .lines()
            .filter_map(|l| l.split("health_status: ").nth(1))
            .filter_map(|r| r.split_whitespace().next())
            .collect();
        ensure!(statuses == ["unhealthy", "healthy"], "events:\n{events}");
        // The engine's restart does not stop the checks.
        ensure!(e.stop()?.success());
        e.spawn()?;
        e.ok(&["exec", "h", "rm", "/tmp/ok"])?;
        wait_status(&e, "h", "unhealthy")?;
        e.ok(&["rm", "-f", "h"])?;
        Ok(())
    })());
}

#[test]
fn engine_health_probe_over_its_timeout_is_killed() {
    let e = engine();
    check((|| {
        e.ok(&[
            "run",
            "-d",
            "--name",
            "slow",
            "--health-cmd",
            "sleep 30",
            "--health-timeout",
            "200ms",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            BUSYBOX,
            "sleep",
            "60",
        ])?;
        let h = wait_status(&e, "slow", "unhealthy")?;
        // No probe while it is paused.
        e.ok(&["pause", "slow"])?;
        std::thread::sleep(Duration::from_millis(400));
        let before = health(&e, "slow")?["Log"].clone();
        std::thread::sleep(Duration::from_millis(600));
        ensure!(health(&e, "slow")?["Log"] == before, "probed while paused");
        e.ok(&["unpause", "slow"])?;
        ensure!(
            h["Log"][0]["Output"]
                .as_str()
                .is_some_and(|o| o.starts_with("Health check exceeded timeout")),
            "{h}"
        );
        // The probes were killed: no `sleep 30` piles up in the container.
        std::thread::sleep(Duration::from_millis(500));
        let ps = e.ok(&["exec", "slow", "ps"])?;
        ensure!(
            ps.matches("sleep 30").count() <= 1,
            "probes left running:\n{ps}"
        );
        e.ok(&["rm", "-f", "slow"])?;
        Ok(())
    })());
}

#[test]
fn engine_health_from_the_image_and_refusals() {
    let e = engine();
    check((|| {
        let f = e.scratch("healthimg")?.join("img.tar");
        let config = serde_json::json!({
            "Cmd": ["sleep", "60"],
            "Env": ["PATH=/bin"],
            "Healthcheck": { "Test": ["CMD", "true"], "Interval": 100_000_000, "Retries": 1 },
        });
        docker_archive_with(&f, "healthy:1", &[busybox_layer(Vec::new())?], config)?;
        e.ok(&["load", "-i", &f.to_string_lossy()])?;
        e.ok(&["run", "-d", "--name", "img", "healthy:1"])?;
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "img"])?)?;
        ensure!(
            doc[0]["Config"]["Healthcheck"]["Test"] == serde_json::json!(["CMD", "true"])
                && doc[0]["Config"]["Healthcheck"]["Interval"] == 100_000_000,
            "{}",
            doc[0]["Config"]
        );
        wait_status(&e, "img", "healthy")?;
        e.ok(&[
            "run",
            "-d",
            "--name",
            "none",
            "--no-healthcheck",
            "healthy:1",
        ])?;
        ensure!(health(&e, "none")?.is_null());
        let ps = e.ok(&["ps", "--format", "{{.Names}} {{.Status}}"])?;
        ensure!(
            ps.lines()
                .any(|l| l.starts_with("none Up ") && !l.contains('(')),
            "ps:\n{ps}"
        );
        e.ok(&["rm", "-f", "img", "none"])?;
        for (args, want) in [
            (
                vec!["--health-interval", "1x"],
                "invalid --health-interval: invalid duration \"1x\"",
            ),
            (
                vec!["--health-timeout", "-1s"],
                "invalid --health-timeout: a duration cannot be negative",
            ),
            (
                vec!["--health-retries", "-1"],
                "invalid --health-retries: it cannot be negative",
            ),
            (
                vec!["--no-healthcheck", "--health-cmd", "true"],
                "--no-healthcheck conflicts with --health-cmd",
            ),
        ] {
            e.refuses_run(&args, want)?;
        }
        Ok(())
    })());
}
