//! End-to-end: `--restart no|on-failure[:N]|always|unless-stopped` as Docker applies them:
//! which exits restart, how many times, `Restarting` in `ps`, stop and kill ending it for good,
//! and what an engine restart starts again.

mod lifecycle_support;

use std::time::Duration;

use anyhow::{ensure, Result};
use lifecycle_support::{check, engine, inspect, pid, status, wait_for, wait_status};
use strata_tests::engine::{Engine, BUSYBOX};

fn run_d(e: &Engine, name: &str, policy: &str, script: &str) -> Result<()> {
    e.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        policy,
        BUSYBOX,
        "sh",
        "-c",
        script,
    ])?;
    Ok(())
}

/// How many times the container has run (each run logs one line).
fn runs(e: &Engine, name: &str) -> Result<usize> {
    Ok(e.ok(&["logs", name])?
        .lines()
        .filter(|l| *l == "run")
        .count())
}

/// A long-running loop that exits 0 on SIGTERM.
const LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

#[test]
fn engine_restart_no_and_on_failure() {
    let e = engine();
    check((|| {
        run_d(&e, "never", "no", "echo run; exit 1")?;
        ensure!(e.ok(&["wait", "never"])?.trim() == "1");
        wait_status(&e, "never", "exited", Some(0))?;
        run_d(&e, "twice", "on-failure:2", "echo run; exit 1")?;
        run_d(&e, "fine", "on-failure", "echo run; exit 0")?;
        // Exited is final: no restart is pending then.
        wait_status(&e, "twice", "exited", Some(2))?;
        wait_status(&e, "fine", "exited", Some(0))?;
        ensure!(runs(&e, "twice")? == 3, "{}", e.ok(&["logs", "twice"])?);
        ensure!(runs(&e, "fine")? == 1);
        let d = inspect(&e, "twice")?;
        ensure!(
            d["HostConfig"]["RestartPolicy"]
                == serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2}),
            "{}",
            d["HostConfig"]
        );
        ensure!(d["State"]["ExitCode"] == 1 && d["RestartCount"] == 2);
        let d = inspect(&e, "never")?;
        ensure!(d["HostConfig"]["RestartPolicy"]["Name"] == "no");
        // In the foreground, run returns at the first exit with its code, as Docker's does.
        let o = e.strata(&[
            "run",
            "--name",
            "fg",
            "--restart",
            "always",
            BUSYBOX,
            "sh",
            "-c",
            "echo run; exit 4",
        ])?;
        ensure!(o.status.code() == Some(4), "{o:?}");
        ensure!(String::from_utf8_lossy(&o.stdout) == "run\n");
        e.ok(&["rm", "-f", "fg"])?;
        // A start by hand starts the count over.
        e.ok(&["start", "twice"])?;
        wait_status(&e, "twice", "exited", Some(2))?;
        ensure!(runs(&e, "twice")? == 6);
        Ok(())
    })());
}

