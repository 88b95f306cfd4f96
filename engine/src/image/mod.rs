//! The image subsystem: references, layer application, image metadata, archives and unpacking,
//! behind the [`Images`] facade the engine's gRPC service and container code call.
//!
//! - [`reference`]: Docker-style references (`busybox` → `docker.io/library/busybox:latest`);
//! - [`apply`]: applying a layer tar to a directory, mount-aware and contained;
//! - [`store`]: image, tag, layer and unpack metadata in sled;
//! - [`archive`] / [`save`]: reading Docker/OCI archives, writing them;
//! - [`unpack`]: layers into the storage driver (Stat → Prepare → apply → Commit);
//! - [`config`]: chain ids, configs for import/commit, inspect and history documents.
//!
//! ```no_run
//! # async fn f(db: sled::Db, content: strata_engine::content::ContentStore,
//! #            storage: strata_engine::storage::Storage) -> Result<(), Box<dyn std::error::Error>> {
//! use strata_engine::image::Images;
//! let images = Images::new(&db, content, storage, std::path::Path::new("/var/lib/strata"))?;
//! let loaded = images.load(std::fs::File::open("busybox.tar")?).await?;
//! let chain = images.top_chain(&loaded[0].id).await?; // the parent of a container's snapshot
//! # Ok(()) }
//! ```

pub mod apply;
pub mod archive;
pub mod config;
pub mod reference;
pub mod save;
pub mod store;
pub mod unpack;

mod ops;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::content::{ContentError, ContentStore, Digest};
use crate::storage::Storage;
pub use config::HistoryRow;
use reference::{Reference, ReferenceError};
pub use save::Format;
use store::{ImageRecord, MetaStore, StoreError};

/// Image failures, each mapping to one gRPC code ([`ImageError::to_status`]).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A malformed reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// No image by that name or id.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An id prefix that matches several images.
    #[error("image id prefix {0:?} is ambiguous: it matches several images")]
    Ambiguous(String),
    /// The image is in use or referenced in several repositories.
    #[error("conflict: unable to remove {image}: {why}")]
    Conflict {
        /// The image as given.
        image: String,
        /// Why.
        why: &'static str,
    },
    /// A bad archive or layer.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// Writing an archive failed.
    #[error(transparent)]
    Save(#[from] save::SaveError),
    /// Unpacking into the storage driver failed.
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    /// The metadata database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// An image config is unreadable.
    #[error("image {image}: its config is not valid JSON: {source}")]
    Config {
        /// The image id.
        image: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A layer tar (import, commit) is unreadable.
    #[error(transparent)]
    Layer(#[from] apply::ApplyError),
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blocking task died.
    #[error("image task failed: {0}")]
    Task(String),
}

impl From<ImageError> for tonic::Status {
    fn from(e: ImageError) -> Self {
        e.to_status()
    }
}

impl ImageError {
    /// The gRPC status for this error, with its message.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            ImageError::Reference(_) | ImageError::Ambiguous(_) => Code::InvalidArgument,
            ImageError::NotFound(_) => Code::NotFound,
            ImageError::Conflict { .. } => Code::FailedPrecondition,
            ImageError::Archive(_) | ImageError::Layer(_) => Code::InvalidArgument,
            ImageError::Unpack(u) => match u.storage_status() {
                Some(s) if s.code() == Code::Unavailable => Code::Unavailable,
                Some(_) => Code::Internal,
                None => match u {
                    unpack::UnpackError::Apply { .. } | unpack::UnpackError::DiffId { .. } => {
                        Code::InvalidArgument
                    }
                    _ => Code::Internal,
                },
            },
            ImageError::Content(ContentError::Mismatch { .. }) => Code::InvalidArgument,
            ImageError::Content(ContentError::NotFound(_)) => Code::NotFound,
            _ => Code::Internal,
        };
        tonic::Status::new(code, self.to_string())
    }
}

/// A line of `strata images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `sha256:…` of the config.
    pub id: String,
    /// Familiar references (`busybox:latest`).
    pub tags: Vec<String>,
    /// Uncompressed bytes.
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
}

impl From<&ImageRecord> for ImageSummary {
    fn from(r: &ImageRecord) -> Self {
        ImageSummary {
            id: r.id.clone(),
            tags: r
                .tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .map(|r| r.familiar())
                .collect(),
            size: r.size,
            created: r.created,
        }
    }
}

/// What `remove` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveReport {
    /// References removed.
    pub untagged: Vec<String>,
    /// The image id and the layer chain ids deleted.
    pub deleted: Vec<String>,
}

