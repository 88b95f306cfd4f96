//! The devicemapper storage driver: one thin device per snapshot on a thin pool, behind
//! containerd's snapshots API. See docs/devmapper.md.
//!
//! On disk, under the plugin's root:
//!
//! ```text
//! metadata.db/                  snapshot metadata (strata-snapshotter's store)
//! devicemapper/data             the loop pool's sparse data file (dm.loopdatasize)
//! devicemapper/metadata         the loop pool's sparse metadata file (dm.loopmetadatasize)
//! devicemapper/metadata.db/     the driver's device store (see `store`)
//! devicemapper/mnt/             where the driver mounts the base device to prepare or grow it
//! ```
//!
//! Device-mapper names are `strata-<major>:<minor>-<inode>` of the root (so two roots never
//! share names) plus `-pool` for the pool and `-<thin id>` for a thin device; the driver makes
//! `/dev/mapper/<name>` nodes itself. The main types: [`Devmapper`] (the [`Snapshotter`]),
//! [`options::Config`] (the `dm.*` options), `device::Devices` (thin devices as transactions).

mod device;
mod dm;
mod error;
mod fs;
pub mod options;
mod pool;
mod recovery;
mod status;
mod store;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use strata_proto::storage::{ApplyMode, CapabilitiesResponse};
use strata_proto::types::Mount;
use strata_snapshotter::options::{OptionError, StorageOpts};
use strata_snapshotter::{Error, Kind, Result, Snap, Snapshotter, Usage};

use device::Devices;
pub use error::DevError;
pub use options::OPTIONS;
use options::{Config, Fs};
use store::{DeviceRec, Store};

/// How often the background worker looks for deferred deletions and new xfs mounts.
const WORKER_PERIOD: Duration = Duration::from_millis(500);

/// Why the driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An option is wrong.
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The pool or the store cannot be used.
    #[error(transparent)]
    Device(#[from] DevError),
    /// The root cannot be used.
    #[error(transparent)]
    Storage(#[from] Error),
}

impl From<OpenError> for strata_snapshotter::plugin::StartError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Option(o) => o.into(),
            OpenError::Device(DevError::Option(o)) => o.into(),
            OpenError::Device(d) => Error::from(d).into(),
            OpenError::Storage(s) => s.into(),
        }
    }
}

/// The devicemapper driver.
#[derive(Debug)]
pub struct Devmapper {
    devices: Arc<Devices>,
    mnt: PathBuf,
    version: String,
}

fn not_found(id: u64) -> Error {
    Error::NotFound(format!("snapshot {id} has no thin device"))
}

impl Devmapper {
    /// Opens the driver in `root`, taking its options from `opts`: sets up the pool, finishes
    /// an interrupted device change, and makes (or grows) the base device.
    pub fn open(root: &Path, opts: &mut StorageOpts) -> std::result::Result<Self, OpenError> {
        let mut cfg = Config::parse(opts, options::xfs_available())?;
        let dir = root.join("devicemapper");
        std::fs::create_dir_all(&dir).map_err(|e| DevError::io("create directory", &dir, e))?;
        let dm = dm::Dm::open()?;
        let version = dm.version()?;
        let store = Store::open(&dir.join("metadata.db"))?;
        let fresh = store.is_empty()?;
        if let Some(recorded) = store.fs()? {
            if recorded != cfg.fs.name() {
                if cfg.fs_given {
                    return Err(OptionError::Invalid {
                        key: "dm.fs".into(),
                        value: cfg.fs.name().into(),
                        reason: format!(
                            "the base device already has {recorded}; the filesystem cannot change"
                        ),
                    }
                    .into());
                }
                cfg.fs = if recorded == "xfs" { Fs::Xfs } else { Fs::Ext4 };
            }
        }
        let meta = std::fs::metadata(root).map_err(|e| DevError::io("stat", root, e))?;
        let prefix = format!(
            "strata-{}:{}-{}",
            nix::sys::stat::major(meta.dev()),
            nix::sys::stat::minor(meta.dev()),
            meta.ino()
        );
        let pool = pool::Pool::setup(&cfg, &dm, &format!("{prefix}-pool"), &dir, fresh)?;
        let devices = Arc::new(Devices::new(cfg, dm, store, pool, prefix));
        {
            let _g = devices.locked();
            devices.recover()?;
            devices.remove_stale()?;
        }
        let d = Devmapper {
            devices,
            mnt: dir.join("mnt"),
            version,
        };
        d.base()?;
        start_worker(Arc::downgrade(&d.devices))?;
        tracing::info!(
            pool = %d.devices.pool.name,
            fs = d.devices.cfg.fs.name(),
            base_size = d.devices.cfg.base_size,
            "devicemapper ready"
        );
        Ok(d)
    }

