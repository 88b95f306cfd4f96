//! The `dm.*` storage options: parsed and checked once, at start, into typed values. Every
//! refusal names the option.

use std::path::{Path, PathBuf};

use strata_snapshotter::options::{parse_bool, parse_size, OptionError, StorageOpts};

/// The options this driver takes.
pub const OPTIONS: &[&str] = &[
    "dm.basesize",
    "dm.blkdiscard",
    "dm.blocksize",
    "dm.datadev",
    "dm.fs",
    "dm.loopdatasize",
    "dm.loopmetadatasize",
    "dm.metadatadev",
    "dm.min_free_space",
    "dm.mkfsarg",
    "dm.mountopt",
    "dm.thinpooldev",
    "dm.use_deferred_deletion",
    "dm.use_deferred_removal",
    "dm.xfs_nospace_max_retries",
];

/// Default size of the loop-backed data file.
pub const DEFAULT_LOOP_DATA_SIZE: u64 = 100 << 30;
/// Default size of the loop-backed metadata file.
pub const DEFAULT_LOOP_METADATA_SIZE: u64 = 2 << 30;
/// Default pool chunk size.
pub const DEFAULT_BLOCK_SIZE: u64 = 64 << 10;
/// Default size of the base device (and so of every snapshot's filesystem).
pub const DEFAULT_BASE_SIZE: u64 = 10 << 30;
/// Default minimum free space of the pool, in percent.
pub const DEFAULT_MIN_FREE_SPACE: u8 = 10;
/// The kernel's limits on a thin pool's metadata device (2 MiB .. 16 GiB).
const MIN_METADATA: u64 = 2 << 20;
const MAX_METADATA: u64 = 16 << 30;
/// mkfs.xfs refuses filesystems smaller than this.
pub const MIN_XFS_SIZE: u64 = 300 << 20;
/// The smallest base device the driver makes (an ext4 with a journal).
pub const MIN_BASE_SIZE: u64 = 16 << 20;

/// The filesystem of the base device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    /// ext4.
    Ext4,
    /// xfs (mounted with `nouuid`, since snapshots share the base's UUID).
    Xfs,
}

impl Fs {
    /// The name used for mounts and in Status.
    pub fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
        }
    }

    fn parse(s: &str) -> Result<Fs, String> {
        match s {
            "ext4" => Ok(Fs::Ext4),
            "xfs" => Ok(Fs::Xfs),
            _ => Err("the filesystem must be ext4 or xfs".into()),
        }
    }
}

/// Where the pool comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolMode {
    /// Sparse files `<root>/devicemapper/{data,metadata}` on loop devices (for development).
    Loop {
        /// Size of the data file.
        data_size: u64,
        /// Size of the metadata file.
        metadata_size: u64,
    },
    /// Block devices the operator names.
    Devices {
        /// The data device.
        data: PathBuf,
        /// The metadata device.
        metadata: PathBuf,
    },
    /// An existing, empty thin pool, by its device-mapper name.
    Existing(String),
}

/// The driver's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the pool comes from.
    pub pool: PoolMode,
    /// Pool chunk size in bytes.
    pub block_size: u64,
    /// Size of the base device in bytes.
    pub base_size: u64,
    /// Filesystem of the base device.
    pub fs: Fs,
    /// Whether `dm.fs` was given (else `fs` is this host's default).
    pub fs_given: bool,
    /// Extra arguments to mkfs.
    pub mkfs_args: Vec<String>,
    /// Extra mount options.
    pub mount_opts: Vec<String>,
    /// Refuse new devices when less than this percentage of data or metadata is free.
    pub min_free_space: u8,
    /// Remove busy devices when their last user closes them.
    pub deferred_removal: bool,
    /// Delete busy devices later, from a background worker.
    pub deferred_deletion: bool,
    /// Discard a device's blocks before deleting it.
    pub blkdiscard: bool,
    /// XFS metadata ENOSPC retries (`None`: the kernel's default, retry forever).
    pub xfs_nospace_max_retries: Option<u32>,
}

fn invalid(key: &str, value: impl ToString, reason: impl Into<String>) -> OptionError {
    OptionError::Invalid {
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn positive_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be larger than 0".into()),
        n if n % 512 != 0 => Err("must be a multiple of 512 bytes".into()),
        n => Ok(n),
    }
}

fn absolute_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err("must be an absolute path to a block device".into())
    }
}

