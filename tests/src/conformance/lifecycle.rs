//! Lifecycle cases: Basic, StatActive, StatCommitted, Transitivity, RemoveIntermediateSnapshot,
//! ViewReadonly, CloseTwice, RootPermission.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use nix::sys::stat::{umask, Mode};
use strata_proto::snapshots::snapshots_client::SnapshotsClient;
use strata_proto::snapshots::{Kind, ListSnapshotsRequest};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::client::{check_info, expect_code, Harness, Snap, SNAPSHOTTER};
use crate::fstest::{apply, check_trees_equal, create_dir, create_file, remove_all};
use crate::harness::PluginSpec;

/// Basic: the whole flow of two layers, a view, List equal to Stat, and Remove order.
pub async fn basic(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    let work = h.sandbox.work();
    // containerd's suite uses absolute paths as keys.
    let key = |name: &str| work.join(name).display().to_string();
    let (preparing, committed) = (key("preparing"), key("committed"));
    let (next, next_committed, next_view) = (key("nextlayer"), key("committed-next"), key("view"));
    let flat = h.flat_dir()?;

    let initial = [
        create_file("/foo", "foo\n", 0o777),
        create_dir("/a", 0o755),
        create_dir("/a/b", 0o755),
        create_dir("/a/b/c", 0o755),
    ];
    let mounts = snap.prepare(&preparing, "").await?;
    let guard = h.mount(&mounts)?;
    apply(guard.path(), &initial)?;
    guard.unmount()?;
    apply(&flat, &initial)?;
    snap.commit(&committed, &preparing).await?;

    let info = snap.stat(&committed).await?;
    check_info(&info, &committed, "", Kind::Committed)?;
    expect_code(
        snap.try_stat(&preparing).await,
        Code::NotFound,
        "Stat of the active key after it was committed",
    )?;

    let mounts = snap.prepare(&next, &committed).await?;
    let guard = h.mount(&mounts)?;
    check_trees_equal(&flat, guard.path())
        .context("a child of the first commit must show exactly its content")?;
    let diff = [
        create_file("/bar", "bar\n", 0o777),
        create_file("/foo", "foo\nbar\n", 0o777),
        remove_all("/a/b"),
    ];
    apply(guard.path(), &diff)?;
    apply(&flat, &diff)?;
    check_trees_equal(&flat, guard.path())?;
    let info = snap.stat(&next).await?;
    check_info(&info, &next, &committed, Kind::Active)?;
    let again = snap.mounts(&next).await?;
    ensure!(
        again == mounts,
        "Mounts must re-create the mounts Prepare returned:\n  prepare {mounts:?}\n  mounts  {again:?}"
    );
    guard.unmount()?;

    snap.commit(&next_committed, &next).await?;
    let info = snap.stat(&next_committed).await?;
    check_info(&info, &next_committed, &committed, Kind::Committed)?;
    expect_code(
        snap.try_stat(&next).await,
        Code::NotFound,
        "Stat of the second active key after it was committed",
    )?;

    // List (Walk) must return exactly what Stat returns, timestamps and labels included.
    let listed = snap.list(&[]).await?;
    ensure!(
        listed.len() == 2,
        "List must show the two committed snapshots, got {listed:#?}"
    );
    for info in &listed {
        ensure!(
            info.name == committed || info.name == next_committed,
            "List shows an unexpected snapshot {:?}",
            info.name
        );
        let stat = snap.stat(&info.name).await?;
        ensure!(
            &stat == info,
            "List and Stat must agree exactly for {:?}:\n  list {info:?}\n  stat {stat:?}",
            info.name
        );
    }

    let mounts = snap.view(&next_view, &next_committed).await?;
    let guard = h.mount(&mounts)?;
    check_trees_equal(&flat, guard.path()).context("a View of the second commit")?;
    guard.unmount()?;
    snap.remove(&next_view).await?;

    let status = expect_code(
        snap.try_remove(&committed).await,
        Code::FailedPrecondition,
        "Remove of a committed snapshot that has a child",
    )?;
    ensure!(
        status.message().contains("remove"),
        "the remove-with-children error must contain \"remove\" (containerd checks it), got {:?}",
        status.message()
    );
    snap.remove(&next_committed).await?;
    snap.remove(&committed).await?;
    let left = snap.list(&[]).await?;
    ensure!(left.is_empty(), "List after removing everything: {left:#?}");
    Ok(())
}

