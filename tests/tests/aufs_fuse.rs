//! strata-aufs' FUSE servers under failure: a server killed under a mounted container is
//! detected, reported in Driver.Status and remounted, and the container's callers get an error
//! at once instead of hanging; a plugin restart keeps the unions mounted (containers keep their
//! root filesystem) and still watches them; a server that stops answering is aborted, so its
//! callers are released.
//!
//! Needs root and the built binaries. Every case cleans up through the harness (plugin stopped,
//! mounts under the sandbox detached, which ends their servers) even when it fails.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strata_tests::client::Harness;
use strata_tests::fstest::create_file;
use strata_tests::harness::run_case;
use strata_tests::{layouts, PluginSpec};

fn spec() -> PluginSpec {
    PluginSpec::new("strata-aufs", layouts::aufs_storage_count)
}

/// The pid of the FUSE server of snapshot mount `mnt` (from the processes' command lines).
fn server_pid(root: &Path, mnt_id: &str) -> Result<i32> {
    let want = [
        "fuse".to_string(),
        "--root".into(),
        root.display().to_string(),
        "--id".into(),
        mnt_id.to_string(),
    ];
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.len() > want.len() && args[1..=want.len()] == want {
            return Ok(pid);
        }
    }
    bail!("no FUSE server for {} under {}", mnt_id, root.display())
}

/// The id of the snapshot a Mounts answer binds (`<root>/mnt/<id>`).
fn mnt_id(source: &str) -> Result<String> {
    Path::new(source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("a bind source with a file name")
}

/// Reads `path` on a thread and gives up after `limit`: a hang is an error.
async fn read_within(path: &Path, limit: Duration) -> Result<std::io::Result<Vec<u8>>> {
    let p = path.to_path_buf();
    let task = tokio::task::spawn_blocking(move || fs::read(p));
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => Ok(joined?),
        Err(_) => bail!("reading {} hung for {limit:?}", path.display()),
    }
}

/// Polls Driver.Status until its "FUSE Failures" row reaches `n`; returns the rows.
async fn wait_for_failures(h: &Harness, n: u64) -> Result<Vec<(String, String)>> {
    let start = Instant::now();
    loop {
        let rows: Vec<(String, String)> = h
            .driver_status()
            .await?
            .context("Driver.Status")?
            .rows
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
        let failures = rows
            .iter()
            .find(|(k, _)| k == "FUSE Failures")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0);
        if failures >= n {
            return Ok(rows);
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the plugin did not report the dead FUSE server within 10s: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the union at `mnt` answers again.
async fn wait_remounted(mnt: &Path) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Ok(_)) = read_within(&mnt.join("f"), Duration::from_secs(2)).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} was not mounted again within 10s", mnt.display())
}

async fn server_killed_under_a_container(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    h.commit_layer("base", "", &[create_file("/f", "from the base", 0o644)])
        .await?;
    let mounts = h.snap.prepare("ctr", "base").await?;
    let id = mnt_id(&mounts[0].source)?;
    let container = h.mount(&mounts)?;
    fs::write(container.path().join("written"), "before the crash")?;
    let pid = server_pid(h.sandbox.root(), &id)?;
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;

    // The container's callers fail at once with ENOTCONN (ECONNABORTED for a call the
    // kernel had already queued when the connection was aborted); nothing hangs.
    let r = read_within(&container.path().join("f"), Duration::from_secs(5)).await?;
    match r {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {}
        other => bail!("a read on the dead union gave {other:?}, want ENOTCONN"),
    }

    // The plugin reports it clearly and mounts the snapshot again.
    let rows = wait_for_failures(&h, 1).await?;
    let last = rows
        .iter()
        .find(|(k, _)| k == "Last FUSE Failure")
        .map(|(_, v)| v.clone())
        .context("a Last FUSE Failure row")?;
    ensure!(
        last.contains(&format!("snapshot {id}")) && last.contains("ENOTCONN"),
        "the failure names the snapshot and what callers see: {last}"
    );
    let mnt = h.sandbox.root().join("mnt").join(&id);
    wait_remounted(&mnt).await?;
    let new_pid = server_pid(h.sandbox.root(), &id)?;
    ensure!(new_pid != pid, "the same server pid {pid} after the crash");

    // A fresh mount of the snapshot works and kept what was written before the crash.
    let again = h.mount(&h.snap.mounts("ctr").await?)?;
    ensure!(fs::read(again.path().join("f"))? == b"from the base");
    ensure!(fs::read(again.path().join("written"))? == b"before the crash");
    fs::write(again.path().join("after"), "after the crash")?;
    again.unmount()?;
    container.unmount()?;
    h.snap.commit("ctr-committed", "ctr").await?;
    let view = h.snap.view("v", "ctr-committed").await?;
    let v = h.mount(&view)?;
    ensure!(fs::read(v.path().join("after"))? == b"after the crash");
    v.unmount()?;
    h.check_consistent().await?;
    Ok(())
}

