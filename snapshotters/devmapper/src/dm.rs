//! The device-mapper calls the driver makes, over the `devicemapper` crate's ioctls: pools, thin
//! devices, messages, status, and the device nodes the driver makes itself (there is no udev).
//! The one `unsafe` call (BLKDISCARD) lives here too.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use devicemapper::{DevId, Device, DeviceInfo, DmFlags, DmName, DmOptions, DM};

use crate::error::{DevError, DevResult, IoCtx};

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Bytes per thin-pool metadata block.
pub const META_BLOCK: u64 = 4096;
/// Where the driver makes device nodes.
pub const MAPPER_DIR: &str = "/dev/mapper";

/// The status line of a thin pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// The pool's transaction id.
    pub transaction_id: u64,
    /// Metadata blocks (4K) used and total.
    pub meta_used: u64,
    /// Total metadata blocks.
    pub meta_total: u64,
    /// Data blocks used.
    pub data_used: u64,
    /// Total data blocks.
    pub data_total: u64,
    /// Whether the pool is read-only or out of data space.
    pub read_only: bool,
    /// Whether the pool is out of data space.
    pub out_of_space: bool,
    /// Whether the metadata needs `thin_check`.
    pub needs_check: bool,
}

impl PoolStatus {
    /// Parses the thin-pool target's status
    /// (`<tid> <used>/<total meta> <used>/<total data> <held root> rw|ro|out_of_data_space ...`).
    pub fn parse(s: &str) -> Option<PoolStatus> {
        let f: Vec<&str> = s.split_whitespace().collect();
        let pair = |x: &str| -> Option<(u64, u64)> {
            let (a, b) = x.split_once('/')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let transaction_id = f.first()?.parse().ok()?;
        let (meta_used, meta_total) = pair(f.get(1)?)?;
        let (data_used, data_total) = pair(f.get(2)?)?;
        let mode = f.get(4).copied().unwrap_or("rw");
        Some(PoolStatus {
            transaction_id,
            meta_used,
            meta_total,
            data_used,
            data_total,
            read_only: mode == "ro",
            out_of_space: mode == "out_of_data_space",
            needs_check: f.contains(&"needs_check"),
        })
    }
}

/// The table of a thin pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTable {
    /// Length in sectors.
    pub sectors: u64,
    /// The metadata device (major:minor).
    pub metadata: String,
    /// The data device (major:minor).
    pub data: String,
    /// The chunk size in sectors.
    pub block_sectors: u64,
}

/// What deactivating a device did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deactivated {
    /// It was not active.
    NotActive,
    /// It is gone.
    Removed,
    /// It is busy and the kernel removes it when its last user closes it.
    Deferred,
}

/// A handle on /dev/mapper/control.
pub struct Dm {
    dm: DM,
}

impl std::fmt::Debug for Dm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dm(/dev/mapper/control)")
    }
}

fn name(n: &str) -> DevResult<&DmName> {
    DmName::new(n).map_err(|source| DevError::Dm {
        op: "use the name",
        target: n.to_string(),
        source,
    })
}

impl Dm {
    /// Opens the control device.
    pub fn open() -> DevResult<Dm> {
        let dm = DM::new().map_err(|source| DevError::Dm {
            op: "open",
            target: "/dev/mapper/control (is dm-mod loaded?)".into(),
            source,
        })?;
        Ok(Dm { dm })
    }

    /// The kernel's device-mapper version.
    pub fn version(&self) -> DevResult<String> {
        let (a, b, c) = self.dm.version().map_err(|source| DevError::Dm {
            op: "read the version of",
            target: "the kernel driver".into(),
            source,
        })?;
        Ok(format!("{a}.{b}.{c}"))
    }

