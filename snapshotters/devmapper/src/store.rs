//! The driver's own sled database (`<root>/devicemapper/metadata.db`): which thin device each
//! snapshot has, the base device, the pool's expected transaction id, devices waiting for
//! deferred deletion, and the one device transaction in flight.
//!
//! Keys (one tree, so a batch changes several atomically):
//!
//! ```text
//! dev/<snapshot id, 20 digits>  DeviceRec  a snapshot's thin device
//! base                          DeviceRec  the base device
//! deferred/<thin id, 10 digits> DeviceRec  removed, to be deleted when no longer busy
//! txn                           Txn        the device change in flight (at most one)
//! tid                           u64        the pool transaction id after the last change
//! next_thin                     u32        the next thin id to use
//! fs                            string     the base's filesystem (fixed at the first start)
//! ```

use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{DevError, DevResult};

/// A thin device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRec {
    /// Its id in the pool.
    pub thin: u32,
    /// Its size in bytes.
    pub size: u64,
    /// Its mapped bytes when it was last deactivated (for Usage of committed snapshots).
    #[serde(default)]
    pub mapped: u64,
    /// Its used inodes when it was last deactivated.
    #[serde(default)]
    pub inodes: u64,
}

/// A device change in flight: written (and flushed) before the pool is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A new thin device (a snapshot of `origin`, or an empty one) for snapshot `snap`
    /// (`None`: the base). Rolled back after a crash.
    Create {
        /// The snapshot, or `None` for the base device.
        snap: Option<u64>,
        /// The new thin id.
        thin: u32,
        /// The origin's thin id.
        origin: Option<u32>,
    },
    /// Deletion of a thin device (of snapshot `snap`, or a deferred one). Rolled forward.
    Delete {
        /// The snapshot whose record goes with it.
        snap: Option<u64>,
        /// The thin id.
        thin: u32,
    },
}

/// The transaction record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// What is being changed.
    pub op: Op,
    /// The pool's transaction id before the change.
    pub tid: u64,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
}

fn dev_key(snap: u64) -> String {
    format!("dev/{snap:020}")
}

fn deferred_key(thin: u32) -> String {
    format!("deferred/{thin:010}")
}

