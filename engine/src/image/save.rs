//! Writing image archives.
//!
//! Both formats are an OCI image layout in a tar (`oci-layout`, `index.json`, `blobs/sha256/…`);
//! the Docker format (the default, as Docker 25 writes it) adds `manifest.json` with `Config`,
//! `RepoTags` and `Layers` pointing into `blobs/sha256`, so `docker load`, `skopeo`'s
//! `docker-archive:` and `oci-archive:`, and `umoci` all read it. Each index entry carries
//! `io.containerd.image.name` (the full reference) and `org.opencontainers.image.ref.name`
//! (the tag). The tar is deterministic: fixed owners, modes and times, blobs once each.

use std::collections::HashSet;
use std::io::{self, Write};

use serde_json::{json, Value};

use super::archive::{media, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::reference::Reference;
use crate::content::{ContentError, ContentStore, Digest};

/// The archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Docker `save` (with the OCI layout inside).
    #[default]
    Docker,
    /// An OCI image layout archive.
    Oci,
}

impl Format {
    /// `docker` (or empty) or `oci`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "" | "docker" | "docker-archive" => Some(Format::Docker),
            "oci" | "oci-archive" => Some(Format::Oci),
            _ => None,
        }
    }
}

/// An image to write.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// Its manifest.
    pub manifest: Digest,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// Its config.
    pub config: Digest,
    /// Its layer blobs, base first.
    pub layers: Vec<Digest>,
    /// The references to write for it (none: untagged).
    pub references: Vec<Reference>,
}

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// A blob is missing or unreadable.
    #[error("save: {0}")]
    Content(#[from] ContentError),
    /// Writing the output failed.
    #[error("save: writing the archive: {0}")]
    Write(#[source] io::Error),
}

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    // Paths here are short ASCII (`blobs/sha256/<64 hex>` is 77 bytes).
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn dir_header(path: &str) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Writes `images` as an archive to `out`.
pub fn write_archive(
    images: &[SaveImage],
    format: Format,
    content: &ContentStore,
    out: impl Write,
) -> Result<(), SaveError> {
    let mut tar = tar::Builder::new(out);
    let add = |tar: &mut tar::Builder<_>, path: &str, data: &[u8]| -> Result<(), SaveError> {
        tar.append(&header(path, data.len() as u64), data)
            .map_err(SaveError::Write)
    };
    add(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.append(&dir_header("blobs/"), io::empty())
        .map_err(SaveError::Write)?;
    tar.append(&dir_header("blobs/sha256/"), io::empty())
        .map_err(SaveError::Write)?;
    let mut written = HashSet::new();
    for img in images {
        for d in std::iter::once(&img.config)
            .chain(&img.layers)
            .chain(std::iter::once(&img.manifest))
        {
            if !written.insert(d.clone()) {
                continue;
            }
            let f = content.open_blob(d)?;
            let size = f
                .metadata()
                .map_err(|source| ContentError::Io {
                    op: "stat",
                    path: content.path(d),
                    source,
                })?
                .len();
            let path = format!("blobs/sha256/{}", d.hex());
            tar.append(&header(&path, size), f)
                .map_err(SaveError::Write)?;
        }
    }
    let mut manifests = Vec::new();
    for img in images {
        let size = std::fs::metadata(content.path(&img.manifest))
            .map_err(|source| ContentError::Io {
                op: "stat",
                path: content.path(&img.manifest),
                source,
            })?
            .len();
        let desc = |r: Option<&Reference>| {
            let mut d = json!({
                "mediaType": img.manifest_media_type,
                "digest": img.manifest.as_str(),
                "size": size,
            });
            if let Some(r) = r {
                let mut ann = json!({ ANNOTATION_IMAGE_NAME: r.to_string() });
                match (format, r.tag()) {
                    (Format::Docker, Some(t)) => ann[ANNOTATION_REF_NAME] = json!(t),
                    // skopeo and umoci look images up by this name; keep it unique per reference.
                    (Format::Oci, _) => ann[ANNOTATION_REF_NAME] = json!(r.familiar()),
                    (Format::Docker, None) => {}
                }
                d["annotations"] = ann;
            }
            d
        };
        if img.references.is_empty() {
            manifests.push(desc(None));
        }
        for r in &img.references {
            manifests.push(desc(Some(r)));
        }
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    add(&mut tar, "index.json", &json_bytes(&index))?;
    if format == Format::Docker {
        let entries: Vec<Value> = images
            .iter()
            .map(|img| {
                let tags: Vec<String> = img.references.iter().filter(|r| r.tag().is_some()).map(|r| r.familiar()).collect();
                json!({
                    "Config": format!("blobs/sha256/{}", img.config.hex()),
                    "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags) },
                    "Layers": img.layers.iter().map(|d| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
                })
            })
            .collect();
        add(
            &mut tar,
            "manifest.json",
            &json_bytes(&Value::Array(entries)),
        )?;
    }
    tar.into_inner()
        .map_err(SaveError::Write)?
        .flush()
        .map_err(SaveError::Write)?;
    Ok(())
}