fn pool_name(s: &str) -> Result<String, String> {
    let name = s.strip_prefix("/dev/mapper/").unwrap_or(s);
    if name.is_empty() || name.contains('/') || name.len() >= 128 {
        return Err("must be the device-mapper name of a thin pool (or /dev/mapper/<name>)".into());
    }
    Ok(name.to_string())
}

fn percent(s: &str) -> Result<u8, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<u8>() {
        Ok(n) if n < 100 => Ok(n),
        _ => Err("must be a percentage from 0% to 99%".into()),
    }
}

fn words(s: &str) -> Result<Vec<String>, String> {
    Ok(s.split_whitespace().map(String::from).collect())
}

fn mount_options(s: &str) -> Result<Vec<String>, String> {
    let opts: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect();
    for o in &opts {
        if matches!(o.as_str(), "ro" | "rw" | "remount" | "bind") {
            return Err(format!("{o} is set by the driver and cannot be given"));
        }
    }
    Ok(opts)
}

/// Whether this host can make and mount xfs (the default when it can).
pub fn xfs_available() -> bool {
    let mkfs = ["/usr/sbin/mkfs.xfs", "/sbin/mkfs.xfs", "/usr/bin/mkfs.xfs"]
        .iter()
        .any(|p| Path::new(p).is_file());
    mkfs && std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().last() == Some("xfs"))
    })
}

