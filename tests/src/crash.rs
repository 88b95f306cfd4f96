//! Crash recovery: the plugin kills itself (SIGKILL) at a failpoint in the middle of an
//! operation, is started again on the same root, and must come back consistent: every snapshot
//! List shows Stats and mounts, a half-made snapshot is either invisible or complete, and after
//! Cleanup no storage is left for snapshots that do not exist.
//!
//! Failpoints are named by the environment variable `STRATA_FAILPOINT` (see the plugin core).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use strata_proto::snapshots::Kind;
use tonic::Code;

use crate::client::{check_info, expect_code, gc_root_labels, labels, Harness};
use crate::fstest::{apply, check_trees_equal, create_file, remove_all};
use crate::harness::PluginSpec;

/// Storage made, metadata not written.
pub const PREPARE_AFTER_CREATE: &str = "prepare:after-create";
/// Prepare's metadata written, not yet answered.
pub const PREPARE_AFTER_METADATA: &str = "prepare:after-metadata";
/// Commit before its metadata is written.
pub const COMMIT_BEFORE_METADATA: &str = "commit:before-metadata";
/// Commit's metadata written, not yet answered.
pub const COMMIT_AFTER_METADATA: &str = "commit:after-metadata";
/// Remove's metadata gone, storage not yet removed.
pub const REMOVE_AFTER_METADATA: &str = "remove:after-metadata";

/// The call the crashed plugin was making.
#[derive(Debug, Clone, Copy)]
enum Op {
    Prepare,
    Commit,
    Remove,
}

/// Runs the crash scenario for `failpoint`:
/// 1. a normal plugin makes `base` (committed, file /base) and `a1` (active on base, file /a1);
/// 2. it is stopped gracefully and started with the failpoint armed;
/// 3. the operation the failpoint sits in is called: Prepare(victim, base), Commit(a1-c, a1)
///    or Remove(a1); the call must fail and the plugin must die of SIGKILL;
/// 4. the plugin is started again without the failpoint and the outcome is checked.
pub async fn crash_at(spec: PluginSpec, failpoint: &str) -> Result<()> {
    let op = match failpoint {
        PREPARE_AFTER_CREATE | PREPARE_AFTER_METADATA => Op::Prepare,
        COMMIT_BEFORE_METADATA | COMMIT_AFTER_METADATA => Op::Commit,
        REMOVE_AFTER_METADATA => Op::Remove,
        other => bail!("unknown failpoint {other:?}"),
    };
    let mut h = Harness::start(&spec).await?;
    let base_files = [create_file("/base", "base\n", 0o644)];
    let a1_files = [create_file("/a1", "a1\n", 0o644)];
    let flat_base = h.flat_dir()?;
    apply(&flat_base, &base_files)?;
    let flat_a1 = h.flat_dir()?;
    apply(&flat_a1, &base_files)?;
    apply(&flat_a1, &a1_files)?;

    h.commit_layer("base", "", &base_files).await?;
    let mounts = h.snap.prepare("a1", "base").await?;
    let guard = h.mount(&mounts)?;
    apply(guard.path(), &a1_files)?;
    guard.unmount()?;

    h.restart(&[("STRATA_FAILPOINT", failpoint)])
        .await
        .with_context(|| format!("restart with the failpoint {failpoint}"))?;
    let result = match op {
        Op::Prepare => h
            .snap
            .try_prepare("victim", "base", gc_root_labels())
            .await
            .map(drop),
        Op::Commit => h.snap.try_commit("a1-c", "a1", gc_root_labels()).await,
        Op::Remove => h.snap.try_remove("a1").await,
    };
    let call_error = match result {
        Ok(()) => bail!("failpoint {failpoint} did not fire: the {op:?} call succeeded"),
        Err(status) => status,
    };
    let status = h
        .plugin
        .wait_exit(Duration::from_secs(10))
        .await
        .with_context(|| {
            format!(
                "the plugin must die at the failpoint {failpoint}; the {op:?} call failed with \
                 {:?}: {}",
                call_error.code(),
                call_error.message()
            )
        })?;
    ensure!(
        status.signal() == Some(libc::SIGKILL),
        "at the failpoint {failpoint} the plugin must die of SIGKILL, got {status}; its log:\n{}",
        h.plugin.log_tail(30)
    );

    h.start_again(&[])
        .await
        .with_context(|| format!("restart on the same root after crashing at {failpoint}"))?;
    let s = &h.snap;
    check_info(&s.stat("base").await?, "base", "", Kind::Committed)
        .context("base must survive the crash")?;
    match failpoint {
        PREPARE_AFTER_CREATE => {
            expect_code(
                s.try_stat("victim").await,
                Code::NotFound,
                "a Prepare that crashed before its metadata must not be visible",
            )?;
            h.check_consistent().await?;
            s.prepare("victim", "base")
                .await
                .context("the key of a crashed Prepare must be usable again")?;
        }
        PREPARE_AFTER_METADATA => {
            check_info(&s.stat("victim").await?, "victim", "base", Kind::Active)
                .context("a Prepare that crashed after its metadata must be complete")?;
            let mounts = s.mounts("victim").await?;
            let guard = h.mount(&mounts)?;
            check_trees_equal(&flat_base, guard.path())
                .context("the recovered victim's content")?;
            apply(guard.path(), &[create_file("/victim", "v\n", 0o644)])?;
            guard.unmount()?;
            s.commit("victim-c", "victim")
                .await
                .context("the recovered victim must commit")?;
        }
        COMMIT_BEFORE_METADATA => {
            check_info(&s.stat("a1").await?, "a1", "base", Kind::Active).context(
                "a Commit that crashed before its metadata must leave the active snapshot",
            )?;
            expect_code(
                s.try_stat("a1-c").await,
                Code::NotFound,
                "the name of a Commit that crashed before its metadata",
            )?;
            let mounts = s.mounts("a1").await?;
            let guard = h.mount(&mounts)?;
            check_trees_equal(&flat_a1, guard.path()).context("a1's content after the crash")?;
            guard.unmount()?;
            h.check_consistent().await?;
            s.commit("a1-c", "a1")
                .await
                .context("committing again must work")?;
        }
        COMMIT_AFTER_METADATA => {
            check_info(&s.stat("a1-c").await?, "a1-c", "base", Kind::Committed)
                .context("a Commit that crashed after its metadata must be complete")?;
            expect_code(
                s.try_stat("a1").await,
                Code::NotFound,
                "the key of a Commit that crashed after its metadata",
            )?;
        }
        REMOVE_AFTER_METADATA => {
            expect_code(
                s.try_stat("a1").await,
                Code::NotFound,
                "a Remove that crashed after its metadata must be done",
            )?;
            h.check_consistent().await?;
            s.prepare("a1", "base")
                .await
                .context("the key of a crashed Remove must be usable again")?;
        }
        _ => {}
    }
    if matches!(failpoint, COMMIT_AFTER_METADATA | COMMIT_BEFORE_METADATA) {
        let mounts = s.view("check", "a1-c").await?;
        let guard = h.mount(&mounts)?;
        check_trees_equal(&flat_a1, guard.path())
            .context("a View of the commit after the crash")?;
        guard.unmount()?;
        s.remove("check").await?;
    }
    h.check_consistent().await?;
    Ok(())
}

