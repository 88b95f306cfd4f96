//! The errors of the devicemapper driver and how they reach the snapshot core.

use std::io;
use std::path::PathBuf;

use strata_snapshotter::options::OptionError;

/// Everything the driver can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A device-mapper ioctl failed.
    #[error("device-mapper {op} {target}: {source}")]
    Dm {
        /// What was being done, e.g. "create device".
        op: &'static str,
        /// On which device (or message).
        target: String,
        /// The library's error (carries the errno).
        source: devicemapper::DmError,
    },
    /// A file or device operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A helper program (mkfs, resize2fs, xfs_growfs) failed.
    #[error("{program} on {}: {message}", path.display())]
    Command {
        /// The program.
        program: &'static str,
        /// The device or directory it worked on.
        path: PathBuf,
        /// Its exit status and standard error.
        message: String,
    },
    /// The pool cannot be used as it is.
    #[error("thin pool {pool}: {reason}")]
    Pool {
        /// The pool's name.
        pool: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The pool has less free space than `dm.min_free_space`.
    #[error("thin pool {pool} is short of space: {what} {free} of {total} bytes free ({pct:.1}%), below dm.min_free_space={min}%; remove snapshots or grow the pool")]
    NoSpace {
        /// The pool's name.
        pool: String,
        /// "data" or "metadata".
        what: &'static str,
        /// Free bytes.
        free: u64,
        /// Total bytes.
        total: u64,
        /// Free percentage.
        pct: f64,
        /// The configured minimum.
        min: u8,
    },
    /// A device is open (mounted or held by a process) and cannot be removed now.
    #[error("device {name} is busy ({open} open handles): unmount it first, or enable dm.use_deferred_removal and dm.use_deferred_deletion")]
    Busy {
        /// The device's name.
        name: String,
        /// Its open count.
        open: i32,
    },
    /// The driver's device store failed.
    #[error("device store: {0}")]
    Store(#[from] sled::Error),
    /// A record of the device store could not be read.
    #[error("device store: corrupt record {key:?}: {source}")]
    Record {
        /// The key.
        key: String,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// An option cannot be honoured on this pool.
    #[error(transparent)]
    Option(#[from] OptionError),
}

/// The driver's result type.
pub type DevResult<T> = std::result::Result<T, DevError>;

impl DevError {
    /// An I/O error with its operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DevError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The errno of a failed ioctl, if that is what this is.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            DevError::Dm {
                source: devicemapper::DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, e)),
                ..
            } => Some(nix::errno::Errno::from_raw(**e as i32)),
            _ => None,
        }
    }
}

impl From<DevError> for strata_snapshotter::Error {
    fn from(e: DevError) -> Self {
        match e {
            DevError::NoSpace { .. } | DevError::Busy { .. } => {
                strata_snapshotter::Error::FailedPrecondition(e.to_string())
            }
            DevError::Io { op, path, source } => strata_snapshotter::Error::Io { op, path, source },
            other => strata_snapshotter::Error::Driver {
                driver: "devicemapper",
                message: other.to_string(),
            },
        }
    }
}

/// Attaches an operation and a path to `io::Result`s.
pub trait IoCtx<T> {
    /// Turns the error into [`DevError::Io`].
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> DevResult<T>;
}

impl<T> IoCtx<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> DevResult<T> {
        self.map_err(|e| DevError::io(op, path, e))
    }
}
