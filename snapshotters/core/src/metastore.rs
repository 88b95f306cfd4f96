//! The metadata of every snapshot, in sled.
//!
//! One key space holds active snapshots, views and committed snapshots alike (containerd's
//! rule: a key may not equal a committed name). Trees:
//!
//! - `snapshots`: key or name → [`Record`] (protobuf-encoded);
//! - `children`: `<parent>\0<child key or name>` → empty, to refuse removing a parent and to
//!   find a snapshot's children without a scan;
//! - `ids`: snapshot id (u64, big-endian) → key or name, for Cleanup and for drivers that name
//!   storage by id.
//!
//! - `meta`: `next-id-limit` → the end of the block of ids handed out so far (u64, big-endian).
//!
//! Every change that touches several trees is one sled transaction. Callers make a change
//! durable with [`MetaStore::flush`] before they reply.
//!
//! Ids are handed out from blocks of [`ID_BLOCK`]: the end of the current block is made durable
//! before any id in it is used, so an id is never handed out twice, even when the process is
//! killed after a driver made storage for an id whose metadata was never written. (sled's own
//! `generate_id` can repeat ids after a crash, so it is not used.)

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use prost::Message;
use prost_types::Timestamp;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::error::{Error, Result};
use crate::snapshotter::Kind;

/// A snapshot as stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// Stable id, never reused; drivers name their storage by it.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// [`Kind`] as its wire value.
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// The committed parent's name, "" for none.
    #[prost(string, tag = "3")]
    pub parent: String,
    /// The snapshot's labels.
    #[prost(map = "string, string", tag = "4")]
    pub labels: HashMap<String, String>,
    /// Creation time.
    #[prost(message, optional, tag = "5")]
    pub created: Option<Timestamp>,
    /// Last update time.
    #[prost(message, optional, tag = "6")]
    pub updated: Option<Timestamp>,
}

impl Record {
    /// The snapshot's kind.
    pub fn kind(&self) -> Kind {
        Kind::from_wire(self.kind)
    }
}

/// The current time as a protobuf timestamp.
pub fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// How many ids are reserved with one durable write.
pub const ID_BLOCK: u64 = 1024;
const NEXT_ID_LIMIT: &[u8] = b"next-id-limit";

/// The sled-backed snapshot metadata.
#[derive(Debug)]
pub struct MetaStore {
    db: sled::Db,
    snapshots: sled::Tree,
    children: sled::Tree,
    ids: sled::Tree,
    meta: sled::Tree,
    /// The next id to hand out and the end of the durable block it is in.
    next_id: Mutex<(u64, u64)>,
}

fn child_key(parent: &str, child: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(parent.len() + child.len() + 1);
    k.extend_from_slice(parent.as_bytes());
    k.push(0);
    k.extend_from_slice(child.as_bytes());
    k
}

fn abort(e: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(e)
}

fn tx_result<T>(r: std::result::Result<T, TransactionError<Error>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Db(e),
    })
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    Record::decode(bytes).map_err(|source| Error::Corrupt {
        key: key.to_string(),
        source,
    })
}