    /// Makes the base device (or finishes making it), or grows it to a raised `dm.basesize`.
    fn base(&self) -> std::result::Result<(), OpenError> {
        let d = &self.devices;
        let _g = d.locked();
        let cfg = &d.cfg;
        let base = match (d.store.base()?, d.store.fs()?) {
            (Some(base), Some(_)) => base,
            (partial, _) => {
                if let Some(rec) = partial {
                    tracing::warn!(
                        "the base device was not finished before a crash; making it again"
                    );
                    d.delete(None, rec)?;
                }
                let rec = d.create(None, None, cfg.base_size)?;
                let node = d.activate(&rec, false)?;
                fs::mkfs(cfg.fs, &node, &cfg.mkfs_args)?;
                fs::prepare_base(cfg.fs, &node, &self.mnt)?;
                d.deactivate(rec.thin, false)?;
                d.store.set_fs(cfg.fs.name())?;
                return Ok(());
            }
        };
        if cfg.base_size < base.size {
            return Err(OptionError::Invalid {
                key: "dm.basesize".into(),
                value: cfg.base_size.to_string(),
                reason: format!(
                    "the base device is already {} bytes; it can grow but not shrink",
                    base.size
                ),
            }
            .into());
        }
        if cfg.base_size > base.size {
            tracing::info!(
                from = base.size,
                to = cfg.base_size,
                "growing the base device"
            );
            let grown = DeviceRec {
                size: cfg.base_size,
                ..base
            };
            d.deactivate(base.thin, false)?;
            let node = d.activate(&grown, false)?;
            let r = fs::grow(cfg.fs, &node, &self.mnt);
            d.deactivate(base.thin, false)?;
            r?;
            d.store.put_base(&grown)?;
        }
        Ok(())
    }

    fn device(&self, id: u64) -> Result<DeviceRec> {
        self.devices
            .store
            .device(id)
            .map_err(Error::from)?
            .ok_or_else(|| not_found(id))
    }
}

