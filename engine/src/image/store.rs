//! Image metadata in the engine's sled database.
//!
//! Trees: `images` (image id = config digest → [`ImageRecord`]), `image-tags` (normalized
//! reference → image id), `image-layers` (chain id → [`LayerRecord`]) and `image-unpacked`
//! (`<driver>\0<chain id>` → present). Every change that touches several keys runs in one sled
//! transaction and is flushed before the call returns.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

/// Image metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("image metadata database: {0}")]
    Db(#[from] sled::Error),
    /// A record could not be decoded.
    #[error("image metadata record {key:?} is corrupt: {source}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// No such image.
    #[error("no such image: {0}")]
    NoImage(String),
}

/// A layer of an image as its manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLayer {
    /// The blob's digest.
    pub digest: String,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// The chain id of the image's layers up to this one.
    pub chain_id: String,
}

/// An image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// Its layers, base first.
    pub layers: Vec<ImageLayer>,
    /// Bytes of uncompressed layer content.
    pub size: u64,
    /// When the image was created (seconds since the epoch, from its config).
    pub created: i64,
    /// Normalized references that name it.
    pub tags: Vec<String>,
}

/// A layer snapshot's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Its chain id (the committed snapshot's name).
    pub chain_id: String,
    /// Its diff id.
    pub diff_id: String,
    /// The blob it came from.
    pub blob: String,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    /// The chain id below it.
    pub parent: Option<String>,
}

/// The trees.
#[derive(Debug, Clone)]
pub struct MetaStore {
    db: sled::Db,
    images: sled::Tree,
    tags: sled::Tree,
    layers: sled::Tree,
    unpacked: sled::Tree,
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn tx_get_image(t: &TransactionalTree, id: &str) -> TxResult<Option<ImageRecord>> {
    match t.get(id.as_bytes())? {
        Some(v) => decode(id.as_bytes(), &v)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort),
        None => Ok(None),
    }
}

fn flatten<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Db(e),
    })
}

/// Moves `reference` to image `id` inside a transaction, untagging its previous image.
fn tx_tag(
    images: &TransactionalTree,
    tags: &TransactionalTree,
    id: &str,
    reference: &str,
) -> TxResult<()> {
    if let Some(old) = tags.get(reference.as_bytes())? {
        let old = String::from_utf8_lossy(&old).into_owned();
        if old != id {
            if let Some(mut rec) = tx_get_image(images, &old)? {
                rec.tags.retain(|t| t != reference);
                images.insert(old.as_bytes(), encode(&rec))?;
            }
        }
    }
    tags.insert(reference.as_bytes(), id.as_bytes())?;
    if let Some(mut rec) = tx_get_image(images, id)? {
        if !rec.tags.iter().any(|t| t == reference) {
            rec.tags.push(reference.to_string());
            rec.tags.sort();
            images.insert(id.as_bytes(), encode(&rec))?;
        }
    }
    Ok(())
}

fn unpacked_key(driver: &str, chain: &str) -> Vec<u8> {
    format!("{driver}\0{chain}").into_bytes()
}