impl Config {
    /// Takes the `dm.*` options from `opts` and checks them; `xfs` says whether xfs can be
    /// made here (see [`xfs_available`]).
    pub fn parse(opts: &mut StorageOpts, xfs: bool) -> Result<Config, OptionError> {
        let loop_data = opts.take_with("dm.loopdatasize", positive_size)?;
        let loop_meta = opts.take_with("dm.loopmetadatasize", positive_size)?;
        let data_dev = opts.take_with("dm.datadev", absolute_path)?;
        let meta_dev = opts.take_with("dm.metadatadev", absolute_path)?;
        let thin_pool = opts.take_with("dm.thinpooldev", pool_name)?;
        let block_size = opts
            .take_with("dm.blocksize", parse_size)?
            .unwrap_or(DEFAULT_BLOCK_SIZE);
        let base_size = opts
            .take_with("dm.basesize", positive_size)?
            .unwrap_or(DEFAULT_BASE_SIZE);
        let fs = opts.take_with("dm.fs", Fs::parse)?;
        let mkfs_args = opts.take_with("dm.mkfsarg", words)?.unwrap_or_default();
        let mount_opts = opts
            .take_with("dm.mountopt", mount_options)?
            .unwrap_or_default();
        let min_free_space = opts
            .take_with("dm.min_free_space", percent)?
            .unwrap_or(DEFAULT_MIN_FREE_SPACE);
        let deferred_removal = opts
            .take_with("dm.use_deferred_removal", parse_bool)?
            .unwrap_or(false);
        let deferred_deletion = opts
            .take_with("dm.use_deferred_deletion", parse_bool)?
            .unwrap_or(false);
        let blkdiscard = opts.take_with("dm.blkdiscard", parse_bool)?;
        let xfs_retries = opts.take_with("dm.xfs_nospace_max_retries", |s| {
            s.parse::<u32>()
                .map_err(|_| "must be a number of retries (0 or more)".to_string())
        })?;

        let pool = match (thin_pool, data_dev, meta_dev) {
            (Some(name), None, None) => {
                for (key, given) in [
                    ("dm.loopdatasize", loop_data),
                    ("dm.loopmetadatasize", loop_meta),
                ] {
                    if let Some(v) = given {
                        return Err(invalid(
                            key,
                            v,
                            "applies only to the loop-file pool, not with dm.thinpooldev",
                        ));
                    }
                }
                PoolMode::Existing(name)
            }
            (Some(name), _, _) => {
                return Err(invalid(
                    "dm.thinpooldev",
                    name,
                    "cannot be combined with dm.datadev or dm.metadatadev",
                ))
            }
            (None, Some(data), Some(metadata)) => {
                for (key, given) in [
                    ("dm.loopdatasize", loop_data),
                    ("dm.loopmetadatasize", loop_meta),
                ] {
                    if let Some(v) = given {
                        return Err(invalid(
                            key,
                            v,
                            "applies only to the loop-file pool, not with dm.datadev",
                        ));
                    }
                }
                if data == metadata {
                    return Err(invalid(
                        "dm.metadatadev",
                        metadata.display(),
                        "must be another device than dm.datadev",
                    ));
                }
                PoolMode::Devices { data, metadata }
            }
            (None, Some(data), None) => {
                return Err(invalid(
                    "dm.datadev",
                    data.display(),
                    "needs dm.metadatadev as well",
                ))
            }
            (None, None, Some(meta)) => {
                return Err(invalid(
                    "dm.metadatadev",
                    meta.display(),
                    "needs dm.datadev as well",
                ))
            }
            (None, None, None) => {
                let metadata_size = loop_meta.unwrap_or(DEFAULT_LOOP_METADATA_SIZE);
                if !(MIN_METADATA..=MAX_METADATA).contains(&metadata_size) {
                    return Err(invalid(
                        "dm.loopmetadatasize",
                        metadata_size,
                        "a thin pool's metadata must be between 2M and 16G",
                    ));
                }
                PoolMode::Loop {
                    data_size: loop_data.unwrap_or(DEFAULT_LOOP_DATA_SIZE),
                    metadata_size,
                }
            }
        };
        // The kernel takes chunks of 64K to 1G in multiples of 64K.
        if !((64 << 10)..=(1 << 30)).contains(&block_size) || block_size % (64 << 10) != 0 {
            return Err(invalid(
                "dm.blocksize",
                block_size,
                "must be a multiple of 64K between 64K and 1G",
            ));
        }
        if let PoolMode::Loop { data_size, .. } = &pool {
            if *data_size < block_size * 16 {
                return Err(invalid(
                    "dm.loopdatasize",
                    data_size,
                    format!(
                        "must hold at least 16 pool blocks ({} bytes)",
                        block_size * 16
                    ),
                ));
            }
        }
        let fs_given = fs.is_some();
        let fs = match fs {
            Some(Fs::Xfs) if !xfs => {
                return Err(invalid(
                    "dm.fs",
                    "xfs",
                    "this host cannot make xfs (install xfsprogs; the kernel needs xfs)",
                ))
            }
            Some(fs) => fs,
            None if xfs => Fs::Xfs,
            None => Fs::Ext4,
        };
        if base_size < MIN_BASE_SIZE {
            return Err(invalid("dm.basesize", base_size, "must be at least 16M"));
        }
        if fs == Fs::Xfs && base_size < MIN_XFS_SIZE {
            return Err(invalid(
                "dm.basesize",
                base_size,
                "xfs needs at least 300M (use dm.fs=ext4 for smaller devices)",
            ));
        }
        if base_size % 4096 != 0 {
            return Err(invalid(
                "dm.basesize",
                base_size,
                "must be a multiple of 4K",
            ));
        }
        if deferred_deletion && !deferred_removal {
            return Err(invalid(
                "dm.use_deferred_deletion",
                "true",
                "needs dm.use_deferred_removal=true",
            ));
        }
        if let (Some(n), Fs::Ext4) = (xfs_retries, fs) {
            return Err(invalid(
                "dm.xfs_nospace_max_retries",
                n,
                "applies only to dm.fs=xfs",
            ));
        }
        let blkdiscard = blkdiscard.unwrap_or(matches!(pool, PoolMode::Loop { .. }));
        Ok(Config {
            pool,
            block_size,
            base_size,
            fs,
            fs_given,
            mkfs_args,
            mount_opts,
            min_free_space,
            deferred_removal,
            deferred_deletion,
            blkdiscard,
            xfs_nospace_max_retries: xfs_retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str], xfs: bool) -> Result<Config, String> {
        let mut o = StorageOpts::parse(opts).map_err(|e| e.to_string())?;
        let c = Config::parse(&mut o, xfs).map_err(|e| e.to_string())?;
        o.finish("devicemapper", OPTIONS)
            .map_err(|e| e.to_string())?;
        Ok(c)
    }

    fn refused(opts: &[&str], key: &str) {
        match parse(opts, true) {
            Ok(c) => panic!("{opts:?} accepted: {c:?}"),
            Err(e) => assert!(e.contains(key), "{opts:?}: {e} does not name {key}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&[], false).unwrap();
        assert_eq!(
            c.pool,
            PoolMode::Loop {
                data_size: 100 << 30,
                metadata_size: 2 << 30
            }
        );
        assert_eq!(c.block_size, 64 << 10);
        assert_eq!(c.base_size, 10 << 30);
        assert_eq!(c.fs, Fs::Ext4);
        assert_eq!(c.min_free_space, 10);
        assert!(!c.deferred_removal && !c.deferred_deletion);
        assert!(c.blkdiscard, "discard is on for loop files");
        assert_eq!(c.xfs_nospace_max_retries, None);
        assert_eq!(parse(&[], true).unwrap().fs, Fs::Xfs);
    }

    #[test]
    fn every_option_parses() {
        let c = parse(
            &[
                "dm.loopdatasize=1G",
                "dm.loopmetadatasize=64M",
                "dm.blocksize=128K",
                "dm.basesize=512M",
                "dm.fs=xfs",
                "dm.mkfsarg=-m crc=1",
                "dm.mountopt=noatime,discard",
                "dm.min_free_space=5%",
                "dm.use_deferred_removal=true",
                "dm.use_deferred_deletion=true",
                "dm.blkdiscard=false",
                "dm.xfs_nospace_max_retries=3",
            ],
            true,
        )
        .unwrap();
        assert_eq!(
            c.pool,
            PoolMode::Loop {
                data_size: 1 << 30,
                metadata_size: 64 << 20
            }
        );
        assert_eq!(c.block_size, 128 << 10);
        assert_eq!(c.mkfs_args, vec!["-m", "crc=1"]);
        assert_eq!(c.mount_opts, vec!["noatime", "discard"]);
        assert_eq!(c.min_free_space, 5);
        assert!(c.deferred_removal && c.deferred_deletion && !c.blkdiscard);
        assert_eq!(c.xfs_nospace_max_retries, Some(3));
        let c = parse(&["dm.datadev=/dev/sdb", "dm.metadatadev=/dev/sdc"], false).unwrap();
        assert!(
            !c.blkdiscard,
            "discard is off for real devices unless asked"
        );
        assert!(matches!(c.pool, PoolMode::Devices { .. }));
        let c = parse(&["dm.thinpooldev=/dev/mapper/vg-pool"], false).unwrap();
        assert_eq!(c.pool, PoolMode::Existing("vg-pool".into()));
    }

    #[test]
    fn bad_values_name_the_option() {
        refused(&["dm.loopdatasize=lots"], "dm.loopdatasize");
        refused(&["dm.loopdatasize=0"], "dm.loopdatasize");
        refused(&["dm.loopdatasize=64K"], "dm.loopdatasize");
        refused(&["dm.loopmetadatasize=1M"], "dm.loopmetadatasize");
        refused(&["dm.loopmetadatasize=17G"], "dm.loopmetadatasize");
        refused(&["dm.datadev=/dev/sdb"], "dm.datadev");
        refused(&["dm.metadatadev=/dev/sdc"], "dm.metadatadev");
        refused(&["dm.datadev=sdb", "dm.metadatadev=/dev/sdc"], "dm.datadev");
        refused(
            &["dm.datadev=/dev/a", "dm.metadatadev=/dev/a"],
            "dm.metadatadev",
        );
        refused(&["dm.thinpooldev="], "dm.thinpooldev");
        refused(&["dm.thinpooldev=p", "dm.datadev=/dev/a"], "dm.thinpooldev");
        refused(
            &["dm.thinpooldev=p", "dm.loopdatasize=1G"],
            "dm.loopdatasize",
        );
        refused(
            &[
                "dm.datadev=/dev/a",
                "dm.metadatadev=/dev/b",
                "dm.loopmetadatasize=1G",
            ],
            "dm.loopmetadatasize",
        );
        refused(&["dm.blocksize=32K"], "dm.blocksize");
        refused(&["dm.blocksize=100K"], "dm.blocksize");
        refused(&["dm.blocksize=2G"], "dm.blocksize");
        refused(&["dm.basesize=1M"], "dm.basesize");
        refused(&["dm.basesize=100M", "dm.fs=xfs"], "dm.basesize");
        refused(&["dm.basesize=20001K", "dm.fs=ext4"], "dm.basesize");
        refused(&["dm.fs=btrfs"], "dm.fs");
        refused(&["dm.mountopt=ro"], "dm.mountopt");
        refused(&["dm.min_free_space=100%"], "dm.min_free_space");
        refused(&["dm.min_free_space=ten"], "dm.min_free_space");
        refused(
            &["dm.use_deferred_removal=maybe"],
            "dm.use_deferred_removal",
        );
        refused(
            &["dm.use_deferred_deletion=true"],
            "dm.use_deferred_deletion",
        );
        refused(&["dm.blkdiscard=2"], "dm.blkdiscard");
        refused(
            &["dm.xfs_nospace_max_retries=-1"],
            "dm.xfs_nospace_max_retries",
        );
        refused(
            &["dm.fs=ext4", "dm.xfs_nospace_max_retries=1"],
            "dm.xfs_nospace_max_retries",
        );
        refused(&["dm.unknown=1"], "dm.unknown");
        let e = parse(&["dm.fs=xfs"], false).unwrap_err();
        assert!(e.contains("dm.fs"), "{e}");
    }
}