/// Crash in Prepare after the storage is made, before the metadata.
pub async fn prepare_after_create(spec: PluginSpec) -> Result<()> {
    crash_at(spec, PREPARE_AFTER_CREATE).await
}

/// Crash in Prepare after the metadata is written.
pub async fn prepare_after_metadata(spec: PluginSpec) -> Result<()> {
    crash_at(spec, PREPARE_AFTER_METADATA).await
}

/// Crash in Commit before the metadata is written.
pub async fn commit_before_metadata(spec: PluginSpec) -> Result<()> {
    crash_at(spec, COMMIT_BEFORE_METADATA).await
}

/// Crash in Commit after the metadata is written.
pub async fn commit_after_metadata(spec: PluginSpec) -> Result<()> {
    crash_at(spec, COMMIT_AFTER_METADATA).await
}

/// Crash in Remove after the metadata is gone, before the storage is.
pub async fn remove_after_metadata(spec: PluginSpec) -> Result<()> {
    crash_at(spec, REMOVE_AFTER_METADATA).await
}

/// A graceful restart (SIGTERM → exit 0 → start again on the same root) keeps every snapshot
/// exactly: the same Infos (timestamps and labels included) and the same content.
pub async fn restart_keeps_store(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    let base = [create_file("/base", "base\n", 0o644)];
    let top = [create_file("/top", "top\n", 0o600), remove_all("/base")];
    let mine = [create_file("/mine", "mine\n", 0o644)];
    let flat_top = h.flat_dir()?;
    apply(&flat_top, &base)?;
    apply(&flat_top, &top)?;
    let flat_active = h.flat_dir()?;
    apply(&flat_active, &base)?;
    apply(&flat_active, &top)?;
    apply(&flat_active, &mine)?;

    h.commit_layer("base", "", &base).await?;
    h.commit_layer("top", "base", &top).await?;
    let active_mounts = h
        .snap
        .prepare_with("active", "top", labels(&[("k", "v")]))
        .await?;
    let guard = h.mount(&active_mounts)?;
    apply(guard.path(), &mine)?;
    guard.unmount()?;
    h.snap.view("view", "top").await?;
    let mut info = h.snap.stat("base").await?;
    info.labels = labels(&[("updated", "yes")]);
    h.snap.update(info, None).await?;

    let mut before = h.snap.list(&[]).await?;
    before.sort_by(|a, b| a.name.cmp(&b.name));
    h.restart(&[]).await?;
    let mut after = h.snap.list(&[]).await?;
    after.sort_by(|a, b| a.name.cmp(&b.name));
    ensure!(
        before == after,
        "a graceful restart must keep every Info exactly:\n  before {before:#?}\n  after  {after:#?}"
    );
    // The mounts may be described differently after a restart (a device may get a new
    // number); what they show must be the same.
    let again = h.snap.mounts("active").await?;
    let guard = h.mount(&again)?;
    check_trees_equal(&flat_active, guard.path()).context("the active snapshot after a restart")?;
    guard.unmount()?;
    let again = h.snap.mounts("view").await?;
    let guard = h.mount(&again)?;
    check_trees_equal(&flat_top, guard.path()).context("the view after a restart")?;
    guard.unmount()?;
    h.check_consistent().await?;
    Ok(())
}