impl Store {
    /// Opens (or makes) the store at `path`.
    pub fn open(path: &Path) -> DevResult<Store> {
        let db = strata_snapshotter::sleddb::open(path, sled::Config::new())?;
        Ok(Store { db })
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> DevResult<Option<T>> {
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| DevError::Record {
                    key: key.to_string(),
                    source,
                }),
        }
    }

    fn encode<T: Serialize>(key: &str, v: &T) -> DevResult<Vec<u8>> {
        serde_json::to_vec(v).map_err(|source| DevError::Record {
            key: key.to_string(),
            source,
        })
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &str) -> DevResult<Vec<(String, T)>> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(prefix) {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let rec = serde_json::from_slice(&v).map_err(|source| DevError::Record {
                key: key.clone(),
                source,
            })?;
            out.push((key[prefix.len()..].to_string(), rec));
        }
        Ok(out)
    }

    /// Whether the store is new (no base device yet, no transaction).
    pub fn is_empty(&self) -> DevResult<bool> {
        Ok(self.get::<u64>("tid")?.is_none() && self.txn()?.is_none())
    }

    /// The pool transaction id after the last change.
    pub fn tid(&self) -> DevResult<u64> {
        Ok(self.get("tid")?.unwrap_or(0))
    }

    /// The filesystem recorded at the first start.
    pub fn fs(&self) -> DevResult<Option<String>> {
        self.get("fs")
    }

    /// Records the filesystem.
    pub fn set_fs(&self, fs: &str) -> DevResult<()> {
        self.db.insert("fs", Self::encode("fs", &fs)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// The transaction in flight.
    pub fn txn(&self) -> DevResult<Option<Txn>> {
        self.get("txn")
    }

    /// The base device.
    pub fn base(&self) -> DevResult<Option<DeviceRec>> {
        self.get("base")
    }

    /// A snapshot's device.
    pub fn device(&self, snap: u64) -> DevResult<Option<DeviceRec>> {
        self.get(&dev_key(snap))
    }

    /// Every snapshot's device.
    pub fn devices(&self) -> DevResult<Vec<(u64, DeviceRec)>> {
        Ok(self
            .scan::<DeviceRec>("dev/")?
            .into_iter()
            .filter_map(|(k, v)| k.parse().ok().map(|id| (id, v)))
            .collect())
    }

    /// Devices waiting for deferred deletion.
    pub fn deferred(&self) -> DevResult<Vec<DeviceRec>> {
        Ok(self
            .scan::<DeviceRec>("deferred/")?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Updates a snapshot's device record (no transaction: its mapped size).
    pub fn put_device(&self, snap: u64, rec: &DeviceRec) -> DevResult<()> {
        let key = dev_key(snap);
        self.db.insert(key.as_bytes(), Self::encode(&key, rec)?)?;
        Ok(())
    }

    /// Updates the base record (no transaction: its size after growing).
    pub fn put_base(&self, rec: &DeviceRec) -> DevResult<()> {
        self.db.insert("base", Self::encode("base", rec)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Starts a transaction: records it (with a fresh thin id for a create) and flushes.
    pub fn begin(&self, txn: &Txn) -> DevResult<()> {
        let mut b = sled::Batch::default();
        b.insert("txn", Self::encode("txn", txn)?);
        if let Op::Create { thin, .. } = txn.op {
            b.insert("next_thin", Self::encode("next_thin", &(thin + 1))?);
        }
        self.db.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// The next free thin id.
    pub fn next_thin(&self) -> DevResult<u32> {
        Ok(self.get("next_thin")?.unwrap_or(1))
    }

    /// Ends the transaction: `tid` is the pool's transaction id now; `put` records a device
    /// (a created one), `drop_snap` forgets a snapshot's device, `deferred` adds (`Some(true)`)
    /// or removes (`Some(false)`) a deferred deletion.
    pub fn finish(&self, tid: u64, change: Finish) -> DevResult<()> {
        let mut b = sled::Batch::default();
        b.remove("txn");
        b.insert("tid", Self::encode("tid", &tid)?);
        match change {
            Finish::Nothing => {}
            Finish::Created { snap: Some(s), rec } => {
                let key = dev_key(s);
                b.insert(key.as_bytes(), Self::encode(&key, &rec)?);
            }
            Finish::Created { snap: None, rec } => b.insert("base", Self::encode("base", &rec)?),
            Finish::Deleted { snap, thin } => {
                if let Some(s) = snap {
                    b.remove(dev_key(s).as_bytes());
                }
                b.remove(deferred_key(thin).as_bytes());
            }
            Finish::Deferred { snap, rec } => {
                if let Some(s) = snap {
                    b.remove(dev_key(s).as_bytes());
                }
                let key = deferred_key(rec.thin);
                b.insert(key.as_bytes(), Self::encode(&key, &rec)?);
            }
        }
        self.db.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }
}

/// What a finished transaction leaves in the store.
#[derive(Debug, Clone, Copy)]
pub enum Finish {
    /// Nothing (a rolled-back create).
    Nothing,
    /// A device made for a snapshot (or the base).
    Created {
        /// The snapshot, `None` for the base.
        snap: Option<u64>,
        /// Its record.
        rec: DeviceRec,
    },
    /// A device deleted from the pool.
    Deleted {
        /// The snapshot it belonged to, if its record is still there.
        snap: Option<u64>,
        /// Its thin id.
        thin: u32,
    },
    /// A busy device left for the deferred-deletion worker.
    Deferred {
        /// The snapshot it belonged to.
        snap: Option<u64>,
        /// Its record.
        rec: DeviceRec,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_change_records_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        assert!(s.is_empty().unwrap());
        let rec = DeviceRec {
            thin: 1,
            size: 1 << 20,
            mapped: 0,
            inodes: 0,
        };
        let thin = s.next_thin().unwrap();
        s.begin(&Txn {
            op: Op::Create {
                snap: Some(4),
                thin,
                origin: None,
            },
            tid: 0,
        })
        .unwrap();
        assert_eq!(s.next_thin().unwrap(), thin + 1);
        assert!(s.txn().unwrap().is_some());
        s.finish(1, Finish::Created { snap: Some(4), rec }).unwrap();
        assert!(s.txn().unwrap().is_none());
        assert_eq!(s.tid().unwrap(), 1);
        assert_eq!(s.devices().unwrap(), vec![(4, rec)]);
        s.finish(1, Finish::Deferred { snap: Some(4), rec })
            .unwrap();
        assert!(s.devices().unwrap().is_empty());
        assert_eq!(s.deferred().unwrap(), vec![rec]);
        s.finish(
            2,
            Finish::Deleted {
                snap: None,
                thin: 1,
            },
        )
        .unwrap();
        assert!(s.deferred().unwrap().is_empty());
        assert!(!s.is_empty().unwrap());
    }
}