impl MetaStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let ids = db.open_tree("ids")?;
        let meta = db.open_tree("meta")?;
        let stored = meta
            .get(NEXT_ID_LIMIT)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        // Ids start at 1, and never at or below an id in use.
        let in_use = ids
            .last()?
            .and_then(|(k, _)| <[u8; 8]>::try_from(k.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let next = stored.max(in_use + 1).max(1);
        Ok(MetaStore {
            snapshots: db.open_tree("snapshots")?,
            children: db.open_tree("children")?,
            ids,
            meta,
            next_id: Mutex::new((next, next)),
            db,
        })
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// A fresh id, never handed out before (also across restarts and crashes).
    pub fn next_id(&self) -> Result<u64> {
        let mut g = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
        let (next, limit) = *g;
        if next >= limit {
            let new_limit = next + ID_BLOCK;
            self.meta.insert(NEXT_ID_LIMIT, &new_limit.to_be_bytes())?;
            self.db.flush()?;
            *g = (next, new_limit);
        }
        g.0 += 1;
        Ok(next)
    }

    /// The record of `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        self.snapshots
            .get(key.as_bytes())?
            .map(|v| decode(key, &v))
            .transpose()
    }

    /// Whether `key` has children.
    pub fn has_children(&self, key: &str) -> Result<bool> {
        let mut prefix = key.as_bytes().to_vec();
        prefix.push(0);
        Ok(self
            .children
            .scan_prefix(prefix)
            .next()
            .transpose()?
            .is_some())
    }

    /// The ids of `parent` and its ancestors, nearest first.
    pub fn parent_ids(&self, parent: &str) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut next = parent.to_string();
        while !next.is_empty() {
            let rec = self.get(&next)?.ok_or_else(|| {
                Error::NotFound(format!("parent snapshot {next:?} of the chain: not found"))
            })?;
            ids.push(rec.id);
            next = rec.parent;
        }
        Ok(ids)
    }

    /// Inserts a new snapshot under `key`; fails if the key is taken.
    pub fn insert(&self, key: &str, rec: &Record) -> Result<()> {
        let bytes = rec.encode_to_vec();
        tx_result(
            (&self.snapshots, &self.children, &self.ids).transaction(|(s, c, i)| {
                if s.get(key.as_bytes())?.is_some() {
                    return Err(abort(Error::AlreadyExists(format!(
                        "snapshot {key}: already exists"
                    ))));
                }
                s.insert(key.as_bytes(), bytes.as_slice())?;
                if !rec.parent.is_empty() {
                    c.insert(child_key(&rec.parent, key), &[])?;
                }
                i.insert(&rec.id.to_be_bytes(), key.as_bytes())?;
                Ok(())
            }),
        )
    }

    /// Renames the active snapshot `key` to the committed snapshot `name` with `rec`.
    pub fn commit(&self, key: &str, name: &str, rec: &Record) -> Result<()> {
        let bytes = rec.encode_to_vec();
        tx_result(
            (&self.snapshots, &self.children, &self.ids).transaction(|(s, c, i)| {
                if s.get(name.as_bytes())?.is_some() {
                    return Err(abort(Error::AlreadyExists(format!(
                        "committed snapshot {name}: already exists"
                    ))));
                }
                if s.remove(key.as_bytes())?.is_none() {
                    return Err(abort(Error::NotFound(format!("snapshot {key}: not found"))));
                }
                s.insert(name.as_bytes(), bytes.as_slice())?;
                if !rec.parent.is_empty() {
                    c.remove(child_key(&rec.parent, key))?;
                    c.insert(child_key(&rec.parent, name), &[])?;
                }
                i.insert(&rec.id.to_be_bytes(), name.as_bytes())?;
                Ok(())
            }),
        )
    }

    /// Replaces the record of an existing snapshot (same id and parent).
    pub fn replace(&self, key: &str, rec: &Record) -> Result<()> {
        self.snapshots.insert(key.as_bytes(), rec.encode_to_vec())?;
        Ok(())
    }

    /// Removes `key`; fails if it has children.
    pub fn remove(&self, key: &str, rec: &Record) -> Result<()> {
        let mut prefix = key.as_bytes().to_vec();
        prefix.push(0);
        // The children tree is read outside the transaction, so the check and the delete are
        // atomic only under the caller's lock (see `Core`), which every mutation holds.
        if self
            .children
            .scan_prefix(&prefix)
            .next()
            .transpose()?
            .is_some()
        {
            return Err(Error::FailedPrecondition(format!(
                "failed to remove snapshot {key}: cannot remove snapshot with child"
            )));
        }
        tx_result(
            (&self.snapshots, &self.children, &self.ids).transaction(|(s, c, i)| {
                s.remove(key.as_bytes())?;
                if !rec.parent.is_empty() {
                    c.remove(child_key(&rec.parent, key))?;
                }
                i.remove(&rec.id.to_be_bytes())?;
                Ok(())
            }),
        )
    }

    /// Every snapshot, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(String, Record)>> + '_ {
        self.snapshots.iter().map(|kv| {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let rec = decode(&key, &v)?;
            Ok((key, rec))
        })
    }

    /// The ids of every snapshot that exists.
    pub fn live_ids(&self) -> Result<BTreeSet<u64>> {
        let mut ids = BTreeSet::new();
        for kv in self.ids.iter() {
            let (k, _) = kv?;
            match <[u8; 8]>::try_from(k.as_ref()) {
                Ok(raw) => {
                    ids.insert(u64::from_be_bytes(raw));
                }
                Err(_) => {
                    tracing::warn!(key = ?k, "metadata: ignoring an id entry that is not 8 bytes")
                }
            }
        }
        Ok(ids)
    }

    /// How many snapshots exist.
    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// Whether no snapshot exists.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, kind: Kind, parent: &str) -> Record {
        let t = now();
        Record {
            id,
            kind: kind as i32,
            parent: parent.into(),
            labels: HashMap::new(),
            created: Some(t),
            updated: Some(t),
        }
    }

    #[test]
    fn one_key_space_and_children() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(&dir.path().join("db")).unwrap();
        m.insert("a", &rec(1, Kind::Active, "")).unwrap();
        assert!(matches!(
            m.insert("a", &rec(2, Kind::View, "")),
            Err(Error::AlreadyExists(_))
        ));
        m.commit("a", "c", &rec(1, Kind::Committed, "")).unwrap();
        assert!(m.get("a").unwrap().is_none());
        m.insert("b", &rec(3, Kind::Active, "c")).unwrap();
        assert!(matches!(
            m.commit("b", "c", &rec(3, Kind::Committed, "c")),
            Err(Error::AlreadyExists(_))
        ));
        assert!(m.has_children("c").unwrap());
        let err = m.remove("c", &m.get("c").unwrap().unwrap()).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)) && err.to_string().contains("remove"));
        m.commit("b", "d", &rec(3, Kind::Committed, "c")).unwrap();
        assert_eq!(m.parent_ids("d").unwrap(), vec![3, 1]);
        m.remove("d", &m.get("d").unwrap().unwrap()).unwrap();
        m.remove("c", &m.get("c").unwrap().unwrap()).unwrap();
        assert!(m.is_empty());
        assert!(m.live_ids().unwrap().is_empty());
    }

    #[test]
    fn ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let m = MetaStore::open(&dir.path().join("db")).unwrap();
            let id = m.next_id().unwrap();
            m.insert("x", &rec(id, Kind::Active, "")).unwrap();
            m.flush().unwrap();
            id
        };
        let m = MetaStore::open(&dir.path().join("db")).unwrap();
        assert!(m.next_id().unwrap() > first);
        assert_eq!(m.get("x").unwrap().unwrap().id, first);
    }

    #[test]
    fn ids_never_repeat_after_unflushed_use() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = BTreeSet::new();
        for _ in 0..3 {
            // Hand out ids without writing or flushing anything else, as a Prepare killed after
            // making storage would, then "crash" (drop without flushing).
            let m = MetaStore::open(&dir.path().join("db")).unwrap();
            for _ in 0..(ID_BLOCK + 10) {
                assert!(
                    seen.insert(m.next_id().unwrap()),
                    "an id was handed out twice"
                );
            }
        }
    }
}
