//! overlay2's start-up options: bad ones are refused with the option named, `overlay2.size`
//! limits writable snapshots on xfs with project quota (a real xfs on a loop device), and
//! `overlay2.mountopt` reaches the overlay mounts.

use std::fs;
use std::io::Write;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use strata_tests::harness::{find_binary, run_case};
use strata_tests::{layouts, uml, Harness, PluginProcess, PluginSpec, Sandbox};

fn spec() -> PluginSpec {
    PluginSpec::new("strata-overlay2", layouts::overlay2_storage_count)
}

/// Starts the plugin with `opts` and expects it to refuse, naming `expect` on stderr.
fn refused(opts: &[&str], expect: &str) -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut cmd = Command::new(find_binary("strata-overlay2"));
    cmd.arg("--root")
        .arg(sandbox.root())
        .arg("--address")
        .arg(sandbox.work().join("s.sock"));
    for o in opts {
        cmd.arg("--storage-opt").arg(o);
    }
    let out = cmd.output().context("run strata-overlay2")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "strata-overlay2 {opts:?} should refuse to start"
    );
    ensure!(
        stderr.contains(expect),
        "stderr should name {expect:?}:\n{stderr}"
    );
    ensure!(
        stderr
            .lines()
            .filter(|l| l.starts_with("strata-overlay2:"))
            .count()
            == 1,
        "one error line expected:\n{stderr}"
    );
    ensure!(
        !sandbox.work().join("s.sock").exists(),
        "no socket may be left behind"
    );
    Ok(())
}

#[test]
fn overlay2_bad_options_are_refused_by_name() {
    let cases: &[(&[&str], &str)] = &[
        (&["overlay2.nosuch=1"], "\"overlay2.nosuch\""),
        (&["justakey"], "\"justakey\""),
        (&["overlay2.size=lots"], "overlay2.size"),
        (&["overlay2.size=10Q"], "overlay2.size"),
        (&["overlay2.mountopt=upperdir=/x"], "overlay2.mountopt"),
        // The root of the tests is not xfs with project quota.
        (&["overlay2.size=10M"], "overlay2.size"),
    ];
    for (opts, expect) in cases {
        if let Err(e) = refused(opts, expect) {
            panic!("{opts:?}: {e:?}");
        }
    }
}

#[test]
fn overlay2_mountopt_reaches_overlay_mounts() {
    run_case(
        spec().with_storage_opt("overlay2.mountopt=nodev"),
        |spec| async move {
            let h = Harness::start(&spec).await?;
            h.snap.prepare("base-active", "").await?;
            h.snap.commit("base", "base-active").await?;
            let mounts = h.snap.prepare("child", "base").await?;
            ensure!(
                mounts[0].options.iter().any(|o| o == "nodev"),
                "mountopt missing: {mounts:?}"
            );
            let guard = h.mount(&mounts)?;
            let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
            let line = mountinfo
                .lines()
                .find(|l| l.split(' ').nth(4) == guard.path().to_str())
                .context("the overlay is not in mountinfo")?;
            ensure!(
                line.split(' ')
                    .nth(5)
                    .is_some_and(|o| o.split(',').any(|f| f == "nodev")),
                "not nodev: {line}"
            );
            guard.unmount()?;
            Ok(())
        },
    );
}

