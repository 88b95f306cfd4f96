//! The image verbs that change things: load, save, import, commit's layer image, remove, and
//! the unpack a container needs (`top_chain`).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use serde_json::Value;

use super::archive::{self, media, ArchiveImage, ArchiveLayer};
use super::config::{self, chain_ids};
use super::reference::Reference;
use super::save::{self, Format, SaveImage};
use super::store::{ImageLayer, ImageRecord, LayerRecord};
use super::unpack::{self, UnpackLayer};
use super::{apply, ImageError, ImageSummary, Images, RemoveReport};
use crate::content::Digest;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
}

impl Images {
    /// Deletes those of `blobs` that no image names (the caller holds the image lock).
    fn delete_unused(&self, blobs: &[Digest]) {
        for d in blobs {
            if !self.blob_in_use(d).unwrap_or(true) {
                self.delete_blobs(std::slice::from_ref(d));
            }
        }
    }

    fn delete_blobs(&self, blobs: &[Digest]) {
        for d in blobs {
            if let Err(e) = self.content.delete(d) {
                tracing::warn!(%e, "removing a blob of a failed image change failed");
            }
        }
    }

    /// Unpacks an image's layers and stores it; on failure removes what it made (the snapshots
    /// this call committed; the caller removes blobs).
    async fn store_image(
        &self,
        img: &ArchiveImage,
    ) -> Result<(ImageRecord, Vec<String>), ImageError> {
        let diff_ids: Vec<Digest> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let ulayers: Vec<UnpackLayer> = img
            .layers
            .iter()
            .zip(&chains)
            .enumerate()
            .map(|(n, (l, c))| UnpackLayer {
                chain_id: c.clone(),
                parent: n.checked_sub(1).map(|p| chains[p].clone()),
                blob: l.digest.clone(),
                diff_id: l.diff_id.clone(),
            })
            .collect();
        let (committed, sizes) =
            unpack::unpack(&self.storage, &self.content, &self.tmp, &ulayers).await?;
        match self.record_image(img, &ulayers, &sizes).await {
            Ok(rec) => Ok((rec, committed)),
            Err(e) => {
                self.remove_chains(&committed).await;
                Err(e)
            }
        }
    }

    /// Writes the metadata of an unpacked image.
    async fn record_image(
        &self,
        img: &ArchiveImage,
        ulayers: &[UnpackLayer],
        sizes: &HashMap<String, u64>,
    ) -> Result<ImageRecord, ImageError> {
        let bytes = self.content.read(&img.config_digest)?;
        let cfg: Value = serde_json::from_slice(&bytes).map_err(|source| ImageError::Config {
            image: img.config_digest.to_string(),
            source,
        })?;
        let mut records = Vec::new();
        let mut layers = Vec::new();
        let mut total = 0;
        for (u, l) in ulayers.iter().zip(&img.layers) {
            let size = match sizes.get(&u.chain_id) {
                Some(s) => *s,
                None => match self.meta.layer(&u.chain_id)? {
                    Some(r) => r.size,
                    None => {
                        let (c, d) = (self.content.clone(), l.digest.clone());
                        blocking(move || Ok(apply::diff_id(c.open_blob(&d)?)?.1)).await?
                    }
                },
            };
            total += size;
            records.push(LayerRecord {
                chain_id: u.chain_id.clone(),
                diff_id: u.diff_id.to_string(),
                blob: l.digest.to_string(),
                size,
                parent: u.parent.clone(),
            });
            layers.push(ImageLayer {
                digest: l.digest.to_string(),
                media_type: l.media_type.clone(),
                size: l.size,
                diff_id: l.diff_id.to_string(),
                chain_id: u.chain_id.clone(),
            });
        }
        let rec = ImageRecord {
            id: img.config_digest.to_string(),
            manifest_digest: img.manifest_digest.to_string(),
            manifest_media_type: img.manifest_media_type.clone(),
            layers,
            size: total,
            created: cfg["created"].as_str().map_or(0, config::parse_time),
            tags: Vec::new(),
        };
        let tags: Vec<String> = img.tags.iter().map(|t| t.to_string()).collect();
        self.meta
            .put_image_unpacked(&rec, &records, &tags, Some(self.storage.driver()))?;
        Ok(self.meta.image(&rec.id)?.unwrap_or(rec))
    }

