//! Thin devices as transactions: every change of the pool's metadata (a new thin device, a
//! deleted one) is recorded in the store and flushed before the pool is touched, and the pool's
//! transaction id is moved on after it. [`Devices::recover`] finishes what a crash interrupted:
//! a create is rolled back (the device is deleted), a delete is rolled forward.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use strata_snapshotter::failpoint;

use crate::dm::{self, Deactivated, Dm, META_BLOCK, SECTOR};
use crate::error::{DevError, DevResult};
use crate::options::Config;
use crate::pool::Pool;
use crate::recovery::{self, Plan};
use crate::store::{DeviceRec, Finish, Op, Store, Txn};

/// The kernel's largest thin device id (24 bits).
const MAX_THIN_ID: u32 = (1 << 24) - 1;

/// The thin devices of one pool.
#[derive(Debug)]
pub struct Devices {
    /// The configuration.
    pub cfg: Config,
    /// The control device.
    pub dm: Dm,
    /// The driver's store.
    pub store: Store,
    /// The pool.
    pub pool: Pool,
    /// Device names are `<prefix>-<thin id>`.
    pub prefix: String,
    lock: Mutex<()>,
    /// The nodes of the devices this process activated (Mounts answers from here without a
    /// syscall); an entry goes when the driver deactivates the device.
    active: Mutex<HashMap<u32, PathBuf>>,
}

impl Devices {
    /// Wraps the parts.
    pub fn new(cfg: Config, dm: Dm, store: Store, pool: Pool, prefix: String) -> Self {
        Devices {
            cfg,
            dm,
            store,
            pool,
            prefix,
            lock: Mutex::new(()),
            active: Mutex::new(HashMap::new()),
        }
    }