impl MetaStore {
    /// Opens the image trees in the engine's database.
    pub fn open(db: &sled::Db) -> Result<MetaStore, StoreError> {
        Ok(MetaStore {
            db: db.clone(),
            images: db.open_tree("images")?,
            tags: db.open_tree("image-tags")?,
            layers: db.open_tree("image-layers")?,
            unpacked: db.open_tree("image-unpacked")?,
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// An image by full id.
    pub fn image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        match self.images.get(id.as_bytes())? {
            Some(v) => decode(id.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// Every image.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.images
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The image a normalized reference names.
    pub fn tag_target(&self, reference: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tags
            .get(reference.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// A layer by chain id.
    pub fn layer(&self, chain: &str) -> Result<Option<LayerRecord>, StoreError> {
        match self.layers.get(chain.as_bytes())? {
            Some(v) => decode(chain.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// Stores an image, its layers and its tags (moving tags from other images) at once.
    /// An image already present keeps its tags and gains the new ones.
    pub fn put_image(
        &self,
        rec: &ImageRecord,
        layers: &[LayerRecord],
        tags: &[String],
    ) -> Result<(), StoreError> {
        self.put_image_unpacked(rec, layers, tags, None)
    }

    /// [`MetaStore::put_image`], recording in the same transaction that the image's layers are
    /// unpacked in `driver`.
    pub fn put_image_unpacked(
        &self,
        rec: &ImageRecord,
        layers: &[LayerRecord],
        tags: &[String],
        driver: Option<&str>,
    ) -> Result<(), StoreError> {
        let r =
            (&self.images, &self.tags, &self.layers, &self.unpacked).transaction(|(i, t, l, u)| {
                for layer in layers {
                    if l.get(layer.chain_id.as_bytes())?.is_none() {
                        l.insert(layer.chain_id.as_bytes(), encode(layer))?;
                    }
                    if let Some(d) = driver {
                        u.insert(unpacked_key(d, &layer.chain_id), &b"1"[..])?;
                    }
                }
                let mut new = rec.clone();
                if let Some(old) = tx_get_image(i, &rec.id)? {
                    new.tags = old.tags;
                }
                i.insert(rec.id.as_bytes(), encode(&new))?;
                for tag in tags {
                    tx_tag(i, t, &rec.id, tag)?;
                }
                Ok(())
            });
        flatten(r)?;
        self.flush()
    }

    /// Points `reference` at image `id`.
    pub fn tag(&self, id: &str, reference: &str) -> Result<(), StoreError> {
        let r = (&self.images, &self.tags).transaction(|(i, t)| {
            if tx_get_image(i, id)?.is_none() {
                return Err(ConflictableTransactionError::Abort(StoreError::NoImage(
                    id.to_string(),
                )));
            }
            tx_tag(i, t, id, reference)
        });
        flatten(r)?;
        self.flush()
    }

    /// Removes a tag; returns the image it named.
    pub fn untag(&self, reference: &str) -> Result<Option<String>, StoreError> {
        let r = (&self.images, &self.tags).transaction(|(i, t)| {
            let Some(id) = t.remove(reference.as_bytes())? else {
                return Ok(None);
            };
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(mut rec) = tx_get_image(i, &id)? {
                rec.tags.retain(|x| x != reference);
                i.insert(id.as_bytes(), encode(&rec))?;
            }
            Ok(Some(id))
        });
        let id = flatten(r)?;
        self.flush()?;
        Ok(id)
    }

    /// Deletes an image, its tags, and the layer records no other image uses; returns those
    /// layers (top first), whose snapshots and blobs the caller removes.
    pub fn delete_image(&self, id: &str) -> Result<Vec<LayerRecord>, StoreError> {
        let others = self.images()?;
        let Some(rec) = others.iter().find(|r| r.id == id).cloned() else {
            return Err(StoreError::NoImage(id.to_string()));
        };
        let used: std::collections::HashSet<&str> = others
            .iter()
            .filter(|r| r.id != id)
            .flat_map(|r| r.layers.iter().map(|l| l.chain_id.as_str()))
            .collect();
        let mut gone = Vec::new();
        for l in rec.layers.iter().rev() {
            if !used.contains(l.chain_id.as_str()) {
                if let Some(lr) = self.layer(&l.chain_id)? {
                    gone.push(lr);
                }
            }
        }
        let r = (&self.images, &self.tags, &self.layers).transaction(|(i, t, l)| {
            i.remove(id.as_bytes())?;
            for tag in &rec.tags {
                if t.get(tag.as_bytes())?.as_deref() == Some(id.as_bytes()) {
                    t.remove(tag.as_bytes())?;
                }
            }
            for g in &gone {
                l.remove(g.chain_id.as_bytes())?;
            }
            Ok(())
        });
        flatten(r)?;
        self.flush()?;
        Ok(gone)
    }

    /// Whether a chain is unpacked in a driver.
    pub fn is_unpacked(&self, driver: &str, chain: &str) -> Result<bool, StoreError> {
        Ok(self.unpacked.contains_key(unpacked_key(driver, chain))?)
    }

    /// Records that chains are (or are no longer) unpacked in a driver.
    pub fn set_unpacked(
        &self,
        driver: &str,
        chains: &[String],
        present: bool,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for c in chains {
            if present {
                batch.insert(unpacked_key(driver, c), &b"1"[..]);
            } else {
                batch.remove(unpacked_key(driver, c));
            }
        }
        self.unpacked.apply_batch(batch)?;
        self.flush()
    }

    /// Every driver a chain is recorded as unpacked in.
    pub fn unpacked_drivers(&self, chain: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for kv in self.unpacked.iter() {
            let (k, _) = kv?;
            let k = String::from_utf8_lossy(&k).into_owned();
            if let Some((d, c)) = k.split_once('\0') {
                if c == chain {
                    out.push(d.to_string());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, chains: &[&str]) -> (ImageRecord, Vec<LayerRecord>) {
        let layers: Vec<ImageLayer> = chains
            .iter()
            .map(|c| ImageLayer {
                digest: format!("blob-{c}"),
                media_type: "m".into(),
                size: 1,
                diff_id: format!("diff-{c}"),
                chain_id: c.to_string(),
            })
            .collect();
        let lrs = chains
            .iter()
            .enumerate()
            .map(|(n, c)| LayerRecord {
                chain_id: c.to_string(),
                diff_id: format!("diff-{c}"),
                blob: format!("blob-{c}"),
                size: 1,
                parent: n.checked_sub(1).map(|p| chains[p].to_string()),
            })
            .collect();
        let r = ImageRecord {
            id: id.into(),
            manifest_digest: "md".into(),
            manifest_media_type: "mt".into(),
            layers,
            size: 1,
            created: 0,
            tags: vec![],
        };
        (r, lrs)
    }

    #[test]
    fn tags_move_and_shared_layers_survive_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let s = MetaStore::open(&db).unwrap();
        let (a, al) = rec("a", &["c1", "c2"]);
        let (b, bl) = rec("b", &["c1", "c3"]);
        s.put_image(&a, &al, &["x:1".into(), "x:2".into()]).unwrap();
        s.put_image(&b, &bl, &["x:2".into()]).unwrap();
        assert_eq!(s.image("a").unwrap().unwrap().tags, ["x:1"]);
        assert_eq!(s.image("b").unwrap().unwrap().tags, ["x:2"]);
        assert_eq!(s.tag_target("x:2").unwrap().as_deref(), Some("b"));
        s.tag("a", "y:1").unwrap();
        assert!(matches!(s.tag("zz", "y:1"), Err(StoreError::NoImage(_))));
        assert_eq!(s.untag("x:1").unwrap().as_deref(), Some("a"));
        assert_eq!(s.image("a").unwrap().unwrap().tags, ["y:1"]);
        let gone = s.delete_image("a").unwrap();
        assert_eq!(
            gone.iter().map(|l| l.chain_id.as_str()).collect::<Vec<_>>(),
            ["c2"]
        );
        assert!(s.layer("c1").unwrap().is_some() && s.layer("c2").unwrap().is_none());
        assert!(s.tag_target("y:1").unwrap().is_none());
        s.set_unpacked("overlay2", &["c1".into()], true).unwrap();
        assert!(s.is_unpacked("overlay2", "c1").unwrap());
        assert_eq!(s.unpacked_drivers("c1").unwrap(), ["overlay2"]);
        s.set_unpacked("overlay2", &["c1".into()], false).unwrap();
        assert!(!s.is_unpacked("overlay2", "c1").unwrap());
        drop(s);
        drop(db);
        // sled's flusher thread lets go of the database's lock a moment after the last handle.
        let mut tries = 0;
        let db = loop {
            match sled::open(dir.path().join("db")) {
                Ok(db) => break db,
                Err(e) if tries < 200 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        let s = MetaStore::open(&db).unwrap();
        assert_eq!(s.images().unwrap().len(), 1);
    }
}