/// Makes `dir` an xfs with project quota enforced, on a sparse file through a loop device that
/// goes away when it is unmounted (the sandbox unmounts on drop).
fn mount_xfs_pquota(dir: &std::path::Path, image: &std::path::Path) -> Result<()> {
    let f = fs::File::create(image)?;
    f.set_len(512 << 20)?;
    drop(f);
    let out = Command::new("mkfs.xfs")
        .arg("-q")
        .arg(image)
        .output()
        .context("run mkfs.xfs (apt-get install xfsprogs)")?;
    ensure!(
        out.status.success(),
        "mkfs.xfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("mount")
        .args(["-o", "loop,pquota"])
        .arg(image)
        .arg(dir)
        .output()
        .context("run mount")?;
    if !out.status.success() {
        bail!(
            "mount -o loop,pquota: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The host kernel has no XFS (or ext4) quota support, so this runs inside User-Mode Linux,
/// whose kernel has XFS quota.
#[test]
fn overlay2_size_limits_writable_snapshots_on_xfs() {
    uml::in_uml(
        "overlay2_size_limits_writable_snapshots_on_xfs",
        &uml::LOOP_OVERLAY_MODULES,
        || {
            run_case(spec().with_storage_opt("overlay2.size=20M"), size_limit);
            Ok(())
        },
    );
}

async fn size_limit(spec: PluginSpec) -> Result<()> {
    {
        let sandbox = Sandbox::new()?;
        mount_xfs_pquota(sandbox.root(), &sandbox.work().join("xfs.img"))?;
        let plugin = PluginProcess::start(&spec, &sandbox).await?;
        let snap = strata_tests::Snap::new(plugin.snapshots());
        let status = plugin
            .driver()
            .status(strata_proto::storage::StatusRequest {})
            .await?
            .into_inner();
        ensure!(
            status
                .rows
                .iter()
                .any(|r| r.key == "Backing Filesystem" && r.value == "xfs"),
            "status: {:?}",
            status.rows
        );
        // A layer with no parent (bind mount) and a container layer on it (overlay).
        let mounts = snap.prepare("base-active", "").await?;
        let target = sandbox.new_dir("m")?;
        let guard = strata_tests::MountGuard::mount(&mounts, &target)?;
        fs::write(guard.path().join("small"), vec![1u8; 1 << 20])?;
        guard.unmount()?;
        snap.commit("base", "base-active").await?;
        let mounts = snap.prepare("container", "base").await?;
        let target = sandbox.new_dir("c")?;
        let guard = strata_tests::MountGuard::mount(&mounts, &target)?;
        let mut f = fs::File::create(guard.path().join("big"))?;
        let chunk = vec![7u8; 1 << 20];
        let mut written = 0usize;
        let err = loop {
            match f.write_all(&chunk).and_then(|_| f.sync_all()) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            ensure!(
                written < 64,
                "wrote {written} MiB into a snapshot limited to 20 MiB"
            );
        };
        ensure!(
            matches!(err.raw_os_error(), Some(libc::EDQUOT) | Some(libc::ENOSPC)),
            "expected EDQUOT or ENOSPC, got {err}"
        );
        ensure!(
            (15..=21).contains(&written),
            "the limit stopped the write after {written} MiB, not about 20"
        );
        drop(f);
        guard.unmount()?;
        Ok(())
    }
}

#[test]
fn overlay2_socket_is_private_and_never_stolen() {
    run_case(spec(), |spec| async move {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let sandbox = Sandbox::new()?;
        let mut plugin = PluginProcess::start(&spec, &sandbox).await?;
        let meta = fs::symlink_metadata(plugin.socket())?;
        ensure!(meta.file_type().is_socket(), "not a socket");
        ensure!(
            meta.permissions().mode() & 0o777 == 0o600,
            "socket mode {:o}",
            meta.permissions().mode() & 0o777
        );

        // A second plugin on the same socket refuses to start and leaves the first serving.
        let other = Sandbox::new()?;
        let out = Command::new(find_binary("strata-overlay2"))
            .arg("--root")
            .arg(other.root())
            .arg("--address")
            .arg(plugin.socket())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("already serving"),
            "second plugin: {stderr}"
        );
        strata_tests::Snap::new(plugin.snapshots())
            .list(&[])
            .await
            .context("the first plugin must still serve")?;

        // SIGTERM: exit 0 and the socket is gone.
        let status = plugin.stop()?;
        ensure!(status.success(), "SIGTERM must exit 0, got {status}");
        ensure!(
            !plugin.socket().exists(),
            "the socket must be removed on exit"
        );

        // A file that is not a socket is never replaced.
        fs::write(plugin.socket(), b"not a socket")?;
        let out = Command::new(find_binary("strata-overlay2"))
            .arg("--root")
            .arg(sandbox.root())
            .arg("--address")
            .arg(plugin.socket())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("not a socket"),
            "{stderr}"
        );
        fs::remove_file(plugin.socket())?;
        Ok(())
    });
}