async fn unions_survive_a_plugin_restart(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    h.commit_layer("base", "", &[create_file("/f", "from the base", 0o644)])
        .await?;
    let mounts = h.snap.prepare("ctr", "base").await?;
    let id = mnt_id(&mounts[0].source)?;
    let container = h.mount(&mounts)?;
    h.plugin.kill()?;
    // The container keeps its root filesystem while the plugin is down.
    fs::write(container.path().join("while-down"), "written")?;
    h.start_again(&[]).await?;
    ensure!(fs::read(container.path().join("while-down"))? == b"written");
    // The restarted plugin adopted the union: Mounts reuses it, and a dead server is noticed.
    let again = h.mount(&h.snap.mounts("ctr").await?)?;
    ensure!(fs::read(again.path().join("while-down"))? == b"written");
    again.unmount()?;
    let pid = server_pid(h.sandbox.root(), &id)?;
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    wait_for_failures(&h, 1).await?;
    wait_remounted(&h.sandbox.root().join("mnt").join(&id)).await?;
    let fresh = h.mount(&h.snap.mounts("ctr").await?)?;
    ensure!(fs::read(fresh.path().join("while-down"))? == b"written");
    fresh.unmount()?;
    let _ = container.unmount();
    h.check_consistent().await?;
    Ok(())
}

/// Kills a process on drop (a stopped server must not outlive a failed case).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

/// Waits until every thread of `pid` is stopped (state `T` in /proc).
fn wait_all_stopped(pid: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = fs::read_dir(format!("/proc/{pid}/task"))?
            .filter_map(|t| t.ok())
            .all(|t| {
                fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
                    st.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .is_some_and(|state| state == "T" || state == "t")
                })
            });
        if all {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the FUSE server {pid} did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

async fn hung_server_is_aborted(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    h.commit_layer("base", "", &[create_file("/f", "from the base", 0o644)])
        .await?;
    let mounts = h.snap.prepare("ctr", "base").await?;
    let id = mnt_id(&mounts[0].source)?;
    let container = h.mount(&mounts)?;
    fs::write(container.path().join("written"), "before the hang")?;
    let pid = server_pid(h.sandbox.root(), &id)?;
    let _reaper = KillOnDrop(pid);
    kill(Pid::from_raw(pid), Signal::SIGSTOP)?;
    // kill(2) returns before every thread of the server has stopped; one still running could
    // answer the read below.
    wait_all_stopped(pid)?;
    // A caller blocked on the stopped server is released once the plugin gives up on it
    // (aufs.fuse_timeout=2s here, probed every 0.5 s).
    let started = Instant::now();
    let r = read_within(&container.path().join("f"), Duration::from_secs(15)).await?;
    match r {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {}
        other => bail!("a read on the hung union gave {other:?}, want ECONNABORTED"),
    }
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "released only after {:?}",
        started.elapsed()
    );
    let rows = wait_for_failures(&h, 1).await?;
    ensure!(
        rows.iter()
            .any(|(k, v)| k == "Last FUSE Failure" && v.contains("did not answer")),
        "the failure says the server hung: {rows:?}"
    );
    wait_remounted(&h.sandbox.root().join("mnt").join(&id)).await?;
    let again = h.mount(&h.snap.mounts("ctr").await?)?;
    ensure!(fs::read(again.path().join("written"))? == b"before the hang");
    again.unmount()?;
    let _ = container.unmount();
    Ok(())
}

#[test]
fn aufs_fuse_hung_server_is_aborted() {
    run_case(
        spec().with_storage_opt("aufs.fuse_timeout=2s"),
        hung_server_is_aborted,
    );
}

#[test]
fn aufs_fuse_server_killed_under_a_container() {
    run_case(spec(), server_killed_under_a_container);
}

#[test]
fn aufs_fuse_unions_survive_a_plugin_restart() {
    run_case(spec(), unions_survive_a_plugin_restart);
}