/// The image subsystem.
#[derive(Debug)]
pub struct Images {
    content: ContentStore,
    meta: MetaStore,
    storage: Storage,
    tmp: PathBuf,
    /// Serializes changes (load, import, commit, remove) so their blob and snapshot cleanup
    /// never races another change.
    lock: tokio::sync::Mutex<()>,
}

impl Images {
    /// Opens the image trees in `db`; temporary mount points go under `<root>/tmp/images`.
    pub fn new(
        db: &sled::Db,
        content: ContentStore,
        storage: Storage,
        root: &Path,
    ) -> Result<Images, ImageError> {
        let tmp = root.join("tmp/images");
        std::fs::create_dir_all(&tmp).map_err(|source| ImageError::Io {
            op: "create directory",
            path: tmp.clone(),
            source,
        })?;
        Ok(Images {
            content,
            meta: MetaStore::open(db)?,
            storage,
            tmp,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The metadata store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let mut v: Vec<ImageSummary> = self.meta.images()?.iter().map(Into::into).collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Finds an image by reference (`name[:tag]`, `name@digest`), full id or id prefix.
    pub fn resolve(&self, s: &str) -> Result<ImageRecord, ImageError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty.into());
        }
        let as_ref = Reference::parse(s);
        if let Ok(r) = &as_ref {
            if let Some(d) = r.digest() {
                let name = r.name();
                return self
                    .meta
                    .images()?
                    .into_iter()
                    .find(|i| {
                        i.manifest_digest == d
                            && (i.tags.is_empty()
                                || i.tags.iter().any(|t| t.starts_with(&format!("{name}:"))))
                    })
                    .ok_or_else(|| ImageError::NotFound(s.to_string()));
            }
            if let Some(id) = self.meta.tag_target(&r.to_string())? {
                return self
                    .meta
                    .image(&id)?
                    .ok_or_else(|| ImageError::NotFound(s.to_string()));
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let is_hex = !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex {
            let want = format!("sha256:{hex}");
            let mut found = self
                .meta
                .images()?
                .into_iter()
                .filter(|i| i.id.starts_with(&want));
            if let Some(first) = found.next() {
                if found.next().is_some() {
                    return Err(ImageError::Ambiguous(s.to_string()));
                }
                return Ok(first);
            }
        }
        match as_ref {
            Err(e) if !is_hex => Err(e.into()),
            _ => Err(ImageError::NotFound(s.to_string())),
        }
    }

    /// An image's config document.
    pub fn config_json(&self, rec: &ImageRecord) -> Result<Value, ImageError> {
        let d = Digest::parse(&rec.id)?;
        serde_json::from_slice(&self.content.read(&d)?).map_err(|source| ImageError::Config {
            image: rec.id.clone(),
            source,
        })
    }

    /// The OCI image config (Env, Cmd, Entrypoint, WorkingDir, User, Volumes, StopSignal, …) of
    /// an image, for building a container's spec.
    pub fn config(&self, image: &str) -> Result<oci_spec::image::ImageConfiguration, ImageError> {
        let rec = self.resolve(image)?;
        let d = Digest::parse(&rec.id)?;
        serde_json::from_slice(&self.content.read(&d)?).map_err(|source| ImageError::Config {
            image: rec.id.clone(),
            source,
        })
    }

    /// Docker-shaped `inspect` JSON.
    pub fn inspect(&self, image: &str) -> Result<Value, ImageError> {
        let rec = self.resolve(image)?;
        let cfg = self.config_json(&rec)?;
        let unpacked = match rec.layers.last() {
            Some(l) => self.meta.is_unpacked(self.storage.driver(), &l.chain_id)?,
            None => true,
        };
        Ok(config::inspect(&rec, &cfg, self.storage.driver(), unpacked))
    }

    /// `history`, newest first.
    pub fn history(&self, image: &str) -> Result<Vec<HistoryRow>, ImageError> {
        let rec = self.resolve(image)?;
        let cfg = self.config_json(&rec)?;
        Ok(config::history(&rec, &cfg, |c| {
            self.meta.layer(c).ok().flatten()
        }))
    }

    /// Points `target` (`name[:tag]`) at the image `source` names.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let rec = self.resolve(source)?;
        let r = Reference::parse(target)?;
        if r.digest().is_some() {
            return Err(
                ReferenceError::Format(target.to_string(), "a tag cannot have a digest").into(),
            );
        }
        self.meta.tag(&rec.id, &r.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