    /// The device's info, or `None` when no device has that name.
    pub fn info(&self, n: &str) -> DevResult<Option<DeviceInfo>> {
        match self.dm.device_info(&DevId::Name(name(n)?)) {
            Ok(i) => Ok(Some(i)),
            Err(source) => {
                let e = DevError::Dm {
                    op: "look up",
                    target: n.to_string(),
                    source,
                };
                if e.errno() == Some(nix::errno::Errno::ENXIO) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The device's info when it exists with a live table. A device left without one (a
    /// crash between its create and its table load) is removed, so it can be made again.
    pub fn live(&self, n: &str) -> DevResult<Option<DeviceInfo>> {
        match self.info(n)? {
            Some(i) if i.flags().contains(DmFlags::DM_ACTIVE_PRESENT) => Ok(Some(i)),
            Some(_) => {
                tracing::warn!(
                    device = n,
                    "removing a device that has no table (an interrupted create)"
                );
                self.dm
                    .device_remove(&DevId::Name(name(n)?), DmOptions::default())
                    .map_err(|source| DevError::Dm {
                        op: "remove",
                        target: n.to_string(),
                        source,
                    })?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// The names and numbers of the active devices whose name starts with `prefix`.
    pub fn list(&self, prefix: &str) -> DevResult<Vec<(String, Device)>> {
        let all = self.dm.list_devices().map_err(|source| DevError::Dm {
            op: "list",
            target: "devices".into(),
            source,
        })?;
        Ok(all
            .into_iter()
            .map(|(n, d, _)| (n.to_string(), d))
            .filter(|(n, _)| n.starts_with(prefix))
            .collect())
    }

    /// Creates device `n` with one target and activates it.
    pub fn create(
        &self,
        n: &str,
        target: &str,
        sectors: u64,
        params: String,
        read_only: bool,
    ) -> DevResult<Device> {
        let id = DevId::Name(name(n)?);
        let dm_err = |op: &'static str| {
            let n = n.to_string();
            move |source| DevError::Dm {
                op,
                target: n,
                source,
            }
        };
        self.dm
            .device_create(name(n)?, None, DmOptions::default())
            .map_err(dm_err("create device"))?;
        let flags = if read_only {
            DmFlags::DM_READONLY
        } else {
            DmFlags::empty()
        };
        let loaded = self
            .dm
            .table_load(
                &id,
                &[(0, sectors, target.to_string(), params)],
                DmOptions::default().set_flags(flags),
            )
            .map_err(dm_err("load the table of"))
            .and_then(|_| {
                self.dm
                    .device_suspend(&id, DmOptions::default())
                    .map_err(dm_err("resume"))
            });
        match loaded {
            Ok(info) => Ok(info.device()),
            Err(e) => {
                if let Err(re) = self.dm.device_remove(&id, DmOptions::default()) {
                    tracing::warn!(%re, device = n, "removing a device whose table failed to load failed");
                }
                Err(e)
            }
        }
    }

    /// Suspends (`true`) or resumes (`false`) a device.
    pub fn suspend(&self, n: &str, suspend: bool) -> DevResult<()> {
        let flags = if suspend {
            DmFlags::DM_SUSPEND
        } else {
            DmFlags::empty()
        };
        self.dm
            .device_suspend(
                &DevId::Name(name(n)?),
                DmOptions::default().set_flags(flags),
            )
            .map_err(|source| DevError::Dm {
                op: if suspend { "suspend" } else { "resume" },
                target: n.to_string(),
                source,
            })?;
        Ok(())
    }

    /// Removes device `n` if it is active. A busy device is refused with [`DevError::Busy`], or
    /// with `deferred` left for the kernel to remove when it is closed.
    pub fn deactivate(&self, n: &str, deferred: bool) -> DevResult<Deactivated> {
        let Some(info) = self.info(n)? else {
            remove_node(n);
            return Ok(Deactivated::NotActive);
        };
        if info.open_count() > 0 {
            if !deferred {
                return Err(DevError::Busy {
                    name: n.to_string(),
                    open: info.open_count(),
                });
            }
            self.dm
                .device_remove(
                    &DevId::Name(name(n)?),
                    DmOptions::default().set_flags(DmFlags::DM_DEFERRED_REMOVE),
                )
                .map_err(|source| DevError::Dm {
                    op: "schedule the deferred removal of",
                    target: n.to_string(),
                    source,
                })?;
            return Ok(Deactivated::Deferred);
        }
        match self
            .dm
            .device_remove(&DevId::Name(name(n)?), DmOptions::default())
        {
            Ok(_) => {
                remove_node(n);
                Ok(Deactivated::Removed)
            }
            Err(source) => {
                let e = DevError::Dm {
                    op: "remove",
                    target: n.to_string(),
                    source,
                };
                match e.errno() {
                    Some(nix::errno::Errno::ENXIO) => Ok(Deactivated::NotActive),
                    Some(nix::errno::Errno::EBUSY) => Err(DevError::Busy {
                        name: n.to_string(),
                        open: self.info(n)?.map_or(0, |i| i.open_count()),
                    }),
                    _ => Err(e),
                }
            }
        }
    }

    /// Sends a message to a pool (`create_thin 3`, `delete 3`, ...).
    pub fn message(&self, pool: &str, msg: &str) -> DevResult<()> {
        self.dm
            .target_msg(&DevId::Name(name(pool)?), None, msg)
            .map_err(|source| DevError::Dm {
                op: "send a message to",
                target: format!("{pool} ({msg})"),
                source,
            })?;
        Ok(())
    }

    /// The status (`DM_STATUS_TABLE` off) or table (on) of a one-target device: (type, params).
    fn line(&self, n: &str, table: bool) -> DevResult<(u64, String, String)> {
        let flags = if table {
            DmFlags::DM_STATUS_TABLE
        } else {
            DmFlags::empty()
        };
        let (_, lines) = self
            .dm
            .table_status(
                &DevId::Name(name(n)?),
                DmOptions::default().set_flags(flags),
            )
            .map_err(|source| DevError::Dm {
                op: if table {
                    "read the table of"
                } else {
                    "read the status of"
                },
                target: n.to_string(),
                source,
            })?;
        match lines.into_iter().next() {
            Some((_, len, t, p)) => Ok((len, t, p)),
            None => Err(DevError::Pool {
                pool: n.to_string(),
                reason: "the device has no table".into(),
            }),
        }
    }

    /// The status of thin pool `n`.
    pub fn pool_status(&self, n: &str) -> DevResult<PoolStatus> {
        let (_, t, p) = self.line(n, false)?;
        if t != "thin-pool" {
            return Err(DevError::Pool {
                pool: n.to_string(),
                reason: format!("it is a {t} device, not a thin-pool"),
            });
        }
        PoolStatus::parse(&p).ok_or_else(|| DevError::Pool {
            pool: n.to_string(),
            reason: format!("unexpected status {p:?} (the pool may have failed)"),
        })
    }

    /// The table of thin pool `n`.
    pub fn pool_table(&self, n: &str) -> DevResult<PoolTable> {
        let (sectors, t, p) = self.line(n, true)?;
        let f: Vec<&str> = p.split_whitespace().collect();
        match (t.as_str(), f.as_slice()) {
            ("thin-pool", [meta, data, block, ..]) => Ok(PoolTable {
                sectors,
                metadata: meta.to_string(),
                data: data.to_string(),
                block_sectors: block.parse().map_err(|_| DevError::Pool {
                    pool: n.to_string(),
                    reason: format!("unexpected table {p:?}"),
                })?,
            }),
            _ => Err(DevError::Pool {
                pool: n.to_string(),
                reason: format!("it is a {t} device ({p}), not a thin-pool"),
            }),
        }
    }

    /// The sectors a thin device has mapped (its own and shared blocks).
    pub fn thin_mapped(&self, n: &str) -> DevResult<u64> {
        let (_, _, p) = self.line(n, false)?;
        p.split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| DevError::Pool {
                pool: n.to_string(),
                reason: format!("unexpected thin status {p:?} (the device may have failed)"),
            })
    }
}

/// The path of the node the driver makes for device `n`.
pub fn node_path(n: &str) -> PathBuf {
    Path::new(MAPPER_DIR).join(n)
}

/// Makes `/dev/mapper/<n>` for `dev` (replacing a stale node with other numbers).
pub fn make_node(n: &str, dev: Device) -> DevResult<PathBuf> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::os::unix::fs::MetadataExt;
    let path = node_path(n);
    let rdev = makedev(u64::from(dev.major), u64::from(dev.minor));
    match fs::metadata(&path) {
        Ok(m) if m.file_type().is_block_device() && m.rdev() == rdev => return Ok(path),
        Ok(_) => fs::remove_file(&path).ctx("remove stale device node", &path)?,
        Err(_) => {}
    }
    fs::create_dir_all(MAPPER_DIR).ctx("create directory", MAPPER_DIR)?;
    mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), rdev)
        .map_err(|e| DevError::io("make device node", &path, e.into()))?;
    Ok(path)
}

/// Removes `/dev/mapper/<n>` if it is there.
pub fn remove_node(n: &str) {
    let path = node_path(n);
    if let Err(e) = fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(%e, path = %path.display(), "removing a device node failed");
        }
    }
}