/// The background worker: deletes deferred devices once they are closed, and applies
/// `dm.xfs_nospace_max_retries` to the xfs filesystems mounted from the driver's devices.
fn start_worker(devices: Weak<Devices>) -> std::result::Result<(), OpenError> {
    std::thread::Builder::new()
        .name("devmapper-worker".into())
        .spawn(move || loop {
            std::thread::sleep(WORKER_PERIOD);
            let Some(d) = devices.upgrade() else { return };
            match d.store.deferred() {
                Ok(list) if !list.is_empty() => {
                    let _g = d.locked();
                    match d.reap_deferred() {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "deferred deletion finished"),
                        Err(e) => tracing::warn!(%e, "deferred deletion failed; retrying later"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%e, "reading the deferred deletions failed"),
            }
            if let Some(n) = d.cfg.xfs_nospace_max_retries {
                status::apply_xfs_retries(&d, n);
            }
        })
        .map_err(|e| DevError::io("start the worker thread for", "deferred deletion", e))?;
    Ok(())
}

impl Snapshotter for Devmapper {
    fn name(&self) -> &'static str {
        "devicemapper"
    }

    fn create(&self, snap: &Snap<'_>) -> Result<()> {
        let d = &self.devices;
        let _g = d.locked();
        let origin = match snap.parents.first() {
            Some(p) => d.store.device(*p)?.ok_or_else(|| not_found(*p))?,
            None => d
                .store
                .base()?
                .ok_or_else(|| Error::FailedPrecondition("the base device is missing".into()))?,
        };
        let rec = d.create(Some(snap.id), Some(origin.thin), origin.size)?;
        if let Err(e) = d.activate(&rec, snap.kind == Kind::View) {
            if let Err(re) = d.delete(Some(snap.id), rec) {
                tracing::warn!(%re, id = snap.id, "deleting a device that failed to activate failed; cleanup retries");
            }
            return Err(e.into());
        }
        Ok(())
    }

    fn mounts(&self, snap: &Snap<'_>) -> Result<Vec<Mount>> {
        if snap.kind == Kind::Committed {
            return Err(Error::FailedPrecondition(
                "committed snapshots have no mounts".into(),
            ));
        }
        let rec = self.device(snap.id)?;
        let d = &self.devices;
        let node = match d.cached_node(rec.thin) {
            Some(node) => node,
            None => {
                let _g = d.locked();
                d.activate(&rec, snap.kind == Kind::View)?
            }
        };
        let mut options = Vec::with_capacity(d.cfg.mount_opts.len() + 2);
        options.push(if snap.kind == Kind::View { "ro" } else { "rw" }.to_string());
        if d.cfg.fs == Fs::Xfs {
            options.push("nouuid".into());
        }
        options.extend(d.cfg.mount_opts.iter().cloned());
        Ok(vec![Mount {
            r#type: d.cfg.fs.name().into(),
            source: node.to_string_lossy().into_owned(),
            target: String::new(),
            options,
        }])
    }

    /// Records the device's usage and deactivates it (deferred when busy and allowed).
    fn commit(&self, snap: &Snap<'_>) -> Result<()> {
        let d = &self.devices;
        let _g = d.locked();
        let mut rec = self.device(snap.id)?;
        let n = d.name(rec.thin);
        if d.dm.info(&n)?.is_some() {
            rec.mapped = d.mapped(&rec)?;
            rec.inodes = fs::used_inodes(d.cfg.fs, &dm::node_path(&n)).unwrap_or(0);
            d.store.put_device(snap.id, &rec)?;
        }
        d.deactivate(rec.thin, d.cfg.deferred_removal)?;
        Ok(())
    }

    fn check_remove(&self, snap: &Snap<'_>) -> Result<()> {
        let d = &self.devices;
        let Some(rec) = d.store.device(snap.id)? else {
            return Ok(());
        };
        let n = d.name(rec.thin);
        if let Some(info) = d.dm.info(&n)? {
            if info.open_count() > 0 && !(d.cfg.deferred_removal && d.cfg.deferred_deletion) {
                return Err(DevError::Busy {
                    name: n,
                    open: info.open_count(),
                }
                .into());
            }
        }
        Ok(())
    }

    fn remove(&self, id: u64) -> Result<()> {
        let d = &self.devices;
        let _g = d.locked();
        if let Some(rec) = d.store.device(id)? {
            d.delete(Some(id), rec)?;
        }
        Ok(())
    }

    fn usage(&self, snap: &Snap<'_>) -> Result<Usage> {
        let d = &self.devices;
        let rec = self.device(snap.id)?;
        let n = d.name(rec.thin);
        let (size, inodes) = if d.dm.info(&n)?.is_some() {
            (
                d.mapped(&rec)?,
                fs::used_inodes(d.cfg.fs, &dm::node_path(&n)).unwrap_or(rec.inodes),
            )
        } else {
            (rec.mapped, rec.inodes)
        };
        Ok(Usage {
            size: i64::try_from(size).unwrap_or(i64::MAX),
            inodes: i64::try_from(inodes).unwrap_or(i64::MAX),
        })
    }

    fn cleanup(&self, live: &BTreeSet<u64>) -> Result<()> {
        let d = &self.devices;
        let _g = d.locked();
        let mut removed = 0;
        for (id, rec) in d.store.devices()? {
            if !live.contains(&id) {
                d.delete(Some(id), rec)?;
                removed += 1;
            }
        }
        removed += d.reap_deferred()?;
        d.remove_stale()?;
        if removed > 0 {
            tracing::info!(removed, "cleanup removed devices no snapshot owns");
        }
        Ok(())
    }

    fn status(&self, snapshots: usize) -> Result<Vec<(String, String)>> {
        Ok(status::rows(&self.devices, &self.version, snapshots)?)
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            driver: "devicemapper".into(),
            native_diff: false,
            apply_mode: ApplyMode::Mounted as i32,
            quota: true,
            max_layer_depth: 0,
            extra: Vec::new(),
        }
    }
}
