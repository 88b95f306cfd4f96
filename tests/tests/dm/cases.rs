//! The devicemapper plugin's own cases: option refusals, the three pool modes, a raised base
//! size, a pool filling past dm.min_free_space, SIGKILL inside a device transaction, busy
//! devices with deferred removal and deletion on and off.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use strata_tests::client::expect_code;
use strata_tests::harness::run_expecting_refusal;
use strata_tests::{Harness, MountGuard, PluginSpec, Sandbox};
use tonic::Code;

use crate::support_dm::{active_devices, pool_thin_ids, pool_transaction_id, prefix, sh};

/// `spec` with `opts` replacing the options of the same names.
pub fn with_opts(spec: &PluginSpec, opts: &[&str]) -> PluginSpec {
    let mut s = spec.clone();
    for o in opts {
        let key = o.split('=').next().unwrap_or_default();
        s.storage_opts
            .retain(|x| x.split('=').next().unwrap_or_default() != key);
        s.storage_opts.push((*o).to_string());
    }
    s
}

async fn status_row(h: &Harness, key: &str) -> Result<String> {
    let rows = h.driver_status().await?.context("no Driver service")?.rows;
    rows.iter()
        .find(|r| r.key == key)
        .map(|r| r.value.clone())
        .with_context(|| format!("no {key:?} row in {rows:?}"))
}

async fn expect_refusal(spec: &PluginSpec, sandbox: &Sandbox, key: &str) -> Result<()> {
    let (status, log) = run_expecting_refusal(spec, sandbox, Duration::from_secs(60)).await?;
    ensure!(
        !status.success(),
        "options {:?} must be refused",
        spec.storage_opts
    );
    ensure!(
        log.contains(key),
        "refusing {:?} must name {key}; the log:\n{log}",
        spec.storage_opts
    );
    Ok(())
}

/// Bad values, and changes on restart that cannot be made, are refused naming the option.
pub async fn refusals(spec: PluginSpec) -> Result<()> {
    for (opt, key) in [
        ("dm.fs=btrfs", "dm.fs"),
        ("dm.basesize=1M", "dm.basesize"),
        ("dm.blocksize=100K", "dm.blocksize"),
        ("dm.use_deferred_deletion=true", "dm.use_deferred_deletion"),
        ("dm.min_free_space=150%", "dm.min_free_space"),
        ("dm.loopmetadatasize=1M", "dm.loopmetadatasize"),
        ("dm.thinpooldev=strata-no-such-pool", "dm.thinpooldev"),
        ("dm.xfs_nospace_max_retries=x", "dm.xfs_nospace_max_retries"),
    ] {
        let sandbox = Sandbox::new()?;
        expect_refusal(&with_opts(&spec, &[opt]), &sandbox, key).await?;
    }
    // Changes a made pool cannot take.
    let mut h = Harness::start(&spec).await?;
    h.snap.prepare("a", "").await?;
    h.plugin.stop()?;
    for (opt, key) in [
        ("dm.basesize=32M", "dm.basesize"),
        ("dm.fs=xfs", "dm.fs"),
        ("dm.blocksize=128K", "dm.blocksize"),
        ("dm.loopdatasize=1G", "dm.loopdatasize"),
    ] {
        expect_refusal(&with_opts(&spec, &[opt]), &h.sandbox, key).await?;
    }
    h.start_again(&[]).await?;
    h.snap.mounts("a").await.context("the pool still works")?;
    Ok(())
}

/// A zeroed sparse file of `size` on a loop device; detached on drop.
struct Loop {
    dev: String,
}

impl Loop {
    fn new(file: &Path, size: u64) -> Result<Loop> {
        fs::File::create(file)?.set_len(size)?;
        let dev = sh("losetup", &["-f", "--show", &file.to_string_lossy()])?
            .trim()
            .to_string();
        Ok(Loop { dev })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Err(e) = sh("losetup", &["-d", &self.dev]) {
            eprintln!("detach {}: {e:#}", self.dev);
        }
    }
}

