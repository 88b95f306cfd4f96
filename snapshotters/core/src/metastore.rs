//! The metadata of every snapshot, in sled.
//!
//! One key space holds active snapshots, views and committed snapshots alike (containerd's
//! rule: a key may not equal a committed name). Everything lives in one sled tree, `meta`,
//! under prefixed keys, so that every change is one atomic sled batch:
//!
//! - `s<key or name>` → [`Record`] (protobuf-encoded);
//! - `c<parent>\0<child key or name>` → empty: a parent's children, found without a scan, so a
//!   parent is never removed;
//! - `i<id, u64 big-endian>` → key or name: the ids that exist, for Cleanup;
//! - `n` → the end of the block of ids handed out so far (u64 big-endian).
//!
//! The methods that check before they write (`insert`, `commit`, `remove`) are atomic only
//! under the caller's lock: [`crate::core::Core`] holds one around every mutation.
//!
//! Every change is applied to sled and appended to the [`crate::journal`] before the method
//! returns: from then on it survives `kill -9`. A background thread makes the changes durable
//! across power loss every [`crate::journal::SYNC_INTERVAL`]; [`MetaStore::sync`] does it now.
//!
//! Ids are handed out from blocks of [`ID_BLOCK`]: the end of the current block is made durable
//! before any id in it is used, so an id is never handed out twice, even when the process is
//! killed after a driver made storage for an id whose metadata was never written. (sled's own
//! `generate_id` can repeat ids after a crash, so it is not used.)

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use prost::Message;
use prost_types::Timestamp;

use crate::error::{Error, IoContext, Result};
use crate::journal::{self, Batch, Journal, Op};
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

const SNAPSHOT: u8 = b's';
const CHILD: u8 = b'c';
const ID: u8 = b'i';
const NEXT_ID_LIMIT: &[u8] = b"n";

fn snapshot_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(SNAPSHOT);
    k.extend_from_slice(key.as_bytes());
    k
}

fn children_prefix(parent: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(parent.len() + 2);
    k.push(CHILD);
    k.extend_from_slice(parent.as_bytes());
    k.push(0);
    k
}

fn child_key(parent: &str, child: &str) -> Vec<u8> {
    let mut k = children_prefix(parent);
    k.extend_from_slice(child.as_bytes());
    k
}

fn id_key(id: u64) -> [u8; 9] {
    let mut k = [ID; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    Record::decode(bytes).map_err(|source| Error::Corrupt {
        key: key.to_string(),
        source,
    })
}

/// The sled-backed snapshot metadata.
#[derive(Debug, Clone)]
pub struct MetaStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    dir: PathBuf,
    journal_dir: PathBuf,
    journal: Mutex<Journal>,
    /// The next id to hand out and the end of the durable block it is in.
    next_id: Mutex<(u64, u64)>,
}

fn set(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op {
        key,
        value: Some(value),
    }
}

fn del(key: Vec<u8>) -> Op {
    Op { key, value: None }
}

impl Inner {
    fn apply(&self, batch: Batch) -> Result<()> {
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        self.tree.apply_batch(batch.to_sled())?;
        j.append(&batch)
            .ctx("append to the metadata journal in", &self.journal_dir)
    }

    fn sync(&self) -> Result<()> {
        let old = {
            let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            if !j.is_dirty() {
                return Ok(());
            }
            j.rotate()
                .ctx("start a new metadata journal in", &self.journal_dir)?
        };
        // The storage a change names reaches the disk before the change does.
        let d = std::fs::File::open(&self.dir).ctx("open", &self.dir)?;
        // SAFETY: syncfs on a directory fd we own for the duration of the call.
        if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
            return Err(Error::io(
                "syncfs",
                &self.dir,
                std::io::Error::last_os_error(),
            ));
        }
        self.db.flush()?;
        journal::remove_upto(&self.journal_dir, old)
            .ctx("remove old metadata journals in", &self.journal_dir)
    }
}

/// Makes the store durable every SYNC_INTERVAL until it is dropped.
fn sync_thread(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(journal::SYNC_INTERVAL);
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.sync() {
            tracing::error!(%e, "making the metadata durable failed; will retry");
        }
    }
}

