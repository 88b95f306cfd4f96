//! The snapshot operations with containerd's semantics, over a [`MetaStore`] and a driver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use strata_proto::snapshots::Info;
use strata_proto::types::Mount;

use crate::error::{Error, Result};
use crate::failpoint;
use crate::filter::{Fields, Filters};
use crate::metastore::{now, MetaStore, Record};
use crate::snapshotter::{Kind, Snap, Snapshotter, Usage};

/// The largest a label's key plus value may be, as containerd enforces.
pub const MAX_LABEL_PAIR: usize = 4096;

/// The snapshot service's logic, shared by the gRPC handlers.
pub struct Core<D> {
    meta: MetaStore,
    driver: Arc<D>,
    /// Held by every mutation from its checks to its metadata write, so that checks and writes
    /// of concurrent requests never interleave. Flushes and storage removal happen outside it.
    lock: Mutex<()>,
}

/// A snapshot's info as the API returns it.
fn info(name: &str, rec: &Record) -> Info {
    Info {
        name: name.to_string(),
        parent: rec.parent.clone(),
        kind: rec.kind().to_wire() as i32,
        created_at: rec.created,
        updated_at: rec.updated,
        labels: rec.labels.clone(),
    }
}

struct Adapt<'a>(&'a Info);

impl Fields for Adapt<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "name" => Some(self.0.name.clone()),
            "parent" => Some(self.0.parent.clone()),
            "kind" => Some(Kind::from_wire(self.0.kind).filter_name().to_string()),
            "labels" if path.len() > 1 => self.0.labels.get(&path[1..].join(".")).cloned(),
            _ => None,
        }
    }
}

