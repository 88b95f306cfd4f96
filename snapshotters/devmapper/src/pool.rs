//! Setting up the thin pool in each of its three modes: loop-backed sparse files (the
//! development default), block devices the operator names, or an existing pool.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use devicemapper::Device;

use crate::dm::{Dm, SECTOR};
use crate::error::{DevError, DevResult, IoCtx};
use crate::options::{Config, PoolMode};
use strata_snapshotter::options::OptionError;

/// The low-water mark (in pool blocks) the pool's table carries.
const LOW_WATER_BLOCKS: u64 = 32;

/// The pool the driver uses.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Its device-mapper name.
    pub name: String,
    /// Its device number (thin tables name the pool by it).
    pub dev: Device,
    /// Its chunk size in bytes.
    pub block_size: u64,
    /// The data file or device, for Status.
    pub data: String,
    /// The metadata file or device, for Status.
    pub metadata: String,
}

fn devno(path: &Path) -> DevResult<Device> {
    let m = fs::metadata(path).ctx("stat", path)?;
    if !m.file_type().is_block_device() {
        return Err(DevError::io(
            "use as a block device",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a block device"),
        ));
    }
    Ok(Device::from(m.rdev()))
}

fn block_device_size(path: &Path) -> DevResult<u64> {
    let mut f = fs::File::open(path).ctx("open", path)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).ctx("find the size of", path)
}

/// Whether the first MiB of `path` is zero.
fn starts_zeroed(path: &Path) -> DevResult<bool> {
    let mut f = fs::File::open(path).ctx("open", path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).ctx("read", path)? {
            0 => break,
            r => n += r,
        }
    }
    Ok(buf[..n].iter().all(|b| *b == 0))
}

/// Makes (or grows) a sparse file of `size` bytes; a larger existing file is refused, naming
/// `key`.
fn sparse_file(path: &Path, size: u64, key: &str) -> DevResult<()> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx("create", path)?;
    let have = f.metadata().ctx("stat", path)?.len();
    if have > size {
        return Err(OptionError::Invalid {
            key: key.into(),
            value: size.to_string(),
            reason: format!(
                "{} is already {have} bytes and cannot shrink",
                path.display()
            ),
        }
        .into());
    }
    if have < size {
        f.set_len(size).ctx("resize", path)?;
    }
    Ok(())
}

/// Attaches `file` to a free loop device that goes away when its last user (the pool) does.
fn attach_loop(file: &Path) -> DevResult<(loopdev::LoopDevice, Device, PathBuf)> {
    let lc = loopdev::LoopControl::open().ctx("open", "/dev/loop-control")?;
    let ld = lc.next_free().ctx("find a free loop device for", file)?;
    ld.with()
        .autoclear(true)
        .attach(file)
        .ctx("attach a loop device to", file)?;
    let path = ld.path().unwrap_or_default();
    let dev = Device {
        major: ld
            .major()
            .ctx("read the number of the loop device for", file)?,
        minor: ld
            .minor()
            .ctx("read the number of the loop device for", file)?,
    };
    Ok((ld, dev, path))
}