    async fn remove_chains(&self, chains: &[String]) {
        for c in chains.iter().rev() {
            if let Err(e) = unpack::remove(&self.storage, c).await {
                tracing::warn!(%e, chain = c, "removing a layer snapshot failed");
            }
        }
    }

    /// Loads a Docker `save` tarball or OCI archive (gzip or not); returns its images. A failed
    /// load leaves no image, snapshot or blob behind.
    pub async fn load(
        &self,
        reader: impl Read + Send + 'static,
    ) -> Result<Vec<ImageSummary>, ImageError> {
        let started = std::time::Instant::now();
        // The archive is read (from the client, for as long as that takes) without the image
        // lock: its blobs are pinned until its images are stored, so other image changes go
        // on meanwhile and none takes a blob this load relies on.
        let content = self.content.clone();
        let (read, pins, new) = tokio::task::spawn_blocking(move || {
            let (mut pins, mut new) = (content.pins(), Vec::new());
            let read = archive::read_archive_pinned(reader, &content, &mut pins, &mut new);
            (read, pins, new)
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?;
        let read_ms = started.elapsed().as_millis() as u64;
        let _guard = self.lock.lock().await;
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                drop(pins);
                self.delete_unused(&new);
                return Err(e.into());
            }
        };
        let mut made: Vec<String> = Vec::new();
        let mut created: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for img in &read.images {
            let existed = self.meta.image(img.config_digest.as_str())?.is_some();
            match self.store_image(img).await {
                Ok((rec, committed)) => {
                    made.extend(committed);
                    if !existed {
                        created.push(rec.id.clone());
                    }
                    tracing::info!(id = rec.id, tags = ?rec.tags, "image loaded");
                    out.push(ImageSummary::from(&rec));
                }
                Err(e) => {
                    // Undo the whole load: the images it made, their snapshots, its blobs.
                    for id in &created {
                        if let Err(de) = self.meta.delete_image(id) {
                            tracing::warn!(%de, id, "removing an image of a failed load failed");
                        }
                    }
                    self.remove_chains(&made).await;
                    drop(pins);
                    self.delete_unused(&read.new_blobs);
                    self.delete_unused(&read.unused);
                    return Err(e);
                }
            }
        }
        // The images name their blobs now; those of the archive no image uses go.
        drop(pins);
        self.delete_unused(&read.unused);
        tracing::info!(
            images = out.len(),
            read_ms,
            total_ms = started.elapsed().as_millis() as u64,
            "load done"
        );
        Ok(out)
    }

    /// Writes images (references or ids) as an archive.
    pub async fn save(
        &self,
        images: &[String],
        format: Format,
        out: impl Write + Send + 'static,
    ) -> Result<(), ImageError> {
        let mut list: Vec<SaveImage> = Vec::new();
        for name in images {
            let rec = self.resolve(name)?;
            // `save name:tag` writes that reference; `save <id>` writes every tag it has.
            let refs: Vec<Reference> = match Reference::parse(name) {
                Ok(r) if rec.tags.contains(&r.to_string()) => vec![r],
                _ => rec
                    .tags
                    .iter()
                    .filter_map(|t| Reference::parse(t).ok())
                    .collect(),
            };
            if let Some(have) = list.iter_mut().find(|s| s.config.as_str() == rec.id) {
                for r in refs {
                    if !have.references.contains(&r) {
                        have.references.push(r);
                    }
                }
                continue;
            }
            list.push(SaveImage {
                manifest: Digest::parse(&rec.manifest_digest)?,
                manifest_media_type: rec.manifest_media_type.clone(),
                config: Digest::parse(&rec.id)?,
                layers: rec
                    .layers
                    .iter()
                    .map(|l| Digest::parse(&l.digest))
                    .collect::<Result<_, _>>()?,
                references: refs,
            });
        }
        let content = self.content.clone();
        blocking(move || Ok(save::write_archive(&list, format, &content, out)?)).await
    }