#[test]
fn engine_restart_always_and_unless_stopped_until_stopped() {
    let e = engine();
    check((|| {
        run_d(&e, "always", "always", "echo run; exit 1")?;
        run_d(&e, "unless", "unless-stopped", "echo run; exit 0")?;
        for n in ["always", "unless"] {
            wait_for(&format!("{n} to be restarted 3 times"), || {
                Ok(status(&e, n)?.1 >= 3)
            })?;
        }
        // The back-off grows, so it mostly waits: `ps` says so, as Docker's does.
        wait_for("ps to show Restarting (1)", || {
            Ok(e.ok(&["ps"])?.contains("Restarting (1)"))
        })?;
        let d = inspect(&e, "always")?;
        ensure!(
            d["HostConfig"]["RestartPolicy"]["Name"] == "always",
            "{}",
            d["HostConfig"]
        );
        e.ok(&["stop", "always"])?;
        e.ok(&["stop", "unless"])?;
        let stopped = [status(&e, "always")?, status(&e, "unless")?];
        for (st, _) in &stopped {
            ensure!(st == "exited", "stopped: {st}");
        }
        // Stopped for good: nothing starts it again (the next back-off is well under this).
        std::thread::sleep(Duration::from_secs(3));
        ensure!([status(&e, "always")?, status(&e, "unless")?] == stopped);
        ensure!(e.ok(&["ps", "-q"])?.trim().is_empty());

        // Killing a running one or one waiting to restart ends it too.
        run_d(&e, "killed", "always", LOOP)?;
        e.ok(&["kill", "killed"])?;
        ensure!(e.ok(&["wait", "killed"])?.trim() == "137");
        run_d(&e, "waiting", "always", "echo run; exit 2")?;
        run_d(&e, "waiting-stopped", "unless-stopped", "echo run; exit 0")?;
        wait_status(&e, "waiting", "restarting", None)?;
        e.ok(&["kill", "waiting"])?;
        // (It may have been started again just before the kill: then its exit is recorded
        // a moment later.)
        wait_status(&e, "waiting", "exited", None)?;
        let after_kill = status(&e, "waiting")?;
        wait_status(&e, "waiting-stopped", "restarting", None)?;
        e.ok(&["stop", "waiting-stopped"])?;
        let after_stop = status(&e, "waiting-stopped")?;
        ensure!(after_stop.0 == "exited", "{after_stop:?}");
        std::thread::sleep(Duration::from_secs(2));
        ensure!(status(&e, "waiting")? == after_kill && status(&e, "killed")?.0 == "exited");
        ensure!(status(&e, "waiting-stopped")? == after_stop);
        // rm -f of one waiting to restart; plain rm is refused.
        run_d(&e, "removed", "always", "exit 3")?;
        wait_status(&e, "removed", "restarting", None)?;
        let (code, err) = e.fails(&["rm", "removed"])?;
        // (Restarting, unless the wait had just ended.)
        ensure!(
            code != 0 && (err.contains("restarting") || err.contains("running")),
            "{err}"
        );
        e.ok(&["rm", "-f", "removed"])?;
        ensure!(e.fails(&["inspect", "removed"]).is_ok());
        // A restart by hand of an always container that was stopped runs it again.
        e.ok(&["restart", "always"])?;
        wait_for("always to run again", || Ok(status(&e, "always")?.1 >= 1))?;
        e.ok(&["rm", "-f", "always"])?;
        Ok(())
    })());
}

#[test]
fn engine_restart_policies_when_the_engine_starts() {
    let mut e = engine();
    check((|| {
        for (n, p) in [
            ("always-stopped", "always"),
            ("unless-stopped-by-hand", "unless-stopped"),
            ("unless-running", "unless-stopped"),
        ] {
            run_d(&e, n, p, LOOP)?;
        }
        // Fails when stopped: still not restarted, by hand or when the engine starts.
        run_d(
            &e,
            "on-failure-stopped",
            "on-failure",
            "trap 'exit 3' TERM; while true; do sleep 0.1; done",
        )?;
        let running = pid(&e, "unless-running")?;
        for n in [
            "always-stopped",
            "unless-stopped-by-hand",
            "on-failure-stopped",
        ] {
            e.ok(&["stop", n])?;
        }
        let st = e.stop()?;
        ensure!(st.success(), "{st}");
        e.spawn()?;
        // always comes back even after a stop by hand; unless-stopped stopped by hand and
        // on-failure do not; a running one is the same process.
        wait_status(&e, "always-stopped", "running", None)?;
        ensure!(pid(&e, "unless-running")? == running);
        ensure!(status(&e, "unless-stopped-by-hand")?.0 == "exited");
        ensure!(status(&e, "on-failure-stopped")? == ("exited".to_string(), 0));
        ensure!(e.ok(&["wait", "on-failure-stopped"])?.trim() == "3");
        // Once more, with SIGKILL: the started one runs on.
        let again = pid(&e, "always-stopped")?;
        e.kill9()?;
        e.spawn()?;
        ensure!(pid(&e, "always-stopped")? == again);
        ensure!(status(&e, "unless-stopped-by-hand")?.0 == "exited");
        Ok(())
    })());
}

#[test]
fn engine_restart_policy_bad_input() {
    let e = engine();
    check((|| {
        for (args, needle) in [
            (
                &["run", "--restart", "sometimes", BUSYBOX, "true"][..],
                "\"sometimes\"",
            ),
            (
                &["create", "--restart", "on-failure:x", BUSYBOX, "true"][..],
                "\"on-failure:x\"",
            ),
            (
                &["run", "--restart", "always:2", BUSYBOX, "true"][..],
                "only be used with on-failure",
            ),
            (
                &["run", "--rm", "--restart", "always", BUSYBOX, "true"][..],
                "--rm",
            ),
        ] {
            let (code, err) = e.fails(args)?;
            ensure!(
                code == 125 || args[0] == "create" && code != 0,
                "{args:?}: exit {code}"
            );
            ensure!(
                err.lines().count() == 1 && err.starts_with("strata: ") && err.contains(needle),
                "{args:?}: {err:?}"
            );
        }
        ensure!(
            e.ok(&["ps", "-aq"])?.trim().is_empty(),
            "a refused create leaves nothing"
        );
        Ok(())
    })());
}
