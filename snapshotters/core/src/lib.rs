//! The core every Strata snapshotter plugin shares.
//!
//! A plugin is a process that serves containerd's snapshots API (so containerd can load it as a
//! proxy snapshotter), Strata's driver API and gRPC health on a unix socket. This crate has all
//! of it but the storage itself:
//!
//! - [`Snapshotter`]: the trait a storage driver implements (overlay2, aufs, devicemapper);
//! - [`metastore::MetaStore`]: snapshot metadata in sled, one key space for every kind;
//!   [`sleddb::open`] opens every sled store of the project, also after a kill mid-snapshot;
//! - [`core::Core`]: containerd's semantics and error codes, and the order of changes that
//!   makes a crash at any point harmless;
//! - [`filter`]: containerd's List filter language;
//! - [`service`]: the tonic services; [`plugin::main`]: the shared command line and server;
//! - [`mount`]: the mounter the engine and the tests use, which mounts overlays of any depth.
//!
//! A driver's `main` is one call (from `strata-overlay2`):
//!
//! ```text
//! fn main() -> ExitCode {
//!     plugin::main("overlay2", OPTIONS, |root, opts| Ok(Overlay2::open(root, opts)?))
//! }
//! ```

pub mod core;
pub mod error;
pub mod failpoint;
pub mod filter;
pub mod fsutil;
pub mod journal;
pub mod metastore;
pub mod mount;
pub mod options;
pub mod plugin;
pub mod service;
pub mod sleddb;
pub mod snapshotter;
pub mod xattr;

pub use error::{Error, Result};
pub use snapshotter::{Kind, Snap, Snapshotter, Usage};
