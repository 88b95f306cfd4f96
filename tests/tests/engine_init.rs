//! End-to-end: `--init`, a minimal init as the container's pid 1 (the runtime's own code, shown
//! as `strata-init -- COMMAND`): it forwards `stop`'s SIGTERM to the process (which a pid 1
//! without handlers would not get), reaps orphans, and exits with the process's code.

use anyhow::ensure;
use strata_tests::engine::{check, engine, BUSYBOX};

#[test]
fn engine_init_is_pid_1_forwards_signals_and_reaps() {
    let e = engine();
    check((|| {
        let ps = e.ok(&[
            "run",
            "--rm",
            "--init",
            BUSYBOX,
            "ps",
            "-o",
            "pid,comm,args",
        ])?;
        let first = ps
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>();
        ensure!(
            first
                == [
                    "1",
                    "strata-init",
                    "strata-init",
                    "--",
                    "ps",
                    "-o",
                    "pid,comm,args"
                ],
            "ps:\n{ps}"
        );
        let o = e.strata(&["run", "--rm", "--init", BUSYBOX, "sh", "-c", "exit 7"])?;
        ensure!(o.status.code() == Some(7), "exit {:?}", o.status);
        // An orphan is reparented to the init, which reaps it: no zombie is left.
        let ps = e.ok(&[
            "run",
            "--rm",
            "--init",
            BUSYBOX,
            "sh",
            "-c",
            "(sleep 0.1 &); sleep 1; ps -o stat,comm",
        ])?;
        ensure!(
            !ps.lines().any(|l| l.trim_start().starts_with('Z')),
            "a zombie:\n{ps}"
        );
        // `stop`'s SIGTERM reaches sleep (as pid 1 it would ignore it and be killed after the
        // timeout, 137): it ends by SIGTERM, 143.
        e.ok(&[
            "run", "-d", "--init", "--name", "s", BUSYBOX, "sleep", "100",
        ])?;
        e.ok(&["stop", "-t", "30", "s"])?;
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "s"])?)?;
        ensure!(
            doc[0]["State"]["ExitCode"] == 143 && doc[0]["HostConfig"]["Init"] == true,
            "{} {}",
            doc[0]["State"],
            doc[0]["HostConfig"]["Init"]
        );
        e.ok(&["rm", "s"])?;
        Ok(())
    })());
}
