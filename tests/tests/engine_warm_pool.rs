//! End-to-end: `stratad --warm-pool N`, containers made ahead of time. A create like an earlier
//! one takes one of them (its ID was a pooled container's directory before), runs as any other,
//! and whatever the pool holds goes when images are removed, when a taken container is removed
//! before its start, when the engine stops, and after an engine that died.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use strata_tests::engine::{check, Engine, BUSYBOX};

/// An engine keeping `n` containers ahead of time, with busybox loaded.
fn pooled(n: &str) -> Engine {
    let e = Engine::start(&["--warm-pool", n]).unwrap_or_else(|e| panic!("{e:?}"));
    e.load_busybox().unwrap_or_else(|err| panic!("{err:?}"));
    e
}

/// What `info` says of the pool.
fn pool_row(e: &Engine) -> Result<String> {
    let info = e.ok(&["info"])?;
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Warm Pool: "))
        .map(str::to_string)
        .with_context(|| format!("no Warm Pool row in info:\n{info}"))
}

/// Waits until the pool has `n` containers ready.
fn wait_ready(e: &Engine, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = pool_row(e)?;
        if row.starts_with(&format!("{n} ready")) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the pool is at {row:?}, not {n} ready:\n{}",
            e.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The IDs of the containers the engine has a directory for but does not list: the pool's.
fn pooled_ids(e: &Engine) -> Result<HashSet<String>> {
    let listed: Vec<String> = e.ok(&["ps", "-aq"])?.lines().map(str::to_string).collect();
    let mut ids = HashSet::new();
    for d in fs::read_dir(e.containers_dir())? {
        let name = d?.file_name().to_string_lossy().to_string();
        if !listed.iter().any(|l| name.starts_with(l.as_str())) {
            ids.insert(name);
        }
    }
    Ok(ids)
}

/// Nothing of container `id` on the host: no directory, mount, runtime state, cgroup or monitor.
fn gone(e: &Engine, id: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = left_of(e, id)?;
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "left of {id}: {left:?}\n{}",
            e.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn left_of(e: &Engine, id: &str) -> Result<Vec<String>> {
    let mut left = Vec::new();
    if e.containers_dir().join(id).exists() {
        left.push("its directory".to_string());
    }
    if fs::read_to_string("/proc/self/mountinfo")?.contains(id) {
        left.push("a mount".into());
    }
    if e.run_root.join("runtime").join(id).exists() {
        left.push("runtime state".into());
    }
    for h in fs::read_dir("/sys/fs/cgroup")? {
        let h = h?.path();
        if h.join("strata").join(id).exists() {
            left.push(format!("cgroup in {}", h.display()));
        }
    }
    if Path::new("/sys/fs/cgroup/strata").join(id).exists() {
        left.push("cgroup".into());
    }
    let bundle = e.containers_dir().join(id);
    for p in fs::read_dir("/proc")? {
        let p = p?.path();
        let named =
            fs::read(p.join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(id));
        let works_there = fs::read_link(p.join("cwd")).is_ok_and(|c| c == bundle);
        if named || works_there {
            left.push(format!("process {}", p.display()));
        }
    }
    Ok(left)
}

#[test]
fn engine_warm_pool_runs_containers_made_ahead_as_any() {
    let e = pooled("2");
    check((|| {
        ensure!(pool_row(&e)? == "0 ready, up to 2", "{}", pool_row(&e)?);
        let cmd = [
            "run",
            "--rm",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            BUSYBOX,
            "sh",
            "-c",
            "echo $X $(pwd) $(hostname); exit 3",
        ];
        let first = e.strata(&cmd)?;
        ensure!(first.status.code() == Some(3), "exit {:?}", first.status);
        wait_ready(&e, 2)?;
        let pool = pooled_ids(&e)?;
        ensure!(pool.len() == 2, "pool directories {pool:?}");
        // The same again is one of them: its output, code and hostname (its ID's) are its own.
        for _ in 0..3 {
            let o = e.strata(&cmd)?;
            ensure!(o.status.code() == Some(3), "exit {:?}", o.status);
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            let host = out
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_string();
            ensure!(
                out.starts_with("1 /tmp ") && host.len() == 12,
                "output {out:?}"
            );
            let first_out = String::from_utf8_lossy(&first.stdout).to_string();
            ensure!(
                !first_out.contains(&host),
                "the same hostname twice: {out:?}"
            );
        }
        // A detached one is listed, named, logged and inspected as any.
        let detached = [
            "run",
            "-d",
            "--name",
            "web",
            BUSYBOX,
            "sh",
            "-c",
            "echo up; sleep 30",
        ];
        e.ok(&detached)?;
        e.ok(&["rm", "-f", "web"])?;
        wait_ready(&e, 2)?;
        let pool = pooled_ids(&e)?;
        let id = e.ok(&detached)?.trim().to_string();
        ensure!(
            pool.contains(&id),
            "{id} was not made ahead of time: {pool:?}"
        );
        let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "web"])?)?;
        ensure!(
            inspect[0]["State"]["Running"] == true && inspect[0]["Name"] == "/web",
            "{}",
            inspect[0]["State"]
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while e.ok(&["logs", "web"])? != "up\n" {
            ensure!(
                Instant::now() < deadline,
                "logs: {:?}",
                e.ok(&["logs", "web"])?
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ensure!(e.ok(&["exec", "web", "hostname"])?.trim() == &id[..12]);
        e.ok(&["rm", "-f", "web"])?;
        gone(&e, &id)?;
        // Other settings are not taken from the pool.
        wait_ready(&e, 2)?;
        let pool = pooled_ids(&e)?;
        let other = e
            .ok(&["run", "-d", "-e", "Y=2", BUSYBOX, "sleep", "30"])?
            .trim()
            .to_string();
        ensure!(
            !pool.contains(&other),
            "another container's settings were taken"
        );
        e.ok(&["rm", "-f", &other])?;
        Ok(())
    })());
}

#[test]
fn engine_warm_pool_leaves_nothing_behind() {
    let mut e = pooled("1");
    check((|| {
        e.ok(&["run", "--rm", BUSYBOX, "true"])?;
        wait_ready(&e, 1)?;
        // Taken by a create, removed before its start: its monitor lets it go.
        let pool = pooled_ids(&e)?;
        let id = e
            .ok(&["create", "--rm", BUSYBOX, "true"])?
            .trim()
            .to_string();
        ensure!(
            pool.contains(&id),
            "{id} was not made ahead of time: {pool:?}"
        );
        e.ok(&["rm", &id])?;
        gone(&e, &id)?;
        // Removing an image empties the pool first (its containers are on the image's layers).
        wait_ready(&e, 1)?;
        let pool = pooled_ids(&e)?;
        e.ok(&["rmi", BUSYBOX])?;
        ensure!(pool_row(&e)? == "0 ready, up to 1", "{}", pool_row(&e)?);
        for id in &pool {
            gone(&e, id)?;
        }
        // The engine's stop empties it, and lets go of a taken container not started yet,
        // which starts after the engine's next start as any created container.
        e.load_busybox()?;
        e.ok(&["run", "--rm", BUSYBOX, "true"])?;
        wait_ready(&e, 1)?;
        let pool = pooled_ids(&e)?;
        let held = e
            .ok(&["create", "--rm", BUSYBOX, "true"])?
            .trim()
            .to_string();
        ensure!(pool.contains(&held));
        wait_ready(&e, 1)?;
        let pool = pooled_ids(&e)?;
        let st = e.stop()?;
        ensure!(st.success(), "stratad: {st}");
        for id in &pool {
            gone(&e, id)?;
        }
        ensure!(
            !fs::read_to_string("/proc/self/mountinfo")?
                .contains(&e.root.to_string_lossy().to_string()),
            "a mount is left under the root after the engine's stop"
        );
        e.spawn()?;
        ensure!(e.ok(&["start", "-a", &held])?.is_empty());
        gone(&e, &held)?;
        // An engine that dies leaves its pool to its next start: the monitors let their
        // containers go when the engine's end of their socket closes, and the rest is
        // collected as any orphan.
        e.ok(&["run", "--rm", BUSYBOX, "true"])?;
        wait_ready(&e, 1)?;
        let pool = pooled_ids(&e)?;
        e.kill9()?;
        e.spawn()?;
        for id in &pool {
            gone(&e, id)?;
        }
        Ok(())
    })());
}

#[test]
fn engine_warm_pool_is_refused_over_its_limit() {
    let mut e = Engine::unstarted(&["--warm-pool", "65"]).unwrap_or_else(|e| panic!("{e:?}"));
    check((|| {
        let err = e.spawn().expect_err("stratad started with --warm-pool 65");
        ensure!(
            format!("{err:?}").contains("stratad: warm pool 65 is more than 64 containers"),
            "{err:?}"
        );
        Ok(())
    })());
}

#[test]
fn engine_warm_pool_starts_a_taken_container_whose_monitor_died() {
    let e = pooled("1");
    check((|| {
        e.ok(&["run", "--rm", BUSYBOX, "echo", "hi"])?;
        wait_ready(&e, 1)?;
        let pool = pooled_ids(&e)?;
        let id = e
            .ok(&["create", "--rm", BUSYBOX, "echo", "hi"])?
            .trim()
            .to_string();
        ensure!(
            pool.contains(&id),
            "{id} was not made ahead of time: {pool:?}"
        );
        // Its monitor works in its directory (the container's first process is in its own root).
        let bundle = e.containers_dir().join(&id);
        let mut killed = 0;
        for p in fs::read_dir("/proc")? {
            let p = p?.path();
            let monitor = fs::read(p.join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("strata-monitor"));
            if monitor && fs::read_link(p.join("cwd")).is_ok_and(|c| c == bundle) {
                let pid = p
                    .file_name()
                    .and_then(|n| n.to_str()?.parse().ok())
                    .unwrap_or(0);
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )?;
                killed += 1;
            }
        }
        ensure!(killed == 1, "{killed} monitors held {id}");
        std::thread::sleep(Duration::from_millis(100));
        ensure!(e.ok(&["start", "-a", &id])? == "hi\n");
        gone(&e, &id)
    })());
}