/// Checks containerd's label rule: each key plus value at most 4096 bytes.
pub fn validate_labels(labels: &HashMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        if k.len() + v.len() > MAX_LABEL_PAIR {
            return Err(Error::InvalidArgument(format!(
                "label key and value length ({} bytes) greater than maximum size ({MAX_LABEL_PAIR} bytes), key: {}",
                k.len() + v.len(),
                k.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(())
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("snapshot {key}: not found"))
}

impl<D: Snapshotter> Core<D> {
    /// A core over an opened store and driver.
    pub fn new(meta: MetaStore, driver: Arc<D>) -> Self {
        Core {
            meta,
            driver,
            lock: Mutex::new(()),
        }
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<D> {
        &self.driver
    }

    /// The metadata store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    fn locked(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave the store half-changed (every change is
        // one sled transaction), so a poisoned lock is still usable.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, key: &str) -> Result<Record> {
        self.meta.get(key)?.ok_or_else(|| not_found(key))
    }

    /// Prepare (`kind` Active) or View (`kind` View).
    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        if key.is_empty() {
            return Err(Error::InvalidArgument(
                "snapshot key must not be empty".into(),
            ));
        }
        validate_labels(&labels)?;
        let (id, parents) = {
            let _g = self.locked();
            if self.meta.get(key)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "snapshot {key}: already exists"
                )));
            }
            let parents = if parent.is_empty() {
                Vec::new()
            } else {
                let prec = self.meta.get(parent)?.ok_or_else(|| {
                    Error::NotFound(format!(
                        "missing parent {parent:?}: snapshot does not exist"
                    ))
                })?;
                if prec.kind() != Kind::Committed {
                    return Err(Error::InvalidArgument(format!(
                        "parent {parent:?} is not committed snapshot"
                    )));
                }
                self.meta.parent_ids(parent)?
            };
            let id = self.meta.next_id()?;
            let snap = Snap {
                id,
                kind,
                parents: &parents,
            };
            self.driver.create(&snap)?;
            failpoint::hit("prepare:after-create");
            let t = now();
            let rec = Record {
                id,
                kind: kind.into(),
                parent: parent.to_string(),
                labels,
                created: Some(t),
                updated: Some(t),
            };
            if let Err(e) = self.meta.insert(key, &rec) {
                if let Err(re) = self.driver.remove(id) {
                    tracing::warn!(%re, id, "removing the storage of a failed prepare failed; cleanup will retry");
                }
                return Err(e);
            }
            (id, parents)
        };
        failpoint::hit("prepare:after-metadata");
        self.driver.mounts(&Snap {
            id,
            kind,
            parents: &parents,
        })
    }

    /// The mounts of an active snapshot or view.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let rec = self.record(key)?;
        if rec.kind() == Kind::Committed {
            return Err(Error::FailedPrecondition(format!(
                "requested snapshot {key} not active or view"
            )));
        }
        let parents = self.meta.parent_ids(&rec.parent)?;
        self.driver.mounts(&Snap {
            id: rec.id,
            kind: rec.kind(),
            parents: &parents,
        })
    }

    /// Commit: the active snapshot `key` becomes the committed snapshot `name`.
    pub fn commit(&self, name: &str, key: &str, labels: HashMap<String, String>) -> Result<()> {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "committed snapshot name must not be empty".into(),
            ));
        }
        validate_labels(&labels)?;
        {
            let _g = self.locked();
            let rec = self.record(key)?;
            if rec.kind() != Kind::Active {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key} is not active"
                )));
            }
            if self.meta.get(name)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "committed snapshot {name}: already exists"
                )));
            }
            let parents = self.meta.parent_ids(&rec.parent)?;
            self.driver.commit(&Snap {
                id: rec.id,
                kind: Kind::Active,
                parents: &parents,
            })?;
            failpoint::hit("commit:before-metadata");
            let t = now();
            let committed = Record {
                id: rec.id,
                kind: Kind::Committed.into(),
                parent: rec.parent,
                labels,
                created: Some(t),
                updated: Some(t),
            };
            self.meta.commit(key, name, &committed)?;
        }
        failpoint::hit("commit:after-metadata");
        Ok(())
    }

    /// Remove a snapshot that has no children.
    pub fn remove(&self, key: &str) -> Result<()> {
        let id = {
            let _g = self.locked();
            let rec = self.record(key)?;
            let parents = self.meta.parent_ids(&rec.parent)?;
            if self.meta.has_children(key)? {
                return Err(Error::FailedPrecondition(format!(
                    "failed to remove snapshot {key}: cannot remove snapshot with child"
                )));
            }
            self.driver.check_remove(&Snap {
                id: rec.id,
                kind: rec.kind(),
                parents: &parents,
            })?;
            self.meta.remove(key, &rec)?;
            rec.id
        };
        failpoint::hit("remove:after-metadata");
        if let Err(e) = self.driver.remove(id) {
            tracing::warn!(%e, id, key, "removing snapshot storage failed; cleanup will retry");
        }
        Ok(())
    }

    /// Stat: the snapshot's info.
    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(info(key, &self.record(key)?))
    }

    /// Update the mutable fields (labels) of a snapshot.
    pub fn update(&self, new: Info, paths: &[String]) -> Result<Info> {
        let key = new.name.clone();
        let updated = {
            let _g = self.locked();
            let mut rec = self.record(&key)?;
            if paths.is_empty() {
                rec.labels = new.labels;
            } else {
                let mut labels = rec.labels.clone();
                for path in paths {
                    if path == "labels" {
                        labels = new.labels.clone();
                    } else if let Some(k) = path.strip_prefix("labels.") {
                        match new.labels.get(k).filter(|v| !v.is_empty()) {
                            Some(v) => labels.insert(k.to_string(), v.clone()),
                            None => labels.remove(k),
                        };
                    } else {
                        return Err(Error::InvalidArgument(format!(
                            "cannot update {path:?} field on snapshot {key:?}"
                        )));
                    }
                }
                rec.labels = labels;
            }
            rec.labels.retain(|_, v| !v.is_empty());
            validate_labels(&rec.labels)?;
            rec.updated = Some(now());
            self.meta.replace(&key, &rec)?;
            info(&key, &rec)
        };
        Ok(updated)
    }

    /// List: the infos matching any of `filters`, in key order.
    pub fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filters = Filters::parse(filters).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut out = Vec::new();
        for kv in self.meta.iter() {
            let (key, rec) = kv?;
            let i = info(&key, &rec);
            if filters.matches(&Adapt(&i)) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Usage of the snapshot's own storage.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let rec = self.record(key)?;
        let parents = self.meta.parent_ids(&rec.parent)?;
        self.driver.usage(&Snap {
            id: rec.id,
            kind: rec.kind(),
            parents: &parents,
        })
    }

    /// Cleanup: removes storage that no snapshot owns.
    pub fn cleanup(&self) -> Result<()> {
        let _g = self.locked();
        let live = self.meta.live_ids()?;
        self.driver.cleanup(&live)
    }

    /// The driver's status rows.
    pub fn status(&self) -> Result<Vec<(String, String)>> {
        self.driver.status(self.meta.len())
    }

    /// Makes everything durable across power loss (on shutdown).
    pub fn sync(&self) -> Result<()> {
        self.meta.sync()
    }
}