    /// Stores a config and layers as a new image tagged `reference`.
    async fn make_image(
        &self,
        cfg: &Value,
        layers: Vec<ArchiveLayer>,
        reference: Option<Reference>,
        mut new_blobs: Vec<Digest>,
    ) -> Result<ImageSummary, ImageError> {
        let cfg_bytes = serde_json::to_vec(cfg).unwrap_or_default();
        let result = async {
            let config = self.write_small(&cfg_bytes, &mut new_blobs)?;
            let manifest = archive::synthesize_manifest(&config, cfg_bytes.len() as u64, &layers);
            let manifest_digest = self.write_small(&manifest, &mut new_blobs)?;
            let img = ArchiveImage {
                manifest_digest,
                manifest_media_type: media::OCI_MANIFEST.into(),
                config_digest: config,
                layers,
                tags: reference.into_iter().collect(),
            };
            self.store_image(&img).await
        }
        .await;
        match result {
            Ok((rec, _)) => Ok(ImageSummary::from(&rec)),
            Err(e) => {
                self.delete_blobs(&new_blobs);
                Err(e)
            }
        }
    }

    fn write_small(&self, bytes: &[u8], new_blobs: &mut Vec<Digest>) -> Result<Digest, ImageError> {
        let d = Digest::of(bytes);
        if !self.content.contains(&d) {
            self.content.write(bytes, Some(&d))?;
            new_blobs.push(d.clone());
        }
        Ok(d)
    }

    /// Stores a layer tar (gzip or not) as a blob and returns it as a layer, with the blobs to
    /// delete if the image is not made (the layer's, unless another image uses it).
    async fn store_layer(
        &self,
        reader: impl Read + Send + 'static,
    ) -> Result<(ArchiveLayer, Vec<Digest>), ImageError> {
        let content = self.content.clone();
        let (d, size) = blocking(move || Ok(content.write(reader, None)?)).await?;
        let new_blobs = if self.blob_in_use(&d)? {
            Vec::new()
        } else {
            vec![d.clone()]
        };
        let content = self.content.clone();
        let blob = d.clone();
        let layer = blocking(move || {
            let mut head = [0u8; 2];
            let n = content.open_blob(&blob)?.read(&mut head).unwrap_or(0);
            let gzip = n == 2 && head == [0x1f, 0x8b];
            // An uncompressed tar's digest is its diff id.
            let diff_id = if gzip {
                apply::diff_id(content.open_blob(&blob)?)?.0
            } else {
                blob.clone()
            };
            Ok(ArchiveLayer {
                digest: blob,
                media_type: if gzip {
                    media::OCI_LAYER_GZIP
                } else {
                    media::OCI_LAYER
                }
                .into(),
                size,
                diff_id,
            })
        })
        .await;
        match layer {
            Ok(l) => Ok((l, new_blobs)),
            Err(e) => {
                self.delete_blobs(&new_blobs);
                Err(e)
            }
        }
    }

    /// Makes a one-layer image from a flat root filesystem tar (`strata import`).
    pub async fn import(
        &self,
        reader: impl Read + Send + 'static,
        reference: Option<&str>,
    ) -> Result<ImageSummary, ImageError> {
        let reference = reference
            .filter(|r| !r.is_empty())
            .map(Reference::parse)
            .transpose()?;
        let _guard = self.lock.lock().await;
        let (layer, new_blobs) = self.store_layer(reader).await?;
        let cfg = config::import_config(&layer.diff_id, config::now());
        self.make_image(&cfg, vec![layer], reference, new_blobs)
            .await
    }

    /// Makes an image from `parent` plus one layer tar (`strata commit`): the blob is stored, the
    /// layer unpacked as a committed snapshot on the parent's top chain, and the image tagged.
    pub async fn add_layer_image(
        &self,
        parent: &str,
        layer_tar: impl Read + Send + 'static,
        reference: Option<&str>,
        comment: &str,
        author: &str,
    ) -> Result<ImageSummary, ImageError> {
        self.add_layer_image_with(parent, layer_tar, reference, comment, author, None)
            .await
    }

