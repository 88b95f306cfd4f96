//! The trait every storage driver implements, and the types it sees.
//!
//! The core owns the snapshot metadata, the checks of containerd's semantics and the order of
//! changes that keeps a crash harmless; a driver owns only its storage: what a snapshot id is on
//! disk (directories, thin devices, branches), how it mounts, and what it uses.

use std::collections::BTreeSet;

use strata_proto::snapshots::Kind as WireKind;
use strata_proto::storage::CapabilitiesResponse;
use strata_proto::types::Mount;

use crate::error::Result;

/// What kind of snapshot a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read-only snapshot of a committed parent; never committed.
    View,
    /// A writable snapshot that can be committed.
    Active,
    /// An immutable snapshot that can be a parent.
    Committed,
}

impl Kind {
    /// The kind from its wire value. Like containerd's proxy, anything that is neither Active
    /// nor View is Committed.
    pub fn from_wire(v: i32) -> Kind {
        match WireKind::try_from(v) {
            Ok(WireKind::View) => Kind::View,
            Ok(WireKind::Active) => Kind::Active,
            _ => Kind::Committed,
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> WireKind {
        match self {
            Kind::View => WireKind::View,
            Kind::Active => WireKind::Active,
            Kind::Committed => WireKind::Committed,
        }
    }

    /// The name used by List filters (`kind==active`).
    pub fn filter_name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

impl From<Kind> for i32 {
    fn from(k: Kind) -> i32 {
        k.to_wire() as i32
    }
}

/// A snapshot as a driver sees it: its id, kind and the ids of its parents.
#[derive(Debug, Clone, Copy)]
pub struct Snap<'a> {
    /// The snapshot's id (never reused).
    pub id: u64,
    /// Its kind.
    pub kind: Kind,
    /// The ids of its committed parents, nearest first (empty: no parent).
    pub parents: &'a [u64],
}

/// Disk usage of one snapshot's own storage (not its parents').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes used.
    pub size: i64,
    /// Inodes used.
    pub inodes: i64,
}

/// A storage driver.
///
/// The core calls these with its lock held for the mutating calls (`create`, `commit`,
/// `check_remove`), so a driver sees one change at a time; `mounts`, `usage`, `status` and the
/// storage removal after a Remove may run concurrently with anything.
///
/// Order of calls and what a crash leaves:
/// - Prepare/View: `create` (storage made), then the metadata is written and flushed. A crash
///   between them leaves storage that no metadata names; `cleanup` removes it.
/// - Commit: `commit`, then the metadata changes kind and name.
/// - Remove: `check_remove`, then the metadata is removed and flushed, then `remove`. A crash
///   before `remove` finishes leaves storage for `cleanup`.
pub trait Snapshotter: Send + Sync + 'static {
    /// The driver's name, e.g. "overlay2".
    fn name(&self) -> &'static str;

    /// Makes the storage of a new active snapshot or view.
    fn create(&self, snap: &Snap<'_>) -> Result<()>;

    /// The mounts of an active snapshot or view (the same every time).
    fn mounts(&self, snap: &Snap<'_>) -> Result<Vec<Mount>>;

    /// Called before an active snapshot becomes committed.
    fn commit(&self, _snap: &Snap<'_>) -> Result<()> {
        Ok(())
    }

    /// Refuses a Remove the driver cannot carry out (e.g. a busy device).
    fn check_remove(&self, _snap: &Snap<'_>) -> Result<()> {
        Ok(())
    }

    /// Removes the storage of a snapshot whose metadata is gone. Failures are logged by the
    /// core and the storage is left for `cleanup`.
    fn remove(&self, id: u64) -> Result<()>;

    /// The snapshot's own usage.
    fn usage(&self, snap: &Snap<'_>) -> Result<Usage>;

    /// Removes all storage whose id is not in `live`.
    fn cleanup(&self, live: &BTreeSet<u64>) -> Result<()>;

    /// Ordered status rows for `strata info`; `snapshots` is how many snapshots exist.
    fn status(&self, snapshots: usize) -> Result<Vec<(String, String)>>;

    /// What the driver can do.
    fn capabilities(&self) -> CapabilitiesResponse;
}