/// StatActive: Stat of a fresh active snapshot with a file written in it.
pub async fn stat_active(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let key = h.sandbox.work().join("preparing").display().to_string();
    let mounts = h.snap.prepare(&key, "").await?;
    let guard = h.mount(&mounts)?;
    apply(guard.path(), &[create_file("/foo", "foo\n", 0o644)])?;
    guard.unmount()?;
    let info = h.snap.stat(&key).await?;
    check_info(&info, &key, "", Kind::Active)
}

/// StatCommitted: Stat of a committed snapshot.
pub async fn stat_committed(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let work = h.sandbox.work();
    let key = work.join("preparing").display().to_string();
    let name = work.join("committed").display().to_string();
    let mounts = h.snap.prepare(&key, "").await?;
    let guard = h.mount(&mounts)?;
    apply(guard.path(), &[create_file("/foo", "foo\n", 0o644)])?;
    guard.unmount()?;
    h.snap.commit(&name, &key).await?;
    let info = h.snap.stat(&name).await?;
    check_info(&info, &name, "", Kind::Committed)
}

/// Transitivity: parents are followed through Stat.
pub async fn transitivity(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    h.commit_layer("snapA", "", &[create_file("/foo", "foo\n", 0o644)])
        .await?;
    h.commit_layer("snapB", "snapA", &[create_file("/bar", "bar\n", 0o644)])
        .await?;
    let b = h.snap.stat("snapB").await?;
    ensure!(
        b.parent == "snapA",
        "Stat(snapB).parent: want snapA, got {:?}",
        b.parent
    );
    let a = h.snap.stat("snapA").await?;
    ensure!(
        a.parent.is_empty(),
        "Stat(snapA).parent: want \"\", got {:?}",
        a.parent
    );
    let via = h.snap.stat(&b.parent).await?;
    ensure!(
        via.parent.is_empty(),
        "Stat(Stat(snapB).parent).parent: want \"\", got {:?}",
        via.parent
    );
    check_info(&via, "snapA", "", Kind::Committed)
}

/// RemoveIntermediateSnapshot: a snapshot with children cannot be removed until they are gone.
pub async fn remove_intermediate_snapshot(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    h.commit_layer("base", "", &[create_file("/foo", "foo\n", 0o644)])
        .await?;
    h.commit_layer("inter", "base", &[create_file("/bar", "bar\n", 0o644)])
        .await?;
    snap.prepare("top", "inter").await?;

    for (key, what) in [
        (
            "inter",
            "Remove of the intermediate snapshot while top exists",
        ),
        ("base", "Remove of the base snapshot while inter exists"),
    ] {
        let status = expect_code(snap.try_remove(key).await, Code::FailedPrecondition, what)?;
        ensure!(
            status.message().contains("remove"),
            "{what}: the message must contain \"remove\", got {:?}",
            status.message()
        );
        snap.stat(key)
            .await
            .with_context(|| format!("{key} must survive the refused Remove"))?;
    }
    snap.remove("top").await?;
    snap.remove("inter").await?;
    snap.remove("base").await?;
    let left = snap.list(&[]).await?;
    ensure!(left.is_empty(), "List after removing everything: {left:#?}");
    Ok(())
}

/// ViewReadonly: a mounted View cannot be written (EROFS), for a one-layer and a two-layer
/// parent; then the view and its parents can be removed.
pub async fn view_readonly(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    h.commit_layer("committed", "", &[create_file("/foo", "foo\n", 0o644)])
        .await?;
    h.commit_layer(
        "committed-2",
        "committed",
        &[create_file("/bar", "bar\n", 0o644)],
    )
    .await?;
    // A view of nothing, of one layer and of two layers (drivers mount these differently).
    for (view, parent) in [
        ("view-0", ""),
        ("view-1", "committed"),
        ("view-2", "committed-2"),
    ] {
        let mounts = snap.view(view, parent).await?;
        let guard = h.mount(&mounts)?;
        let mut attempts = vec![(guard.path().join("newfile"), "creating a new file")];
        if !parent.is_empty() {
            attempts.push((guard.path().join("foo"), "rewriting an existing file"));
        }
        for (path, what) in attempts {
            match fs::write(&path, "x") {
                Ok(()) => {
                    bail!("{what} in View {view} of {parent} succeeded; a View must be read-only")
                }
                Err(err) => ensure!(
                    err.raw_os_error() == Some(libc::EROFS),
                    "{what} in View {view} of {parent}: want EROFS, got {err}"
                ),
            }
        }
        guard.unmount()?;
        snap.remove(view).await?;
    }
    snap.remove("committed-2").await?;
    snap.remove("committed").await?;
    Ok(())
}

