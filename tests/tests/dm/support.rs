//! What the devicemapper tests share: the plugin spec, the pool's own view of its thin devices
//! (thin_ls on a metadata snapshot), running many cases in one UML boot, and removing every
//! device a case left.

#![allow(dead_code)]

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use strata_tests::harness::run_case;
use strata_tests::PluginSpec;

/// Where the cases' sandboxes live inside UML (a tmpfs: hostfs has no xattrs).
pub const SCRATCH: &str = "/run/strata-dm";

/// The spec for `fs` (ext4 or xfs) on a small loop pool.
pub fn spec(fs: &str) -> PluginSpec {
    let base = if fs == "xfs" { "320M" } else { "64M" };
    PluginSpec::new("strata-devmapper", thin_count)
        .with_storage_opt("dm.loopdatasize=4G")
        .with_storage_opt("dm.loopmetadatasize=32M")
        .with_storage_opt(&format!("dm.fs={fs}"))
        .with_storage_opt(&format!("dm.basesize={base}"))
        .with_copied_parents()
        .with_status_rows(&[
            "Pool Name",
            "Pool Blocksize",
            "Base Device Size",
            "Backing Filesystem",
            "Data file",
            "Metadata file",
            "Data Space Used",
            "Data Space Total",
            "Data Space Available",
            "Metadata Space Used",
            "Metadata Space Total",
            "Metadata Space Available",
            "Thin Pool Minimum Free Space",
            "Deferred Removal Enabled",
            "Deferred Deletion Enabled",
            "Deferred Deleted Device Count",
            "Library Version",
            "Snapshots",
        ])
}

/// Runs `cmd` and returns its stdout, failing with its stderr.
pub fn sh(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .with_context(|| format!("run {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The device-mapper name prefix the plugin uses for `root`.
pub fn prefix(root: &Path) -> Result<String> {
    let root = std::fs::canonicalize(root)?;
    let m = std::fs::metadata(&root)?;
    Ok(format!(
        "strata-{}:{}-{}",
        nix::sys::stat::major(m.dev()),
        nix::sys::stat::minor(m.dev()),
        m.ino()
    ))
}

/// The pool of the plugin on `root`.
pub fn pool_name(root: &Path) -> Result<String> {
    Ok(format!("{}-pool", prefix(root)?))
}

/// The block device `maj:min` as a /dev path.
fn dev_path(majmin: &str) -> Result<PathBuf> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{majmin}/uevent"))
        .with_context(|| format!("find the device {majmin}"))?;
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .with_context(|| format!("no DEVNAME for {majmin}"))?;
    Ok(Path::new("/dev").join(name))
}

/// The thin device ids in `pool`, from its metadata (thin_ls on a metadata snapshot).
pub fn pool_thin_ids(pool: &str) -> Result<Vec<u32>> {
    let table = sh("dmsetup", &["table", pool])?;
    let meta = table
        .split_whitespace()
        .nth(3)
        .with_context(|| format!("pool table {table:?}"))?;
    let meta = dev_path(meta)?;
    sh("dmsetup", &["message", pool, "0", "reserve_metadata_snap"])?;
    let listed = sh(
        "thin_ls",
        &["-m", "--no-headers", "-o", "DEV", &meta.to_string_lossy()],
    );
    sh("dmsetup", &["message", pool, "0", "release_metadata_snap"])?;
    let mut ids = Vec::new();
    for l in listed?.lines().filter(|l| !l.trim().is_empty()) {
        ids.push(
            l.trim()
                .parse()
                .with_context(|| format!("thin_ls line {l:?}"))?,
        );
    }
    Ok(ids)
}

/// The pool's transaction id.
pub fn pool_transaction_id(pool: &str) -> Result<u64> {
    let status = sh("dmsetup", &["status", pool])?;
    status
        .split_whitespace()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("pool status {status:?}"))
}

/// The active devices whose name starts with `prefix`.
pub fn active_devices(prefix: &str) -> Result<Vec<String>> {
    let out = sh("dmsetup", &["ls"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect())
}

/// The storage count for the suite: thin devices in the pool, less the base. Every active
/// thin device must be one of them.
pub fn thin_count(root: &Path) -> Result<usize> {
    let pool = pool_name(root)?;
    let ids = pool_thin_ids(&pool)?;
    let prefix = format!("{}-", prefix(root)?);
    for name in active_devices(&prefix)? {
        if let Ok(id) = name[prefix.len()..].parse::<u32>() {
            ensure!(
                ids.contains(&id),
                "device {name} is active but the pool has no thin id {id}"
            );
        }
    }
    ensure!(!ids.is_empty(), "the pool has no base device");
    Ok(ids.len() - 1)
}

/// Removes every device-mapper device the tests' plugins made (thin devices, then pools; the
/// loop devices go with the pools) and the nodes in /dev/mapper.
pub fn remove_all_devices() -> Result<()> {
    let names = active_devices("strata-")?;
    let (pools, thins): (Vec<_>, Vec<_>) = names.into_iter().partition(|n| n.ends_with("-pool"));
    let mut failed = Vec::new();
    for n in thins.iter().chain(pools.iter()) {
        if let Err(e) = sh("dmsetup", &["remove", "--force", n]) {
            failed.push(format!("{n}: {e:#}"));
        }
        let _ = std::fs::remove_file(Path::new("/dev/mapper").join(n));
    }
    ensure!(failed.is_empty(), "removing devices: {}", failed.join("; "));
    Ok(())
}

/// A case of the suite.
pub type Case = fn(PluginSpec) -> Pin<Box<dyn Future<Output = Result<()>>>>;

/// Where the scratch filesystem's image lives (a tmpfs: UML 6.1's tmpfs has no user xattrs,
/// so the sandboxes go on an ext4 made in it).
const SCRATCH_IMG: &str = "/run/strata-dm-img";

/// Mounts an ext4 for the sandboxes and points the harness at it.
pub fn scratch() -> Result<ScratchGuard> {
    std::fs::create_dir_all(SCRATCH)?;
    std::fs::create_dir_all(SCRATCH_IMG)?;
    sh(
        "mount",
        &["-t", "tmpfs", "-o", "size=1400M", "tmpfs", SCRATCH_IMG],
    )?;
    let guard = ScratchGuard;
    let img = format!("{SCRATCH_IMG}/scratch.img");
    std::fs::File::create(&img)?.set_len(1350 << 20)?;
    sh("mkfs.ext4", &["-q", "-F", "-E", "nodiscard", &img])?;
    sh("mount", &["-o", "loop", &img, SCRATCH])?;
    std::env::set_var("STRATA_TEST_TMPDIR", SCRATCH);
    Ok(guard)
}

/// Unmounts the scratch tmpfs (after removing every device).
pub struct ScratchGuard;

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if let Err(e) = remove_all_devices() {
            eprintln!("cleanup: {e:#}");
        }
        for dir in [SCRATCH, SCRATCH_IMG] {
            if let Err(e) = sh("umount", &["-l", dir]) {
                eprintln!("cleanup: {e:#}");
            }
        }
    }
}

