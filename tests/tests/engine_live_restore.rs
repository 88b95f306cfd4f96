//! End-to-end: containers outlive `stratad`. Each is owned by its monitor, so the engine can be
//! SIGKILLed or stopped and started again: running containers are found again and stay
//! manageable, ones that ended meanwhile show how they ended, and restart policies apply.

mod lifecycle_support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lifecycle_support::{alive, check, engine, inspect, pid, status, wait_for, wait_status, Lines};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strata_tests::engine::{Engine, BUSYBOX};

/// A shell loop that exits with `code` on SIGTERM (pid 1 ignores signals it does not trap).
fn looping(code: u8) -> String {
    format!("trap 'exit {code}' TERM; while true; do sleep 0.1; done")
}

fn run_d(e: &Engine, name: &str, extra: &[&str], script: &str) -> Result<()> {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[BUSYBOX, "sh", "-c", script]);
    e.ok(&args)?;
    Ok(())
}

/// Signals `pid` and waits until it is gone.
fn kill_and_wait(pid: i64, sig: Signal) -> Result<()> {
    kill(Pid::from_raw(pid as i32), sig)?;
    wait_for(&format!("process {pid} to end"), || Ok(!alive(pid)))
}

/// The pids of the processes whose command line contains all of `needles`.
fn pids_matching(needles: &[&str]) -> Vec<i64> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|p| p.ok())
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.parse::<i64>().ok()?;
            let cmd = std::fs::read(p.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).into_owned();
            needles.iter().all(|n| cmd.contains(n)).then_some(pid)
        })
        .collect()
}

/// The monitor of container `id`: one started for it names it on its command line; a spare
/// monitor that took it works in the container's directory.
fn monitor_of(e: &Engine, id: &str) -> Vec<i64> {
    let bundle = e.containers_dir().join(id);
    pids_matching(&["strata-monitor"])
        .into_iter()
        .filter(|pid| {
            let named = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(id));
            named || std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == bundle)
        })
        .collect()
}

#[test]
fn engine_live_restore_after_kill9() {
    let mut e = engine();
    check((|| {
        run_d(
            &e,
            "ticker",
            &[],
            "i=0; trap 'exit 0' TERM; while true; do i=$((i+1)); echo tick$i; sleep 0.1; done",
        )?;
        run_d(&e, "victim", &[], &looping(42))?;
        run_d(&e, "worker", &[], &looping(0))?;
        let pids: Vec<i64> = ["ticker", "victim", "worker"]
            .iter()
            .map(|n| pid(&e, n))
            .collect::<Result<_>>()?;
        wait_for("ticker's first lines", || {
            Ok(e.ok(&["logs", "ticker"])?.contains("tick3\n"))
        })?;

        e.kill9()?;
        for p in &pids {
            ensure!(alive(*p), "process {p} died with the engine");
        }
        // While the engine is down, one container ends (its shell exits 42 on SIGTERM).
        kill_and_wait(pids[1], Signal::SIGTERM)?;
        let last_before = e_log_lines(&e)?;
        let run_root = e.run_root.to_string_lossy().into_owned();
        let plugin = pids_matching(&["strata-overlay2", &run_root]);
        ensure!(plugin.len() == 1, "the plugin outlives a SIGKILLed engine");
        e.spawn()?;
        // The new engine replaced it with its own.
        let plugins = pids_matching(&["strata-overlay2", &run_root]);
        ensure!(
            plugins.len() == 1 && plugins != plugin,
            "plugins {plugin:?} → {plugins:?}:\n{}",
            e.log_tail()
        );
        ensure!(e.log_tail().matches("storage plugin restarted").count() == 0);

        ensure!(pid(&e, "ticker")? == pids[0] && pid(&e, "worker")? == pids[2]);
        let ps = e.ok(&["ps"])?;
        ensure!(
            ps.contains("ticker") && ps.contains("worker") && !ps.contains("victim"),
            "{ps}"
        );
        let all = e.ok(&["ps", "-a"])?;
        ensure!(all.contains("Exited (42)"), "the real exit code: {all}");
        ensure!(e.ok(&["wait", "victim"])?.trim() == "42");

        // `logs -f` goes on with lines written after the restart.
        let follow = Lines::spawn(&e, &["logs", "-f", "ticker"])?;
        let newer = format!("tick{}", last_before + 5);
        let mut seen = Vec::new();
        let found = loop {
            match follow.next(Duration::from_secs(60)) {
                Some(l) if l == newer => break true,
                Some(l) => seen.push(l),
                None => break false,
            }
        };
        drop(follow);
        ensure!(
            found,
            "logs -f did not show {newer}; last lines: {:?}",
            &seen[seen.len().saturating_sub(5)..]
        );
        ensure!(seen.first().map(String::as_str) == Some("tick1"));

        // The restored containers are managed as before.
        ensure!(e.ok(&["exec", "worker", "echo", "inside"])? == "inside\n");
        e.ok(&["pause", "ticker"])?;
        ensure!(e.ok(&["ps"])?.contains("(Paused)"));
        e.ok(&["unpause", "ticker"])?;
        e.ok(&["kill", "ticker"])?;
        ensure!(e.ok(&["wait", "ticker"])?.trim() == "137");
        e.ok(&["stop", "worker"])?;
        ensure!(e.ok(&["wait", "worker"])?.trim() == "0");
        ensure!(!alive(pids[0]) && !alive(pids[2]));
        ensure!(e.ok(&["ps", "-q"])?.trim().is_empty(), "{}", e.ok(&["ps"])?);
        Ok(())
    })());
}