/// CloseTwice: closing a client (dropping its connection) twice is harmless, and so is a
/// client that goes away in the middle of a List stream; the server keeps serving.
pub async fn close_twice(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    let channel = h.plugin.connect().await?;
    let own = Snap::new(SnapshotsClient::new(channel.clone()));
    own.prepare("prepare", "").await?;
    own.commit("committed", "prepare").await?;
    own.remove("committed").await?;
    // containerd's proxy Close is a local no-op: closing twice means dropping twice.
    let second = own.clone();
    drop(own);
    drop(second);
    drop(channel);

    // A client that hangs up in the middle of a stream.
    for i in 0..4 {
        h.snap.prepare(&format!("stream-{i}"), "").await?;
    }
    let channel = h.plugin.connect().await?;
    let mut client = SnapshotsClient::new(channel.clone());
    let stream = client
        .list(ListSnapshotsRequest {
            snapshotter: SNAPSHOTTER.into(),
            filters: Vec::new(),
        })
        .await
        .context("open a List stream")?
        .into_inner();
    drop(stream);
    drop(client);
    drop(channel);
    tokio::time::sleep(Duration::from_millis(100)).await;

    ensure!(
        h.plugin.is_running()?,
        "the plugin exited after clients went away; its log:\n{}",
        h.plugin.log_tail(30)
    );
    let fresh = Snap::new(SnapshotsClient::new(h.plugin.connect().await?));
    let listed = fresh.list(&[]).await?;
    ensure!(
        listed.len() == 4,
        "a new client must see the 4 stream-* snapshots, got {listed:#?}"
    );
    h.snap
        .stat("stream-0")
        .await
        .context("the first client must keep working")?;
    if h.spec.has_driver_service() {
        let mut health = HealthClient::new(h.plugin.connect().await?);
        health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .context("health check after clients closed")?;
    }
    Ok(())
}

/// RootPermission: with umask 0 (as containerd's suite runs), the root of a fresh active
/// snapshot is mode 0755.
pub async fn root_permission(spec: PluginSpec) -> Result<()> {
    // Process-wide, as in containerd's suite; the plugin inherits it.
    umask(Mode::empty());
    let h = Harness::start(&spec).await?;
    let mounts = h.snap.prepare("preparing", "").await?;
    let guard = h.mount(&mounts)?;
    let mode = fs::metadata(guard.path())
        .with_context(|| format!("stat {}", guard.path().display()))?
        .mode()
        & 0o7777;
    ensure!(
        mode == 0o755,
        "the root of a new active snapshot must be 0755 (with umask 0), got {mode:04o}"
    );
    guard.unmount()?;
    Ok(())
}

/// Cleanup (twice) while snapshots are mounted and in use removes nothing live: the mounts keep
/// working, their content is intact, and the active one still commits.
pub async fn cleanup_keeps_live(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let snap = &h.snap;
    let base = [create_file("/base", "base\n", 0o644)];
    let mine = [create_file("/mine", "mine\n", 0o644)];
    let flat_base = h.flat_dir()?;
    apply(&flat_base, &base)?;
    let flat_mine = h.flat_dir()?;
    apply(&flat_mine, &base)?;
    apply(&flat_mine, &mine)?;
    h.commit_layer("base", "", &base).await?;
    let active = h.mount(&snap.prepare("active", "base").await?)?;
    let view = h.mount(&snap.view("view", "base").await?)?;
    for round in 0..2 {
        match snap.try_cleanup().await {
            Ok(()) => {}
            Err(s) if s.code() == Code::Unimplemented => return Ok(()),
            Err(s) => bail!(
                "Cleanup #{round} with live mounts: {:?}: {}",
                s.code(),
                s.message()
            ),
        }
    }
    check_trees_equal(&flat_base, view.path()).context("a mounted view after Cleanup")?;
    apply(active.path(), &mine).context("writing into an active mount after Cleanup")?;
    check_trees_equal(&flat_mine, active.path()).context("an active mount after Cleanup")?;
    active.unmount()?;
    view.unmount()?;
    snap.commit("committed", "active").await?;
    let mounts = snap.view("check", "committed").await?;
    let guard = h.mount(&mounts)?;
    check_trees_equal(&flat_mine, guard.path()).context("the commit made after Cleanup")?;
    guard.unmount()?;
    snap.remove("check").await?;
    h.check_consistent().await?;
    Ok(())
}