nix::ioctl_write_ptr_bad!(blk_discard, 0x1277, [u64; 2]);

/// Discards the first `bytes` of block device `path` (BLKDISCARD).
pub fn discard(path: &Path, bytes: u64) -> DevResult<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .ctx("open for discard", path)?;
    let range = [0u64, bytes];
    // SAFETY: BLKDISCARD reads a [u64; 2] (start, length) through the pointer, which points to a
    // live local array; the descriptor is open for the duration of the call.
    unsafe { blk_discard(f.as_raw_fd(), &range) }
        .map_err(|e| DevError::io("discard", path, e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_status_parses() {
        let s =
            PoolStatus::parse("7 14/524288 2/1600 - rw discard_passdown error_if_no_space - 1024")
                .unwrap();
        assert_eq!(s.transaction_id, 7);
        assert_eq!((s.meta_used, s.meta_total), (14, 524288));
        assert_eq!((s.data_used, s.data_total), (2, 1600));
        assert!(!s.read_only && !s.out_of_space && !s.needs_check);
        let s = PoolStatus::parse(
            "1 1/2 3/3 - out_of_data_space discard_passdown error_if_no_space needs_check",
        )
        .unwrap();
        assert!(s.out_of_space && s.needs_check);
        assert!(PoolStatus::parse("Fail").is_none());
    }
}