/// A prepared, written, committed and mounted child works on this plugin.
async fn exercise(h: &Harness) -> Result<()> {
    let m = h.snap.prepare("base-a", "").await?;
    let g = h.mount(&m)?;
    fs::write(g.path().join("f"), b"base")?;
    g.unmount()?;
    h.snap.commit("base", "base-a").await?;
    let m = h.snap.prepare("child", "base").await?;
    let g = h.mount(&m)?;
    ensure!(fs::read(g.path().join("f"))? == b"base", "child sees base");
    g.unmount()?;
    h.snap.remove("child").await?;
    Ok(())
}

/// dm.datadev + dm.metadatadev (zeroed devices; one with a filesystem refused) and
/// dm.thinpooldev (an empty pool taken over; a used one refused).
pub async fn pool_modes(spec: PluginSpec) -> Result<()> {
    let no_loop = |s: &PluginSpec| {
        let mut s = s.clone();
        s.storage_opts.retain(|o| !o.starts_with("dm.loop"));
        s
    };
    let scratch = Sandbox::new()?;
    let data = Loop::new(&scratch.work().join("data"), 1 << 30)?;
    let meta = Loop::new(&scratch.work().join("meta"), 16 << 20)?;
    let dev_spec = with_opts(
        &no_loop(&spec),
        &[
            &format!("dm.datadev={}", data.dev),
            &format!("dm.metadatadev={}", meta.dev),
        ],
    );
    {
        let h = Harness::start(&dev_spec).await?;
        exercise(&h).await.context("on dm.datadev/dm.metadatadev")?;
        ensure!(status_row(&h, "Data file").await? == data.dev);
    }
    // A device holding a filesystem is refused.
    let fsdev = Loop::new(&scratch.work().join("fs"), 64 << 20)?;
    sh("mkfs.ext4", &["-q", "-F", &fsdev.dev])?;
    let data2 = Loop::new(&scratch.work().join("data2"), 256 << 20)?;
    let bad = with_opts(
        &no_loop(&spec),
        &[
            &format!("dm.datadev={}", data2.dev),
            &format!("dm.metadatadev={}", fsdev.dev),
        ],
    );
    expect_refusal(&bad, &Sandbox::new()?, "dm.metadatadev").await?;

    // An existing pool, made with dmsetup.
    let pdata = Loop::new(&scratch.work().join("pdata"), 1 << 30)?;
    let pmeta = Loop::new(&scratch.work().join("pmeta"), 16 << 20)?;
    let pool = format!("strata-test-{}", std::process::id());
    let table = format!(
        "0 {} thin-pool {} {} 128 32 1 error_if_no_space",
        (1u64 << 30) / 512,
        pmeta.dev,
        pdata.dev
    );
    sh("dmsetup", &["create", &pool, "--table", &table])?;
    let r = async {
        let pool_spec = with_opts(&no_loop(&spec), &[&format!("dm.thinpooldev={pool}")]);
        {
            let h = Harness::start(&pool_spec).await?;
            exercise(&h).await.context("on dm.thinpooldev")?;
            ensure!(status_row(&h, "Pool Name").await? == pool);
        }
        // The pool is no longer empty: another root may not take it.
        expect_refusal(&pool_spec, &Sandbox::new()?, "dm.thinpooldev").await
    }
    .await;
    crate::support_dm::remove_all_devices()?;
    r
}

/// Raising dm.basesize on restart makes new snapshots that size; old ones keep theirs.
pub async fn basesize_grows(spec: PluginSpec) -> Result<()> {
    let small = with_opts(&spec, &["dm.fs=ext4", "dm.basesize=64M"]);
    let mut h = Harness::start(&small).await?;
    h.snap.prepare("old", "").await?;
    h.plugin.stop()?;
    h.spec = with_opts(&small, &["dm.basesize=128M"]);
    h.start_again(&[]).await?;
    ensure!(status_row(&h, "Base Device Size").await? == "134.2MB");
    let size_of = |g: &MountGuard| -> Result<u64> {
        let s = nix::sys::statvfs::statvfs(g.path())?;
        Ok(s.blocks() * s.fragment_size())
    };
    let g = h.mount(&h.snap.prepare("new", "").await?)?;
    let new = size_of(&g)?;
    g.unmount()?;
    let g = h.mount(&h.snap.mounts("old").await?)?;
    let old = size_of(&g)?;
    g.unmount()?;
    ensure!(
        new > 100 << 20 && old < 70 << 20,
        "new snapshot {new} bytes, old {old}"
    );
    Ok(())
}