impl Pool {
    /// Sets up the pool for `cfg`. `name` is the pool's name in the loop and device modes;
    /// `dir` is `<root>/devicemapper`; `fresh` says the driver has no state for a pool yet.
    pub fn setup(cfg: &Config, dm: &Dm, name: &str, dir: &Path, fresh: bool) -> DevResult<Pool> {
        match &cfg.pool {
            PoolMode::Loop {
                data_size,
                metadata_size,
            } => {
                let data = dir.join("data");
                let metadata = dir.join("metadata");
                sparse_file(&data, *data_size, "dm.loopdatasize")?;
                sparse_file(&metadata, *metadata_size, "dm.loopmetadatasize")?;
                tracing::warn!(
                    data = %data.display(),
                    metadata = %metadata.display(),
                    "devicemapper: using loop-backed sparse files for the thin pool; this is for \
                     development only (use dm.datadev/dm.metadatadev or dm.thinpooldev in production)"
                );
                let mut pool = Pool {
                    name: name.to_string(),
                    dev: Device { major: 0, minor: 0 },
                    block_size: cfg.block_size,
                    data: data.display().to_string(),
                    metadata: metadata.display().to_string(),
                };
                if let Some(info) = dm.live(name)? {
                    pool.dev = info.device();
                    pool.check_block_size(dm, cfg)?;
                    return Ok(pool);
                }
                // The loop devices are held by the pool once it is made, and go with it.
                let (_meta_loop, meta_dev, _) = attach_loop(&metadata)?;
                let (_data_loop, data_dev, _) = attach_loop(&data)?;
                pool.dev = create_pool(dm, name, meta_dev, data_dev, *data_size, cfg.block_size)?;
                Ok(pool)
            }
            PoolMode::Devices { data, metadata } => {
                let data_dev = devno(data)?;
                let meta_dev = devno(metadata)?;
                let mut pool = Pool {
                    name: name.to_string(),
                    dev: Device { major: 0, minor: 0 },
                    block_size: cfg.block_size,
                    data: data.display().to_string(),
                    metadata: metadata.display().to_string(),
                };
                if let Some(info) = dm.live(name)? {
                    pool.dev = info.device();
                    pool.check_block_size(dm, cfg)?;
                    return Ok(pool);
                }
                if fresh {
                    for (key, path) in [("dm.datadev", data), ("dm.metadatadev", metadata)] {
                        if !starts_zeroed(path)? {
                            return Err(OptionError::Invalid {
                                key: key.into(),
                                value: path.display().to_string(),
                                reason: "the device holds data (its first MiB is not zero; it may \
                                         have a filesystem): zero it first, e.g. with blkdiscard -z \
                                         or dd if=/dev/zero"
                                    .into(),
                            }
                            .into());
                        }
                    }
                }
                let size = block_device_size(data)?;
                pool.dev = create_pool(dm, name, meta_dev, data_dev, size, cfg.block_size)?;
                Ok(pool)
            }
            PoolMode::Existing(pool_name) => {
                let Some(info) = dm.info(pool_name)? else {
                    return Err(OptionError::Invalid {
                        key: "dm.thinpooldev".into(),
                        value: pool_name.clone(),
                        reason: "no device-mapper device has this name".into(),
                    }
                    .into());
                };
                let table = dm.pool_table(pool_name).map_err(|e| OptionError::Invalid {
                    key: "dm.thinpooldev".into(),
                    value: pool_name.clone(),
                    reason: e.to_string(),
                })?;
                let status = dm.pool_status(pool_name)?;
                if fresh && (status.transaction_id != 0 || status.data_used != 0) {
                    return Err(OptionError::Invalid {
                        key: "dm.thinpooldev".into(),
                        value: pool_name.clone(),
                        reason: format!(
                            "the pool is not empty (transaction id {}, {} data blocks used): \
                             give an empty pool that only strata-devmapper uses",
                            status.transaction_id, status.data_used
                        ),
                    }
                    .into());
                }
                Ok(Pool {
                    name: pool_name.clone(),
                    dev: info.device(),
                    block_size: table.block_sectors * SECTOR,
                    data: table.data,
                    metadata: table.metadata,
                })
            }
        }
    }

    fn check_block_size(&self, dm: &Dm, cfg: &Config) -> DevResult<()> {
        let table = dm.pool_table(&self.name)?;
        if table.block_sectors * SECTOR != cfg.block_size {
            return Err(OptionError::Invalid {
                key: "dm.blocksize".into(),
                value: cfg.block_size.to_string(),
                reason: format!(
                    "the pool {} was made with blocks of {} bytes; the block size cannot change",
                    self.name,
                    table.block_sectors * SECTOR
                ),
            }
            .into());
        }
        Ok(())
    }
}

fn create_pool(
    dm: &Dm,
    name: &str,
    meta: Device,
    data: Device,
    data_bytes: u64,
    block_size: u64,
) -> DevResult<Device> {
    let block_sectors = block_size / SECTOR;
    // The pool maps whole blocks only.
    let sectors = data_bytes / SECTOR / block_sectors * block_sectors;
    let params = format!("{meta} {data} {block_sectors} {LOW_WATER_BLOCKS} 1 error_if_no_space");
    tracing::info!(pool = name, %params, sectors, "creating the thin pool");
    dm.create(name, "thin-pool", sectors, params, false)
}