impl MetaStore {
    /// Opens (or creates) the store in `dir` (and its journal in `dir` + `.journal`), replays
    /// what the journal holds, and starts the thread that makes changes durable.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = crate::sleddb::open(dir, sled::Config::new().mode(sled::Mode::HighThroughput))?;
        let tree = db.open_tree("meta")?;
        let journal_dir = dir.with_extension("journal");
        let (journal, replayed) = Journal::open(&journal_dir, |b| tree.apply_batch(b.to_sled()))
            .ctx("replay the metadata journal in", &journal_dir)?;
        if replayed > 0 {
            db.flush()?;
            tracing::info!(replayed, "metadata: replayed changes from the journal");
        }
        journal::remove_before(&journal_dir, &journal)
            .ctx("remove old metadata journals in", &journal_dir)?;
        let be = |v: &[u8]| <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes);
        let stored = tree.get(NEXT_ID_LIMIT)?.and_then(|v| be(&v)).unwrap_or(0);
        let in_use = tree
            .scan_prefix([ID])
            .next_back()
            .transpose()?
            .and_then(|(k, _)| be(&k[1..]))
            .unwrap_or(0);
        // Ids start at 1, and never at or below an id that was handed out.
        let next = stored.max(in_use + 1).max(1);
        let inner = Arc::new(Inner {
            db,
            tree,
            dir: dir.to_path_buf(),
            journal_dir,
            journal: Mutex::new(journal),
            next_id: Mutex::new((next, next)),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("metadata-sync".into())
            .spawn(move || sync_thread(weak))
            .map_err(|e| Error::io("start the metadata sync thread for", dir, e))?;
        Ok(MetaStore { inner })
    }

    /// Makes every change so far durable across power loss.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// A fresh id, never handed out before (also across restarts and crashes).
    pub fn next_id(&self) -> Result<u64> {
        let mut g = self.inner.next_id.lock().unwrap_or_else(|p| p.into_inner());
        let (next, limit) = *g;
        if next >= limit {
            // Written straight to sled and flushed: the block must be durable before its ids
            // name storage, even across power loss.
            let new_limit = next + ID_BLOCK;
            self.inner
                .tree
                .insert(NEXT_ID_LIMIT, &new_limit.to_be_bytes())?;
            self.inner.db.flush()?;
            *g = (next, new_limit);
        }
        g.0 += 1;
        Ok(next)
    }

    /// The record of `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        self.inner
            .tree
            .get(snapshot_key(key))?
            .map(|v| decode(key, &v))
            .transpose()
    }

    /// Whether `key` has children.
    pub fn has_children(&self, key: &str) -> Result<bool> {
        Ok(self
            .inner
            .tree
            .scan_prefix(children_prefix(key))
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
        if self.get(key)?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "snapshot {key}: already exists"
            )));
        }
        let mut ops = vec![set(snapshot_key(key), rec.encode_to_vec())];
        if !rec.parent.is_empty() {
            ops.push(set(child_key(&rec.parent, key), Vec::new()));
        }
        ops.push(set(id_key(rec.id).to_vec(), key.as_bytes().to_vec()));
        self.inner.apply(Batch { ops })
    }

    /// Renames the active snapshot `key` to the committed snapshot `name` with `rec`.
    pub fn commit(&self, key: &str, name: &str, rec: &Record) -> Result<()> {
        if self.get(name)?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "committed snapshot {name}: already exists"
            )));
        }
        if self.get(key)?.is_none() {
            return Err(Error::NotFound(format!("snapshot {key}: not found")));
        }
        let mut ops = vec![
            del(snapshot_key(key)),
            set(snapshot_key(name), rec.encode_to_vec()),
        ];
        if !rec.parent.is_empty() {
            ops.push(del(child_key(&rec.parent, key)));
            ops.push(set(child_key(&rec.parent, name), Vec::new()));
        }
        ops.push(set(id_key(rec.id).to_vec(), name.as_bytes().to_vec()));
        self.inner.apply(Batch { ops })
    }

    /// Replaces the record of an existing snapshot (same id and parent).
    pub fn replace(&self, key: &str, rec: &Record) -> Result<()> {
        self.inner.apply(Batch {
            ops: vec![set(snapshot_key(key), rec.encode_to_vec())],
        })
    }

    /// Removes `key`; fails if it has children.
    pub fn remove(&self, key: &str, rec: &Record) -> Result<()> {
        if self.has_children(key)? {
            return Err(Error::FailedPrecondition(format!(
                "failed to remove snapshot {key}: cannot remove snapshot with child"
            )));
        }
        let mut ops = vec![del(snapshot_key(key))];
        if !rec.parent.is_empty() {
            ops.push(del(child_key(&rec.parent, key)));
        }
        ops.push(del(id_key(rec.id).to_vec()));
        self.inner.apply(Batch { ops })
    }

    /// Every snapshot, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(String, Record)>> + '_ {
        self.inner.tree.scan_prefix([SNAPSHOT]).map(|kv| {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k[1..]).into_owned();
            let rec = decode(&key, &v)?;
            Ok((key, rec))
        })
    }

    /// The ids of every snapshot that exists.
    pub fn live_ids(&self) -> Result<BTreeSet<u64>> {
        let mut ids = BTreeSet::new();
        for kv in self.inner.tree.scan_prefix([ID]) {
            let (k, _) = kv?;
            match <[u8; 8]>::try_from(&k[1..]) {
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
        self.inner.tree.scan_prefix([ID]).count()
    }

    /// Whether no snapshot exists.
    pub fn is_empty(&self) -> bool {
        self.inner.tree.scan_prefix([ID]).next().is_none()
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
            m.sync().unwrap();
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