/// Runs each case (or those named in `$STRATA_DM_CASES`) on `spec`, removing every device after
/// each; fails listing the cases that failed.
pub fn run_cases(spec: PluginSpec, cases: &[(&str, Case)]) -> Result<()> {
    let _scratch = scratch()?;
    let only: Option<Vec<String>> = std::env::var("STRATA_DM_CASES")
        .ok()
        .map(|s| s.split(',').map(String::from).collect());
    let mut failed = Vec::new();
    for (name, case) in cases {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let start = std::time::Instant::now();
        let spec = spec.clone();
        let r = std::panic::catch_unwind(|| run_case(spec, *case));
        if let Err(e) = remove_all_devices() {
            eprintln!("after {name}: {e:#}");
        }
        match r {
            Ok(()) => eprintln!("case {name}: ok ({:.1?})", start.elapsed()),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("case {name}: FAILED ({:.1?}): {msg}", start.elapsed());
                failed.push(name.to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} case(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// Like `uml::in_uml` with the device-mapper modules, but also passes `STRATA_DM_CASES` (and
/// `STRATA_DM_BENCH_*`) into the boot.
pub fn in_uml(name: &str, body: impl FnOnce() -> Result<()>) {
    use strata_tests::uml;
    if uml::inside() {
        if let Err(e) = body() {
            panic!("{e:?}");
        }
        return;
    }
    let result = (|| -> Result<()> {
        let exe = std::env::current_exe().context("find the test binary")?;
        let argv = vec![
            exe.to_string_lossy().into_owned(),
            "--exact".into(),
            name.into(),
            "--test-threads=1".into(),
            "--nocapture".into(),
            // The benchmark is an ignored test; what runs inside is what was asked outside.
            "--include-ignored".into(),
        ];
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                matches!(k.as_str(), "STRATA_BIN_DIR" | "RUST_BACKTRACE" | "RUST_LOG")
                    || k.starts_with("STRATA_DM_")
            })
            .collect();
        let out = uml::run(
            &argv,
            &env,
            &uml::DM_MODULES,
            std::time::Duration::from_secs(1500),
        )?;
        // The inner cases' lines (and a benchmark's results) are wanted either way.
        println!("{}", out.stdout);
        ensure!(
            out.status == 0 && out.stdout.contains("1 passed"),
            "{name} failed inside UML (exit {}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e:?}");
    }
}