/// How long after starting the workload each round of [`kill_during_workload`] kills the
/// plugin (fixed, so a failure can be reproduced).
pub const KILL_DELAYS_MS: [u64; 5] = [15, 45, 90, 140, 220];

/// Prepares, commits, removes and views in a loop until the plugin goes away.
async fn busy(snap: crate::client::Snap, tag: String) -> Result<()> {
    for i in 0.. {
        let (key, name, view) = (
            format!("{tag}/active {i}"),
            format!("{tag}/committed {i}"),
            format!("{tag}/view {i}"),
        );
        snap.prepare(&key, "base").await?;
        snap.commit(&name, &key).await?;
        snap.view(&view, &name).await?;
        if i % 2 == 0 {
            snap.remove(&view).await?;
            snap.remove(&name).await?;
        }
    }
    Ok(())
}

/// SIGKILL from outside at arbitrary moments while two clients work: after every restart the
/// store is consistent (every listed snapshot Stats and mounts; Cleanup leaves exactly their
/// storage) and keeps working.
pub async fn kill_during_workload(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    h.commit_layer("base", "", &[create_file("/base", "base\n", 0o644)])
        .await?;
    for (round, delay) in KILL_DELAYS_MS.into_iter().enumerate() {
        let workers: Vec<_> = (0..2)
            .map(|w| tokio::spawn(busy(h.snap.clone(), format!("r{round}w{w}"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        h.plugin.kill().context("kill the plugin")?;
        for worker in workers {
            // The workers end with an error once the plugin is gone; that is expected.
            let _ = worker.await;
        }
        h.start_again(&[])
            .await
            .with_context(|| format!("round {round}: restart after SIGKILL at {delay} ms"))?;
        let listed = h
            .check_consistent()
            .await
            .with_context(|| format!("round {round}: after SIGKILL at {delay} ms"))?;
        ensure!(
            listed.iter().any(|i| i.name == "base"),
            "round {round}: base is gone after a SIGKILL"
        );
        h.snap
            .prepare(&format!("after-round-{round}"), "base")
            .await
            .with_context(|| format!("round {round}: the recovered plugin must keep working"))?;
    }
    Ok(())
}

/// How long after starting [`kill_during_startup`] kills the plugin, in milliseconds.
pub const STARTUP_KILL_DELAYS_MS: [u64; 6] = [0, 2, 5, 10, 25, 60];

/// SIGKILL while the plugin starts (and recovers from earlier crashes) must not make things
/// worse: leftovers of crashed Prepares and Removes are made first, the plugin is killed early
/// in its start again and again, and then it must start and be consistent.
pub async fn kill_during_startup(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    h.commit_layer("base", "", &[create_file("/base", "base\n", 0o644)])
        .await?;
    h.snap.prepare("to-remove", "base").await?;
    // Leave an orphan of a crashed Prepare and of a crashed Remove behind.
    for (failpoint, op) in [
        (PREPARE_AFTER_CREATE, "prepare"),
        (REMOVE_AFTER_METADATA, "remove"),
    ] {
        h.restart(&[("STRATA_FAILPOINT", failpoint)]).await?;
        let result = match op {
            "prepare" => h
                .snap
                .try_prepare("orphan", "base", gc_root_labels())
                .await
                .map(drop),
            _ => h.snap.try_remove("to-remove").await,
        };
        ensure!(result.is_err(), "failpoint {failpoint} did not fire");
        h.plugin.wait_exit(Duration::from_secs(10)).await?;
        h.start_again(&[]).await?;
    }
    h.plugin.stop()?;
    for delay in STARTUP_KILL_DELAYS_MS {
        crate::harness::start_and_kill(&h.spec, &h.sandbox, Duration::from_millis(delay)).await?;
    }
    h.start_again(&[])
        .await
        .context("start after being killed during start six times")?;
    let listed = h.check_consistent().await?;
    let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    ensure!(
        names == ["base"],
        "after crashes and killed starts only base may be left, List shows {names:?}"
    );
    let mounts = h.snap.prepare("after", "base").await?;
    let guard = h.mount(&mounts)?;
    crate::fstest::read_everything(guard.path())?;
    guard.unmount()?;
    Ok(())
}