    /// Serializes changes of the pool.
    pub fn locked(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device-mapper name of thin device `thin`.
    pub fn name(&self, thin: u32) -> String {
        format!("{}-{thin}", self.prefix)
    }

    /// Refuses when the pool's free data or metadata is below `dm.min_free_space`.
    pub fn check_space(&self) -> DevResult<()> {
        let s = self.dm.pool_status(&self.pool.name)?;
        if s.read_only || s.needs_check {
            return Err(DevError::Pool {
                pool: self.pool.name.clone(),
                reason: "the pool is read-only (its metadata failed or needs thin_check):                          stop the plugin, deactivate the pool and repair it with thin_check                          and thin_repair"
                    .into(),
            });
        }
        let min = self.cfg.min_free_space;
        for (what, used, total, unit) in [
            ("data", s.data_used, s.data_total, self.pool.block_size),
            ("metadata", s.meta_used, s.meta_total, META_BLOCK),
        ] {
            let free = total.saturating_sub(used);
            let pct = if total == 0 {
                0.0
            } else {
                free as f64 * 100.0 / total as f64
            };
            if s.out_of_space || pct < f64::from(min) {
                return Err(DevError::NoSpace {
                    pool: self.pool.name.clone(),
                    what,
                    free: free * unit,
                    total: total * unit,
                    pct,
                    min,
                });
            }
        }
        Ok(())
    }

    fn set_tid(&self, from: u64) -> DevResult<u64> {
        self.dm.message(
            &self.pool.name,
            &format!("set_transaction_id {from} {}", from + 1),
        )?;
        Ok(from + 1)
    }

    /// Makes a thin device of `size` bytes for snapshot `snap` (`None`: the base), a snapshot of
    /// thin device `origin` or an empty one. The caller holds the lock.
    pub fn create(
        &self,
        snap: Option<u64>,
        origin: Option<u32>,
        size: u64,
    ) -> DevResult<DeviceRec> {
        self.check_space()?;
        let thin = self.store.next_thin()?;
        if thin > MAX_THIN_ID {
            return Err(DevError::Pool {
                pool: self.pool.name.clone(),
                reason: format!("all {MAX_THIN_ID} thin ids have been used; move to a new pool"),
            });
        }
        let tid = self.store.tid()?;
        self.store.begin(&Txn {
            op: Op::Create { snap, thin, origin },
            tid,
        })?;
        failpoint::hit("devmapper:create:after-record");
        let made = (|| {
            match origin {
                None => self
                    .dm
                    .message(&self.pool.name, &format!("create_thin {thin}"))?,
                Some(o) => {
                    // An active origin must not change while the kernel copies its mappings.
                    let origin_name = self.name(o);
                    let active = self.dm.info(&origin_name)?.is_some();
                    if active {
                        self.dm.suspend(&origin_name, true)?;
                    }
                    let r = self
                        .dm
                        .message(&self.pool.name, &format!("create_snap {thin} {o}"));
                    if active {
                        self.dm.suspend(&origin_name, false)?;
                    }
                    r?
                }
            }
            failpoint::hit("devmapper:create:after-snap");
            self.set_tid(tid)
        })();
        match made {
            Ok(new_tid) => {
                let rec = DeviceRec {
                    thin,
                    size,
                    mapped: 0,
                    inodes: 0,
                };
                self.store.finish(new_tid, Finish::Created { snap, rec })?;
                Ok(rec)
            }
            Err(e) => {
                tracing::warn!(%e, thin, "creating a thin device failed; rolling back");
                if let Err(re) = self.recover() {
                    tracing::error!(%re, "rolling back a failed create failed; the next start retries");
                }
                Err(e)
            }
        }
    }

    fn active(&self) -> MutexGuard<'_, HashMap<u32, PathBuf>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node of a device this process activated, if it still is.
    pub fn cached_node(&self, thin: u32) -> Option<PathBuf> {
        self.active().get(&thin).cloned()
    }

    /// Deactivates thin device `thin` (see [`Dm::deactivate`]).
    pub fn deactivate(&self, thin: u32, deferred: bool) -> DevResult<Deactivated> {
        self.active().remove(&thin);
        self.dm.deactivate(&self.name(thin), deferred)
    }

    /// Activates thin device `rec` (if it is not active) and returns its node.
    pub fn activate(&self, rec: &DeviceRec, read_only: bool) -> DevResult<PathBuf> {
        if let Some(node) = self.active().get(&rec.thin) {
            return Ok(node.clone());
        }
        let n = self.name(rec.thin);
        let dev = match self.dm.live(&n)? {
            Some(info) => info.device(),
            None => self.dm.create(
                &n,
                "thin",
                rec.size / SECTOR,
                format!("{} {}", self.pool.dev, rec.thin),
                read_only,
            )?,
        };
        let node = dm::make_node(&n, dev)?;
        self.active().insert(rec.thin, node.clone());
        Ok(node)
    }

    /// Bytes mapped by an active thin device.
    pub fn mapped(&self, rec: &DeviceRec) -> DevResult<u64> {
        Ok(self.dm.thin_mapped(&self.name(rec.thin))? * SECTOR)
    }

    /// Deletes thin device `rec` of snapshot `snap` (`None`: a deferred one): deactivates it
    /// (deferred if busy and allowed), discards its blocks if asked, and deletes it from the
    /// pool, or leaves it for the deferred-deletion worker. The caller holds the lock.
    pub fn delete(&self, snap: Option<u64>, rec: DeviceRec) -> DevResult<()> {
        let n = self.name(rec.thin);
        let info = self.dm.info(&n)?;
        let busy = info.as_ref().is_some_and(|i| i.open_count() > 0);
        if self.cfg.blkdiscard && !busy {
            // A view's device is read-only: make it writable to discard its blocks.
            if info.is_some_and(|i| i.flags().contains(devicemapper::DmFlags::DM_READONLY)) {
                self.deactivate(rec.thin, false)?;
            }
            let node = self.activate(&rec, false)?;
            if let Err(e) = dm::discard(&node, rec.size) {
                tracing::warn!(%e, device = n, "discarding the blocks of a removed device failed");
            }
        }
        let tid = self.store.tid()?;
        self.store.begin(&Txn {
            op: Op::Delete {
                snap,
                thin: rec.thin,
            },
            tid,
        })?;
        failpoint::hit("devmapper:delete:after-record");
        self.finish_delete(snap, rec, tid)
    }

    /// The pool part of a delete (also the roll-forward after a crash).
    fn finish_delete(&self, snap: Option<u64>, rec: DeviceRec, tid: u64) -> DevResult<()> {
        let n = self.name(rec.thin);
        let deferred_ok = self.cfg.deferred_removal && self.cfg.deferred_deletion;
        let gone = match self.deactivate(rec.thin, self.cfg.deferred_removal) {
            Ok(Deactivated::Deferred) => false,
            Ok(_) => true,
            Err(DevError::Busy { .. }) if deferred_ok => false,
            Err(e) => return Err(e),
        };
        if !gone {
            if !deferred_ok {
                // Deferred removal without deferred deletion: the kernel removes the device
                // when it is closed, and the worker deletes it then.
                tracing::info!(
                    device = n,
                    "device busy: its deletion waits until it is closed"
                );
            }
            self.store.finish(tid, Finish::Deferred { snap, rec })?;
            return Ok(());
        }
        match self
            .dm
            .message(&self.pool.name, &format!("delete {}", rec.thin))
        {
            Ok(()) => {}
            // ENODATA: it was deleted before a crash.
            Err(e) if e.errno() == Some(nix::errno::Errno::ENODATA) => {}
            Err(e) => return Err(e),
        }
        failpoint::hit("devmapper:delete:after-delete");
        let new_tid = self.set_tid(tid)?;
        self.store.finish(
            new_tid,
            Finish::Deleted {
                snap,
                thin: rec.thin,
            },
        )
    }

    /// Deletes the deferred devices that are no longer in use. The caller holds the lock.
    pub fn reap_deferred(&self) -> DevResult<usize> {
        let mut done = 0;
        for rec in self.store.deferred()? {
            let n = self.name(rec.thin);
            let open = self.dm.info(&n)?.map_or(0, |i| i.open_count());
            if open > 0 {
                continue;
            }
            self.delete(None, rec)?;
            if !self.store.deferred()?.contains(&rec) {
                done += 1;
            }
        }
        Ok(done)
    }

    /// Finishes an interrupted transaction and checks that the pool and the store agree.
    pub fn recover(&self) -> DevResult<()> {
        let pool_tid = self.dm.pool_status(&self.pool.name)?.transaction_id;
        let plan =
            recovery::plan(self.store.txn()?, self.store.tid()?, pool_tid).map_err(|reason| {
                DevError::Pool {
                    pool: self.pool.name.clone(),
                    reason,
                }
            })?;
        match plan {
            Plan::Agree => Ok(()),
            Plan::RollBack { snap, thin } => {
                tracing::warn!(?snap, thin, "rolling back an interrupted device create");
                self.deactivate(thin, false)?;
                match self.dm.message(&self.pool.name, &format!("delete {thin}")) {
                    Ok(()) => {}
                    // ENODATA: the crash came before the device was made.
                    Err(e) if e.errno() == Some(nix::errno::Errno::ENODATA) => {}
                    Err(e) => return Err(e),
                }
                let new_tid = self.set_tid(pool_tid)?;
                self.store.finish(new_tid, Finish::Nothing)
            }
            Plan::RollForward { snap, thin } => {
                tracing::warn!(?snap, thin, "completing an interrupted device delete");
                let rec = match snap {
                    Some(s) => self.store.device(s)?,
                    None => self.store.deferred()?.into_iter().find(|r| r.thin == thin),
                }
                .unwrap_or(DeviceRec {
                    thin,
                    size: 0,
                    mapped: 0,
                    inodes: 0,
                });
                self.finish_delete(snap, rec, pool_tid)
            }
        }
    }

    /// Removes active devices of this driver that no record names (left by a crash), and
    /// deactivates the base.
    pub fn remove_stale(&self) -> DevResult<()> {
        let mut known: Vec<u32> = self
            .store
            .devices()?
            .into_iter()
            .map(|(_, r)| r.thin)
            .collect();
        known.extend(self.store.deferred()?.into_iter().map(|r| r.thin));
        let prefix = format!("{}-", self.prefix);
        for (n, _) in self.dm.list(&prefix)? {
            let Some(thin) = n[prefix.len()..].parse::<u32>().ok() else {
                continue;
            };
            if !known.contains(&thin) {
                tracing::warn!(device = n, "removing a device no snapshot owns");
                self.deactivate(thin, self.cfg.deferred_removal)?;
            }
        }
        Ok(())
    }
}
