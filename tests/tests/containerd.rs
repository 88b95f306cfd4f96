//! containerd 1.6 loads `strata-overlay2` as a proxy snapshotter, imports a two-layer image
//! through it and runs a container on it with runc.

mod support;

use anyhow::{ensure, Result};
use strata_tests::harness::{run_case, unique_name};
use strata_tests::image::{busybox_layer, docker_archive, layer, Entry};
use strata_tests::{layouts, PluginProcess, PluginSpec, Sandbox};
use support::containerd::Containerd;

async fn import_and_run(spec: PluginSpec) -> Result<()> {
    let sandbox = Sandbox::new()?;
    let plugin = PluginProcess::start(&spec, &sandbox).await?;

    // Layer 1: busybox plus /data/dir/file and /etc/motd; layer 2 deletes /data/dir (a
    // whiteout), changes /etc/motd and adds /etc/layer2.
    let l1 = busybox_layer(vec![
        Entry::File("etc/motd".into(), b"from layer 1\n".to_vec(), 0o644),
        Entry::Dir("data", 0o755),
        Entry::Dir("data/dir", 0o755),
        Entry::File("data/dir/file".into(), b"hello\n".to_vec(), 0o644),
        Entry::File("data/keep".into(), b"kept\n".to_vec(), 0o644),
    ])?;
    let l2 = layer(&[
        Entry::Dir("data", 0o755),
        Entry::File("data/.wh.dir".into(), Vec::new(), 0o644),
        Entry::Dir("etc", 0o755),
        Entry::File("etc/motd".into(), b"from layer 2\n".to_vec(), 0o644),
        Entry::File("etc/layer2".into(), b"added\n".to_vec(), 0o644),
    ])?;
    let reference = "docker.io/strata-test/two-layers:latest";
    let archive = sandbox.work().join("image.tar");
    docker_archive(&archive, reference, &[l1, l2], &["sh"])?;

    let cdir = sandbox.new_dir("containerd")?;
    let containerd = Containerd::start(&cdir, "strata", plugin.socket())?;
    containerd.ctr_ok(&[
        "images",
        "import",
        "--snapshotter",
        "strata",
        archive.to_str().unwrap_or_default(),
    ])?;
    let snapshots = containerd.ctr_ok(&["snapshots", "--snapshotter", "strata", "ls"])?;
    ensure!(
        snapshots.lines().count() >= 3,
        "expected two committed layers in `ctr snapshots ls`, got:\n{snapshots}"
    );

    let id = unique_name("ctr");
    let out = containerd.ctr_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "strata",
        reference,
        &id,
        "sh",
        "-c",
        "cat /etc/motd /etc/layer2 /data/keep; test -e /data/dir && echo dir-present || echo dir-deleted; echo written > /tmp/w && cat /tmp/w",
    ])?;
    let want = "from layer 2\nadded\nkept\ndir-deleted\nwritten\n";
    ensure!(
        out.replace("\r\n", "\n") == want,
        "container output:\n{out}\nwanted:\n{want}"
    );

    // The container's snapshot is gone after --rm; removing the image lets GC remove layers.
    containerd.ctr_ok(&["images", "rm", "--sync", reference])?;
    drop(containerd);
    Ok(())
}

#[test]
fn containerd_imports_and_runs_on_overlay2() {
    run_case(
        PluginSpec::new("strata-overlay2", layouts::overlay2_storage_count),
        import_and_run,
    );
}