    /// [`Images::add_layer_image`] with fields of the image config's `config` object replaced
    /// (`Env`, `Cmd`, `Entrypoint`, …: Docker's commit records the container's).
    pub async fn add_layer_image_with(
        &self,
        parent: &str,
        layer_tar: impl Read + Send + 'static,
        reference: Option<&str>,
        comment: &str,
        author: &str,
        config_changes: Option<&serde_json::Map<String, Value>>,
    ) -> Result<ImageSummary, ImageError> {
        let reference = reference
            .filter(|r| !r.is_empty())
            .map(Reference::parse)
            .transpose()?;
        let prec = self.resolve(parent)?;
        let pcfg = self.config_json(&prec)?;
        let _guard = self.lock.lock().await;
        let (layer, new_blobs) = self.store_layer(layer_tar).await?;
        let mut cfg = config::commit_config(&pcfg, &layer.diff_id, config::now(), comment, author);
        if let Some(changes) = config_changes {
            if !cfg["config"].is_object() {
                cfg["config"] = Value::Object(Default::default());
            }
            for (k, v) in changes {
                cfg["config"][k] = v.clone();
            }
        }
        let mut layers: Vec<ArchiveLayer> = Vec::new();
        for l in &prec.layers {
            layers.push(ArchiveLayer {
                digest: Digest::parse(&l.digest)?,
                media_type: l.media_type.clone(),
                size: l.size,
                diff_id: Digest::parse(&l.diff_id)?,
            });
        }
        layers.push(layer);
        self.make_image(&cfg, layers, reference, new_blobs).await
    }

    fn blob_in_use(&self, d: &Digest) -> Result<bool, ImageError> {
        Ok(self.meta.images()?.iter().any(|i| {
            i.id == d.as_str()
                || i.manifest_digest == d.as_str()
                || i.layers.iter().any(|l| l.digest == d.as_str())
        }))
    }