/// Writing past dm.min_free_space: the next Prepare fails with the numbers, nothing hangs,
/// and after a Remove it works again.
pub async fn fill_pool(spec: PluginSpec) -> Result<()> {
    let spec = with_opts(
        &spec,
        &[
            "dm.fs=ext4",
            "dm.loopdatasize=256M",
            "dm.basesize=512M",
            "dm.min_free_space=25%",
        ],
    );
    let h = Harness::start(&spec).await?;
    let m = h.snap.prepare("container", "").await?;
    let g = h.mount(&m)?;
    // 256M * 0.75 = 192M: write 200M.
    let chunk = vec![0x5au8; 1 << 20];
    {
        use std::io::Write;
        let mut f = fs::File::create(g.path().join("big"))?;
        for _ in 0..200 {
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
    }
    g.unmount()?;
    let err = expect_code(
        h.snap.try_prepare("next", "", Default::default()).await,
        Code::FailedPrecondition,
        "Prepare on a pool past dm.min_free_space",
    )?;
    let msg = err.message();
    ensure!(
        msg.contains("dm.min_free_space=25%") && msg.contains("bytes free"),
        "the refusal must give the numbers: {msg}"
    );
    h.snap.remove("container").await?;
    h.snap
        .prepare("next", "")
        .await
        .context("after removing the big snapshot Prepare works again")?;
    Ok(())
}

/// SIGKILL inside each device transaction, then a restart: the pool and the store agree
/// (checked against thin_ls and the pool's transaction id).
pub async fn sigkill_in_transactions(spec: PluginSpec) -> Result<()> {
    for (fp, op) in [
        ("devmapper:create:after-record", "prepare"),
        ("devmapper:create:after-snap", "prepare"),
        ("devmapper:delete:after-record", "remove"),
        ("devmapper:delete:after-delete", "remove"),
        ("commit:before-metadata", "commit"),
    ] {
        let mut h = Harness::start(&spec).await?;
        h.commit_layer("base", "", &[]).await?;
        h.snap.prepare("a", "base").await?;
        let pool = crate::support_dm::pool_name(h.sandbox.root())?;
        let before = pool_thin_ids(&pool)?;
        h.restart(&[("STRATA_FAILPOINT", fp)]).await?;
        let r = match op {
            "prepare" => h
                .snap
                .try_prepare("victim", "base", Default::default())
                .await
                .map(drop),
            "commit" => h.snap.try_commit("a-c", "a", Default::default()).await,
            _ => h.snap.try_remove("a").await,
        };
        ensure!(r.is_err(), "{fp}: the call must fail");
        h.plugin.wait_exit(Duration::from_secs(10)).await?;
        h.start_again(&[])
            .await
            .with_context(|| format!("restart after {fp}"))?;
        h.check_consistent()
            .await
            .with_context(|| format!("after {fp}"))?;
        let after = pool_thin_ids(&pool)?;
        let live = h.snap.list(&[]).await?.len();
        ensure!(
            after.len() == live + 1,
            "{fp}: the pool has thin ids {after:?} (before {before:?}) for {live} snapshots and the base"
        );
        let tid = pool_transaction_id(&pool)?;
        ensure!(tid > 0, "{fp}: the pool's transaction id moved on");
        let p = format!("{}-", prefix(h.sandbox.root())?);
        for d in active_devices(&p)? {
            if let Ok(id) = d[p.len()..].parse::<u32>() {
                ensure!(after.contains(&id), "{fp}: stale device {d}");
            }
        }
        h.snap
            .prepare("again", "base")
            .await
            .with_context(|| format!("{fp}: Prepare after recovery"))?;
        crate::support_dm::remove_all_devices()?;
    }
    Ok(())
}

/// A device held open (a file open on a lazily unmounted snapshot): Remove is refused without
/// deferred removal/deletion; with them it succeeds, the deletion waits (and survives a
/// restart) and finishes when the file is closed.
pub async fn busy_device(spec: PluginSpec) -> Result<()> {
    for deferred in [false, true] {
        let opts: &[&str] = if deferred {
            &[
                "dm.use_deferred_removal=true",
                "dm.use_deferred_deletion=true",
            ]
        } else {
            &[]
        };
        let mut h = Harness::start(&with_opts(&spec, opts)).await?;
        let pool = crate::support_dm::pool_name(h.sandbox.root())?;
        let m = h.snap.prepare("busy", "").await?;
        let target = h.sandbox.new_dir("busy")?;
        let g = MountGuard::mount(&m, &target)?;
        let held = fs::File::create(g.path().join("held"))?;
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH)?;
        drop(g);
        if !deferred {
            let e = expect_code(
                h.snap.try_remove("busy").await,
                Code::FailedPrecondition,
                "Remove of a busy device without deferred deletion",
            )?;
            ensure!(e.message().contains("busy"), "{}", e.message());
            h.snap.stat("busy").await.context("the snapshot stays")?;
            drop(held);
            h.snap.remove("busy").await.context("Remove once closed")?;
        } else {
            h.snap.remove("busy").await?;
            ensure!(status_row(&h, "Deferred Deleted Device Count").await? == "1");
            ensure!(
                pool_thin_ids(&pool)?.len() == 2,
                "the device waits in the pool"
            );
            h.restart(&[]).await?;
            ensure!(
                status_row(&h, "Deferred Deleted Device Count").await? == "1",
                "the deferred deletion survives a restart"
            );
            drop(held);
            let mut waited = 0;
            while status_row(&h, "Deferred Deleted Device Count").await? != "0" {
                if waited > 100 {
                    bail!("the deferred deletion did not finish within 10 s of the close");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += 1;
            }
        }
        ensure!(pool_thin_ids(&pool)?.len() == 1, "only the base is left");
        crate::support_dm::remove_all_devices()?;
    }
    Ok(())
}

/// dm.mountopt and dm.mkfsarg reach the mounts and the filesystem; dm.blkdiscard gives a
/// removed device's blocks back to the loop file; dm.xfs_nospace_max_retries is set on a
/// mounted xfs.
pub async fn options_applied(spec: PluginSpec) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let s = with_opts(
        &spec,
        &[
            "dm.fs=ext4",
            "dm.mountopt=noatime",
            "dm.mkfsarg=-L stratabase",
            "dm.blkdiscard=true",
            "dm.basesize=128M",
        ],
    );
    let h = Harness::start(&s).await?;
    let m = h.snap.prepare("a", "").await?;
    ensure!(
        m[0].r#type == "ext4" && m[0].options.iter().any(|o| o == "noatime"),
        "mounts {m:?}"
    );
    let label = sh("e2label", &[&m[0].source])?;
    ensure!(label.trim() == "stratabase", "label {label:?}");
    let g = h.mount(&m)?;
    fs::write(g.path().join("big"), vec![7u8; 64 << 20])?;
    g.unmount()?;
    let data = h.sandbox.root().join("devicemapper/data");
    let before = fs::metadata(&data)?.blocks() * 512;
    h.snap.remove("a").await?;
    let after = fs::metadata(&data)?.blocks() * 512;
    ensure!(
        before - after.min(before) >= 60 << 20,
        "dm.blkdiscard must return the 64 MiB to the data file: {before} bytes allocated before the Remove, {after} after"
    );
    drop(h);
    crate::support_dm::remove_all_devices()?;

    let x = with_opts(
        &spec,
        &[
            "dm.fs=xfs",
            "dm.basesize=320M",
            "dm.xfs_nospace_max_retries=3",
        ],
    );
    let h = Harness::start(&x).await?;
    let m = h.snap.prepare("x", "").await?;
    ensure!(
        m[0].options.iter().any(|o| o == "nouuid"),
        "xfs mounts carry nouuid: {m:?}"
    );
    let g = h.mount(&m)?;
    let minor = nix::sys::stat::minor(fs::metadata(&m[0].source)?.rdev());
    let knob = format!("/sys/fs/xfs/dm-{minor}/error/metadata/ENOSPC/max_retries");
    let mut waited = 0;
    loop {
        let v = fs::read_to_string(&knob).with_context(|| format!("read {knob}"))?;
        if v.trim() == "3" {
            break;
        }
        if waited > 50 {
            bail!("{knob} is {v:?} 5 s after the mount, want 3");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    g.unmount()?;
    Ok(())
}

/// Writing until the pool itself is full: the writes fail (the pool errors instead of
/// queueing, so nothing hangs), the plugin refuses new devices, and after a Remove the pool
/// works again.
pub async fn pool_full(spec: PluginSpec) -> Result<()> {
    let spec = with_opts(
        &spec,
        &[
            "dm.fs=ext4",
            "dm.loopdatasize=128M",
            "dm.basesize=512M",
            "dm.min_free_space=5%",
        ],
    );
    let h = Harness::start(&spec).await?;
    let m = h.snap.prepare("container", "").await?;
    let g = h.mount(&m)?;
    let path = g.path().join("big");
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        use std::io::Write;
        let chunk = vec![0xa5u8; 1 << 20];
        let mut f = fs::File::create(&path)?;
        let mut written = 0;
        loop {
            f.write_all(&chunk)?;
            written += 1;
            if written % 16 == 0 {
                f.sync_data()?;
            }
            if written > 400 {
                return Ok(written);
            }
        }
    });
    let r = tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .context("writing into a full pool must fail, not hang")??;
    ensure!(r.is_err(), "400 MiB fit into a 128 MiB pool: {r:?}");
    g.unmount().context("unmount after the pool filled")?;
    let e = expect_code(
        h.snap.try_prepare("next", "", Default::default()).await,
        Code::FailedPrecondition,
        "Prepare on a full pool",
    )?;
    ensure!(e.message().contains("bytes free"), "{}", e.message());
    h.snap.remove("container").await?;
    let m = h
        .snap
        .prepare("next", "")
        .await
        .context("after a Remove the pool takes new devices again")?;
    let g = h.mount(&m)?;
    fs::write(g.path().join("small"), b"ok")?;
    g.unmount()?;
    Ok(())
}

