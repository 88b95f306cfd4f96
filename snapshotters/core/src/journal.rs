//! The metadata journal: what makes a change safe from `kill -9` the moment it is made, without
//! waiting for a disk flush.
//!
//! sled keeps recent writes in its own buffers until a flush, and a flush waits for the disk
//! (about 0.1 ms here, per change). Instead, every change to the metadata is also appended to a
//! journal file with one `write(2)`: once that returns, the change is in the kernel and survives
//! the death of the process. A background thread makes everything durable every
//! [`SYNC_INTERVAL`]: it syncs the plugin's filesystem (so the storage a change names is on disk
//! before the change is), flushes sled, and starts a new journal. On start, the journals left
//! behind are replayed into sled in order; replay is idempotent, since entries set or delete
//! whole values.
//!
//! Across a power loss, the changes of the last [`SYNC_INTERVAL`] may be lost; the metadata that
//! survives still only names storage that exists, because the storage is synced first.
//!
//! A record is `len: u32 LE | checksum: u64 LE (FNV-1a of the payload) | payload`; the payload is
//! a protobuf [`Batch`]. A torn record at the end of a journal (a write cut short) is ignored.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;

/// How often the background thread makes the metadata durable.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// One change to one key: a value to set, or none to delete.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Op {
    /// The key in the metadata tree.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The new value; absent to delete.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub value: Option<Vec<u8>>,
}

/// Changes applied together.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Batch {
    /// The changes, in order.
    #[prost(message, repeated, tag = "1")]
    pub ops: Vec<Op>,
}

impl Batch {
    /// The same changes as a sled batch.
    pub fn to_sled(&self) -> sled::Batch {
        let mut b = sled::Batch::default();
        for op in &self.ops {
            match &op.value {
                Some(v) => b.insert(op.key.as_slice(), v.as_slice()),
                None => b.remove(op.key.as_slice()),
            }
        }
        b
    }
}

fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The journal files in `dir`, oldest first.
fn journals(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("journal."))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every complete record of a journal file.
fn read_records(path: &Path) -> io::Result<Vec<Batch>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= data.len() {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&data[at + 4..at + 12]);
        let end = at + 12 + len;
        if end > data.len() || checksum(&data[at + 12..end]) != u64::from_le_bytes(sum) {
            tracing::warn!(path = %path.display(), offset = at, "journal: ignoring a torn record at the end");
            break;
        }
        match Batch::decode(&data[at + 12..end]) {
            Ok(b) => out.push(b),
            Err(e) => {
                tracing::warn!(path = %path.display(), offset = at, %e, "journal: ignoring an undecodable record");
                break;
            }
        }
        at = end;
    }
    Ok(out)
}

/// The current journal file.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Whether anything was appended since the last rotation.
    dirty: bool,
}

impl Journal {
    /// Replays the journals in `dir` with `apply`, then starts a new one. The caller must make
    /// the replayed changes durable before it calls [`Journal::remove_older`].
    pub fn open(
        dir: &Path,
        mut apply: impl FnMut(&Batch) -> sled::Result<()>,
    ) -> io::Result<(Self, usize)> {
        fs::create_dir_all(dir)?;
        let old = journals(dir)?;
        let mut replayed = 0;
        for (_, path) in &old {
            for batch in read_records(path)? {
                apply(&batch).map_err(io::Error::other)?;
                replayed += 1;
            }
        }
        let seq = old.last().map_or(1, |(s, _)| s + 1);
        let file = Self::create(dir, seq)?;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                seq,
                file,
                dirty: false,
            },
            replayed,
        ))
    }

    fn create(dir: &Path, seq: u64) -> io::Result<File> {
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(dir.join(format!("journal.{seq}")))
    }

    /// Appends a batch with one write(2).
    pub fn append(&mut self, batch: &Batch) -> io::Result<()> {
        let payload = batch.encode_to_vec();
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::other("journal record over 4 GiB"))?;
        let mut rec = Vec::with_capacity(12 + payload.len());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&checksum(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        self.file.write_all(&rec)?;
        self.dirty = true;
        Ok(())
    }

    /// Whether anything was appended since the last rotation.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Starts a new journal file; returns the sequence number of the last old one.
    pub fn rotate(&mut self) -> io::Result<u64> {
        let old = self.seq;
        self.file = Self::create(&self.dir, old + 1)?;
        self.seq = old + 1;
        self.dirty = false;
        Ok(old)
    }
}

/// Deletes the journals in `dir` up to and including `seq` (their changes are durable in sled).
pub fn remove_upto(dir: &Path, seq: u64) -> io::Result<()> {
    for (s, path) in journals(dir)? {
        if s <= seq {
            fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Deletes the journals in `dir` older than the current one of `journal`.
pub fn remove_before(dir: &Path, journal: &Journal) -> io::Result<()> {
    remove_upto(dir, journal.seq - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(k: &str, v: Option<&str>) -> Batch {
        Batch {
            ops: vec![Op {
                key: k.as_bytes().to_vec(),
                value: v.map(|v| v.as_bytes().to_vec()),
            }],
        }
    }

    #[test]
    fn replays_in_order_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, n) = Journal::open(dir.path(), |_| Ok(())).unwrap();
            assert_eq!(n, 0);
            j.append(&batch("a", Some("1"))).unwrap();
            j.rotate().unwrap();
            j.append(&batch("a", Some("2"))).unwrap();
            j.append(&batch("b", Some("x"))).unwrap();
            j.append(&batch("b", None)).unwrap();
        }
        // A write cut short at the end of the newest journal.
        let newest = journals(dir.path()).unwrap().last().unwrap().1.clone();
        let mut f = OpenOptions::new().append(true).open(&newest).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut seen = Vec::new();
        let (j, n) = Journal::open(dir.path(), |b| {
            seen.push(b.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 4);
        assert_eq!(seen[0], batch("a", Some("1")));
        assert_eq!(seen[3], batch("b", None));
        remove_before(dir.path(), &j).unwrap();
        assert_eq!(journals(dir.path()).unwrap().len(), 1);
    }
}