/// The number in the ticker's last log line.
fn e_log_lines(e: &Engine) -> Result<u64> {
    let log = std::fs::read_dir(e.containers_dir())?
        .filter_map(|d| d.ok())
        .map(|d| {
            d.path()
                .join(format!("{}-json.log", d.file_name().to_string_lossy()))
        })
        .find(|p| {
            std::fs::read_to_string(p)
                .map(|s| s.contains("tick1\\n"))
                .unwrap_or(false)
        })
        .context("the ticker's log")?;
    let text = std::fs::read_to_string(log)?;
    let last = text
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["log"].as_str()?.trim().strip_prefix("tick")?.parse().ok()
        })
        .max()
        .unwrap_or(0);
    Ok(last)
}

#[test]
fn engine_sigterm_keeps_containers_running() {
    let mut e = engine();
    check((|| {
        run_d(&e, "steady", &[], &looping(5))?;
        let p = pid(&e, "steady")?;
        let st = e.stop()?;
        ensure!(st.success(), "stratad stops with 0 on SIGTERM: {st}");
        ensure!(alive(p), "the container stopped with the engine");
        e.spawn()?;
        ensure!(pid(&e, "steady")? == p);
        ensure!(e.ok(&["ps"])?.contains("steady"));
        e.ok(&["stop", "steady"])?;
        ensure!(e.ok(&["wait", "steady"])?.trim() == "5");
        Ok(())
    })());
}

#[test]
fn engine_live_restore_paused_orphaned_and_policies() {
    let mut e = engine();
    check((|| {
        run_d(
            &e,
            "frozen",
            &[],
            "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done",
        )?;
        run_d(&e, "orphan", &[], &looping(0))?;
        run_d(&e, "failing", &["--restart", "on-failure:1"], &looping(9))?;
        run_d(&e, "always", &["--restart", "always"], &looping(0))?;
        run_d(&e, "plain", &[], &looping(0))?;
        run_d(&e, "flapping", &["--restart", "always"], "exit 1")?;
        wait_for("flapping to be restarted twice", || {
            Ok(status(&e, "flapping")?.1 >= 2)
        })?;
        e.ok(&["pause", "frozen"])?;
        let orphan = pid(&e, "orphan")?;
        let orphan_id = inspect(&e, "orphan")?["Id"]
            .as_str()
            .context("id")?
            .to_string();
        let failing = pid(&e, "failing")?;
        let always = pid(&e, "always")?;
        let plain = pid(&e, "plain")?;

        let flaps = status(&e, "flapping")?.1;
        e.kill9()?;
        // While the engine is down: a monitor is killed (its container keeps running, owned
        // by no one), and three containers end.
        let monitors = monitor_of(&e, &orphan_id);
        ensure!(monitors.len() == 1, "the orphan's monitor: {monitors:?}");
        kill_and_wait(monitors[0], Signal::SIGKILL)?;
        ensure!(alive(orphan), "the container outlives its monitor");
        for p in [failing, always, plain] {
            kill_and_wait(p, Signal::SIGTERM)?;
        }
        e.spawn()?;
        // Restarts go on, whether one was pending or the container was running.
        wait_for("flapping to be restarted again", || {
            Ok(status(&e, "flapping")?.1 > flaps)
        })?;

        // A paused container is still paused, and unpauses.
        ensure!(e.ok(&["ps"])?.contains("(Paused)"), "{}", e.ok(&["ps"])?);
        e.ok(&["unpause", "frozen"])?;
        // One without a monitor was killed: nothing could log or reap it any more.
        wait_for("the orphaned container to be killed", || Ok(!alive(orphan)))?;
        let o = inspect(&e, "orphan")?;
        ensure!(
            o["State"]["Status"] == "exited" && o["State"]["ExitCode"] == 137,
            "{}",
            o["State"]
        );
        ensure!(o["State"]["Error"]
            .as_str()
            .unwrap_or("")
            .contains("monitor"));
        // Ended while the engine was down: their policies apply.
        wait_status(&e, "failing", "running", Some(1))?;
        wait_status(&e, "always", "running", Some(1))?;
        let (plain_status, plain_restarts) = status(&e, "plain")?;
        ensure!(plain_status == "exited" && plain_restarts == 0);
        ensure!(e.ok(&["wait", "plain"])?.trim() == "0");
        // The rootfs of an ended container is unmounted, and it starts again.
        e.ok(&["start", "orphan"])?;
        ensure!(e.ok(&["exec", "orphan", "true"])?.is_empty());
        for n in ["frozen", "orphan", "failing", "always", "flapping"] {
            e.ok(&["rm", "-f", n])?;
        }
        Ok(())
    })());
}

