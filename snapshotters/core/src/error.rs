//! The errors of the snapshot core and how they cross the gRPC edge.
//!
//! The semantic errors carry containerd's status codes (SNAPSHOTS-API.md §1.4): a client of a
//! Strata plugin sees the same code for the same mistake as a client of containerd's own
//! snapshotters.

use std::io;
use std::path::PathBuf;

/// Everything a snapshot operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key, name or parent does not exist (gRPC NotFound).
    #[error("{0}")]
    NotFound(String),
    /// The key or name is taken (gRPC AlreadyExists).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request itself is wrong (gRPC InvalidArgument).
    #[error("{0}")]
    InvalidArgument(String),
    /// The request does not fit the snapshot's state (gRPC FailedPrecondition).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The driver cannot do this here (gRPC Unimplemented).
    #[error("{0}")]
    Unimplemented(String),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Db(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("metadata store: corrupt record for {key:?}: {source}")]
    Corrupt {
        /// The key whose record is corrupt.
        key: String,
        /// What the decoder said.
        source: prost::DecodeError,
    },
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] crate::mount::MountError),
    /// A driver-specific failure that fits none of the above.
    #[error("{driver}: {message}")]
    Driver {
        /// The driver's name.
        driver: &'static str,
        /// What went wrong, for a person.
        message: String,
    },
}

/// The result type of the snapshot core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with its operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The gRPC status code this error maps to.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::Unimplemented(_) => tonic::Code::Unimplemented,
            Error::Db(_)
            | Error::Corrupt { .. }
            | Error::Io { .. }
            | Error::Mount(_)
            | Error::Driver { .. } => tonic::Code::Unknown,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        tonic::Status::new(err.code(), err.to_string())
    }
}

/// Extension to attach an operation and a path to `io::Result`s.
pub trait IoContext<T> {
    /// Turns the I/O error into [`Error::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