/// A reboot (every device gone, the pool's files and the stores kept): the plugin builds the
/// pool again from its files, and every snapshot mounts with its data.
pub async fn survives_reboot(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    h.commit_layer("base", "", &[]).await?;
    let m = h.snap.prepare("active", "base").await?;
    let g = h.mount(&m)?;
    fs::write(g.path().join("kept"), b"across the reboot")?;
    g.unmount()?;
    h.snap.view("view", "base").await?;
    h.plugin.stop()?;
    crate::support_dm::remove_all_devices()?;
    h.start_again(&[]).await?;
    let g = h.mount(&h.snap.mounts("active").await?)?;
    ensure!(fs::read(g.path().join("kept"))? == b"across the reboot");
    g.unmount()?;
    let g = h.mount(&h.snap.mounts("view").await?)?;
    g.unmount()?;
    h.check_consistent().await?;
    h.snap.prepare("after", "base").await?;
    Ok(())
}

/// SIGKILL again and again during the first start (pool creation, base mkfs), then a start:
/// the plugin comes up, works, and no device or thin id is left over.
pub async fn first_start_killed(spec: PluginSpec) -> Result<()> {
    let sandbox = Sandbox::new()?;
    for ms in [0u64, 30, 80, 150, 300, 600] {
        strata_tests::harness::start_and_kill(&spec, &sandbox, Duration::from_millis(ms)).await?;
    }
    let plugin = strata_tests::PluginProcess::start(&spec, &sandbox)
        .await
        .context("start after being killed during the first start")?;
    let snap = strata_tests::Snap::new(plugin.snapshots());
    let m = snap.prepare("a", "").await?;
    let target = sandbox.new_dir("m")?;
    let g = MountGuard::mount(&m, &target)?;
    let entries = fs::read_dir(g.path())?.count();
    ensure!(
        entries == 0,
        "a new snapshot is empty, found {entries} entries"
    );
    g.unmount()?;
    let pool = crate::support_dm::pool_name(sandbox.root())?;
    let ids = pool_thin_ids(&pool)?;
    ensure!(
        ids.len() == 2,
        "the base and one snapshot, got thin ids {ids:?}"
    );
    drop(plugin);
    crate::support_dm::remove_all_devices()?;
    Ok(())
}