/// A container created just before the engine was killed is still there when it starts again;
/// what a container with no record left behind (its root filesystem snapshot, its directory)
/// is removed.
#[test]
fn engine_start_removes_what_lost_containers_left() {
    let mut e = engine();
    check((|| {
        let id = "0".repeat(63) + "1";
        let key = format!("strata/container/{id}");
        let socket = e.run_root.join("plugins/overlay2.sock");
        let rt = tokio::runtime::Runtime::new()?;
        let snap = rt.block_on(async {
            let ch = strata_tests::harness::connect_unix(&socket).await?;
            Ok::<_, anyhow::Error>(strata_tests::client::Snap::new(
                strata_proto::snapshots::snapshots_client::SnapshotsClient::new(ch),
            ))
        })?;
        rt.block_on(snap.prepare(&key, ""))?;
        let dir = e.containers_dir().join(&id);
        std::fs::create_dir_all(dir.join("rootfs"))?;
        std::fs::write(dir.join("config.json"), "{}")?;
        // A container the engine knows stays (a started one's record is flushed), and so does
        // one just created, whose record the engine had not flushed when it was killed.
        e.ok(&["run", "-d", "--name", "kept", BUSYBOX, "sleep", "100"])?;
        e.ok(&["create", "--name", "fresh", BUSYBOX, "echo", "made"])?;
        e.kill9()?;
        drop(snap);
        e.spawn()?;
        ensure!(!dir.exists(), "the lost container's directory is left");
        let socket = e.run_root.join("plugins/overlay2.sock");
        let gone = rt.block_on(async {
            let ch = strata_tests::harness::connect_unix(&socket).await?;
            let mut c = strata_proto::snapshots::snapshots_client::SnapshotsClient::new(ch);
            let r = c
                .stat(strata_proto::snapshots::StatSnapshotRequest {
                    snapshotter: String::new(),
                    key: key.clone(),
                })
                .await;
            Ok::<_, anyhow::Error>(matches!(r, Err(s) if s.code() == tonic::Code::NotFound))
        })?;
        ensure!(gone, "the lost container's snapshot is left");
        ensure!(e.ok(&["ps"])?.contains("kept"), "{}", e.ok(&["ps", "-a"])?);
        ensure!(
            e.ok(&["start", "-a", "fresh"])? == "made\n",
            "the created container came back and runs"
        );
        e.ok(&["rm", "-f", "kept", "fresh"])?;
        Ok(())
    })());
}

/// How long after its launch [`engine_killed_during_start_keeps_everything`] kills `stratad`:
/// a start on a root with a plugin left running takes ≈ 80–130 ms here (stopping that plugin,
/// starting one, finding the containers again), so most kills land inside it, one after.
const START_KILL_DELAYS_MS: [u64; 11] = [0, 5, 15, 30, 45, 60, 75, 90, 110, 130, 300];

/// SIGKILL while the engine starts (opening its metadata, starting or adopting its storage
/// plugin, finding its containers again), again and again: the next start has every image and
/// container, the running one still running under its monitor, one storage plugin, and runs.
#[test]
fn engine_killed_during_start_keeps_everything() {
    let mut e = engine();
    check((|| {
        run_d(&e, "running", &[], &looping(0))?;
        let ended = e.strata(&["run", "--name", "ended", BUSYBOX, "sh", "-c", "exit 3"])?;
        ensure!(ended.status.code() == Some(3), "run: {:?}", ended.status);
        e.ok(&["create", "--name", "made", BUSYBOX, "echo", "made"])?;
        let running = pid(&e, "running")?;
        let images = e.ok(&["images", "-q"])?;
        e.kill9()?;
        for delay in START_KILL_DELAYS_MS {
            e.start_and_kill(Duration::from_millis(delay))?;
        }
        e.spawn()?;
        ensure!(e.ok(&["images", "-q"])? == images, "{}", e.ok(&["images"])?);
        ensure!(pid(&e, "running")? == running && alive(running));
        let all = e.ok(&["ps", "-a"])?;
        ensure!(
            all.contains("Exited (3)") && all.contains("made") && all.contains("running"),
            "{all}"
        );
        let run_root = e.run_root.to_string_lossy().into_owned();
        let plugins = pids_matching(&["strata-overlay2", &run_root]);
        ensure!(plugins.len() == 1, "storage plugins {plugins:?}");
        ensure!(
            e.ok(&["run", "--rm", BUSYBOX, "echo", "after"])? == "after\n",
            "{}",
            e.log_tail()
        );
        ensure!(e.ok(&["start", "-a", "made"])? == "made\n");
        e.ok(&["rm", "-f", "running", "ended", "made"])?;
        ensure!(!alive(running));
        Ok(())
    })());
}