    /// Cleans up after a crash: extract snapshots and apply mounts an interrupted unpack left,
    /// and layer snapshots no image uses any more (left by a forced `rmi` under a container that
    /// is gone now). Waits for any image change in progress, so it never touches a live unpack.
    pub async fn recover(&self) -> Result<usize, ImageError> {
        let _guard = self.lock.lock().await;
        let images = self.meta.images()?;
        let keep: HashSet<String> = images
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| l.chain_id.clone()))
            .collect();
        Ok(unpack::remove_leftovers(&self.storage, &self.tmp, &keep).await?)
    }

    /// The chain id a container's snapshot is prepared on ("" for an image without layers),
    /// unpacking the image into the current driver first if it is not there.
    pub async fn top_chain(&self, image: &str) -> Result<String, ImageError> {
        let rec = self.resolve(image)?;
        let Some(top) = rec.layers.last() else {
            return Ok(String::new());
        };
        if unpack::exists(&self.storage, &top.chain_id).await? {
            return Ok(top.chain_id.clone());
        }
        let _guard = self.lock.lock().await;
        let ulayers: Vec<UnpackLayer> = rec
            .layers
            .iter()
            .enumerate()
            .map(|(n, l)| {
                Ok(UnpackLayer {
                    chain_id: l.chain_id.clone(),
                    parent: n.checked_sub(1).map(|p| rec.layers[p].chain_id.clone()),
                    blob: Digest::parse(&l.digest)?,
                    diff_id: Digest::parse(&l.diff_id)?,
                })
            })
            .collect::<Result<_, ImageError>>()?;
        unpack::unpack(&self.storage, &self.content, &self.tmp, &ulayers).await?;
        let chains: Vec<String> = rec.layers.iter().map(|l| l.chain_id.clone()).collect();
        self.meta
            .set_unpacked(self.storage.driver(), &chains, true)?;
        Ok(top.chain_id.clone())
    }

    /// Removes an image as `docker rmi` does. A reference with other references to the same
    /// image is only untagged; the last reference, or an id, deletes the image, its blobs and
    /// the layer snapshots no other image uses — unless a container uses it (`in_use(id)`), or
    /// an id names an image with several references, which need `force`.
    pub async fn remove(
        &self,
        image: &str,
        force: bool,
        in_use: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<RemoveReport, ImageError> {
        let _guard = self.lock.lock().await;
        let rec = self.resolve(image)?;
        let mut report = RemoveReport::default();
        let by_ref = Reference::parse(image)
            .ok()
            .map(|r| r.to_string())
            .filter(|r| rec.tags.contains(r));
        let used = in_use(&rec.id);
        let familiar = |t: &str| {
            Reference::parse(t)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| t.to_string())
        };
        if let Some(r) = &by_ref {
            if rec.tags.len() > 1 || (used && force) {
                self.meta.untag(r)?;
                report.untagged.push(familiar(r));
                return Ok(report);
            }
            if used {
                return Err(ImageError::Conflict {
                    image: image.to_string(),
                    why: "a container is using it (remove the container, or use -f to untag it)",
                });
            }
        } else if !force {
            if used {
                return Err(ImageError::Conflict {
                    image: image.to_string(),
                    why: "a container is using it (remove the container first, or use -f)",
                });
            }
            if rec.tags.len() > 1 {
                return Err(ImageError::Conflict {
                    image: image.to_string(),
                    why:
                        "it is referenced in several repositories (remove them by name, or use -f)",
                });
            }
        }
        self.delete_locked(&rec, &mut report).await?;
        Ok(report)
    }

    /// Removes what `docker image prune` does: dangling images (untagged ones), or with `all`
    /// every image; never one a container uses (`in_use(id)`). Returns what was untagged and
    /// deleted, and the bytes of the layers removed.
    pub async fn prune(
        &self,
        all: bool,
        in_use: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(RemoveReport, u64), ImageError> {
        let _guard = self.lock.lock().await;
        let mut report = RemoveReport::default();
        let mut space = 0;
        for rec in self.meta.images()? {
            if in_use(&rec.id) || !(all || rec.tags.is_empty()) {
                continue;
            }
            space += self.delete_locked(&rec, &mut report).await?;
        }
        Ok((report, space))
    }

    /// Deletes an image (its tags, record, the layer snapshots and blobs only it used), adding
    /// to `report`; returns the bytes of the layers removed. The caller holds the lock.
    async fn delete_locked(
        &self,
        rec: &ImageRecord,
        report: &mut RemoveReport,
    ) -> Result<u64, ImageError> {
        let familiar = |t: &str| {
            Reference::parse(t)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| t.to_string())
        };
        report.untagged.extend(rec.tags.iter().map(|t| familiar(t)));
        let gone = self.meta.delete_image(&rec.id)?;
        report.deleted.push(rec.id.clone());
        let mut space = 0;
        for l in &gone {
            match unpack::remove(&self.storage, &l.chain_id).await {
                Ok(()) => {
                    space += l.size;
                    report.deleted.push(l.chain_id.clone());
                    let drivers = self.meta.unpacked_drivers(&l.chain_id)?;
                    for d in drivers {
                        self.meta
                            .set_unpacked(&d, std::slice::from_ref(&l.chain_id), false)?;
                    }
                }
                // A container's snapshot still sits on it (forced removal).
                Err(e) => {
                    tracing::warn!(%e, chain = l.chain_id, "keeping a layer snapshot that cannot be removed")
                }
            }
        }
        self.delete_unreferenced(rec)?;
        Ok(space)
    }

    /// Deletes the blobs of a deleted image that no remaining image references.
    fn delete_unreferenced(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        let images = self.meta.images()?;
        let mut keep: HashSet<&str> = HashSet::new();
        for i in &images {
            keep.insert(&i.id);
            keep.insert(&i.manifest_digest);
            keep.extend(i.layers.iter().map(|l| l.digest.as_str()));
        }
        let mine = [rec.id.as_str(), rec.manifest_digest.as_str()]
            .into_iter()
            .chain(rec.layers.iter().map(|l| l.digest.as_str()));
        let mut seen = HashMap::new();
        for d in mine {
            if keep.contains(d) || seen.insert(d, ()).is_some() {
                continue;
            }
            if let Ok(d) = Digest::parse(d) {
                self.content.delete(&d)?;
            }
        }
        Ok(())
    }
}
