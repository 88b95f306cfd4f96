//! Reading image archives: Docker `save` tarballs (`manifest.json` with legacy layer dirs, or
//! Docker 25's OCI-layout form) and OCI image layouts/archives (`index.json`, `blobs/sha256`),
//! gzip-compressed or not, with any number of images.
//!
//! The archive is read in one pass. Every file that is not archive metadata goes into the content
//! store as it streams; files named `blobs/sha256/<hex>` are checked against that digest as they
//! are written. Then the manifests are followed and every descriptor checked (digest, size),
//! legacy layers are checked against the config's diff ids, and a Docker archive without manifests
//! gets a synthesized OCI manifest (deterministic, so save → load keeps its digest). On any
//! error the blobs this load added are deleted again.
//!
//! Writing archives is in [`super::save`].

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use serde_json::{json, Value};

use super::apply::{self, ApplyError};
use super::reference::Reference;
use crate::content::{ContentError, ContentStore, Digest, Pins};

/// OCI media types.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Uncompressed OCI layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// gzip OCI layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
}

/// The annotation containerd (and Docker 25) put the full image name in.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation with a reference name (a tag, or a whole reference).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The biggest metadata file (JSON) read into memory.
const METADATA_MAX: u64 = 64 << 20;

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The stream could not be read (truncated, corrupt gzip or tar).
    #[error("reading the image archive: {0}")]
    Read(#[source] io::Error),
    /// Storing or reading a blob failed (including a blob whose digest does not match).
    #[error("image archive: {0}")]
    Content(#[from] ContentError),
    /// A file the archive's manifests name is not in it.
    #[error("invalid image archive: {0:?} is missing")]
    Missing(String),
    /// A structural problem.
    #[error("invalid image archive: {0}")]
    Invalid(String),
    /// A JSON document is malformed.
    #[error("invalid image archive: {what} is not valid JSON: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A layer could not be hashed.
    #[error("image archive layer: {0}")]
    Layer(#[from] ApplyError),
}

/// A layer blob of an image in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLayer {
    /// The blob.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// The diff id the config gives it.
    pub diff_id: Digest,
}

/// An image found in an archive; its blobs are in the content store, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveImage {
    /// The manifest.
    pub manifest_digest: Digest,
    /// Its media type.
    pub manifest_media_type: String,
    /// The config (the image id).
    pub config_digest: Digest,
    /// The layers, base first.
    pub layers: Vec<ArchiveLayer>,
    /// The references it is tagged with.
    pub tags: Vec<Reference>,
}

/// What [`read_archive`] found.
#[derive(Debug, Default)]
pub struct ReadArchive {
    /// The images.
    pub images: Vec<ArchiveImage>,
    /// Blobs this load added to the content store that its images use (to delete if the load
    /// fails later).
    pub new_blobs: Vec<Digest>,
    /// Blobs this load added that no image of the archive uses (to delete).
    pub unused: Vec<Digest>,
}

/// Files seen in the archive.
#[derive(Default)]
struct Files {
    /// Metadata files, read into memory.
    metadata: HashMap<String, Vec<u8>>,
    /// Stored files: path → (digest, size).
    blobs: HashMap<String, (Digest, u64)>,
    /// Symlinks and hard links: path → target path.
    links: HashMap<String, String>,
    /// Blobs that were not in the store before.
    new: HashSet<Digest>,
}

fn clean(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn is_metadata(path: &str) -> bool {
    matches!(
        path,
        "manifest.json" | "index.json" | "oci-layout" | "repositories"
    ) || path.ends_with("/json")
        || path.ends_with("/VERSION")
}

impl Files {
    fn resolve<'a>(&'a self, path: &'a str) -> &'a str {
        let mut p = path;
        for _ in 0..16 {
            match self.links.get(p) {
                Some(t) => p = t,
                None => break,
            }
        }
        p
    }

    fn blob(&self, path: &str) -> Result<(Digest, u64), ArchiveError> {
        self.blobs
            .get(self.resolve(&clean(path)))
            .cloned()
            .ok_or_else(|| ArchiveError::Missing(path.to_string()))
    }
}

fn parse_json(what: &str, bytes: &[u8]) -> Result<Value, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
        what: what.to_string(),
        source,
    })
}

fn invalid(s: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid(s.into())
}

/// Reads an archive into the content store, pinning in `pins` every blob it writes (see
/// [`Pins`]); `new` gets, whatever happens, the blobs that were not in the store before. The
/// caller deletes those the load does not keep, under the image lock (where no image record
/// can come to name them meanwhile): all of them if this fails, else [`ReadArchive::unused`].
pub fn read_archive_pinned(
    reader: impl Read,
    content: &ContentStore,
    pins: &mut Pins,
    new: &mut Vec<Digest>,
) -> Result<ReadArchive, ArchiveError> {
    let mut files = Files::default();
    let result = read_files(reader, content, pins, &mut files)
        .and_then(|()| images(content, pins, &mut files));
    new.extend(files.new.iter().cloned());
    let images = result?;
    // Blobs in the archive that no image uses are not kept.
    let used: HashSet<&Digest> = images
        .iter()
        .flat_map(|i| {
            [&i.manifest_digest, &i.config_digest]
                .into_iter()
                .chain(i.layers.iter().map(|l| &l.digest))
        })
        .collect();
    let (new_blobs, unused) = files.new.into_iter().partition(|d| used.contains(d));
    Ok(ReadArchive {
        images,
        new_blobs,
        unused,
    })
}

/// [`read_archive_pinned`] alone, removing what it added on failure and the blobs no image
/// uses on success (with nothing else changing images meanwhile).
#[cfg(test)]
pub fn read_archive(
    reader: impl Read,
    content: &ContentStore,
) -> Result<ReadArchive, ArchiveError> {
    let (mut pins, mut new) = (content.pins(), Vec::new());
    let r = read_archive_pinned(reader, content, &mut pins, &mut new);
    drop(pins);
    let discard = match &r {
        Ok(read) => &read.unused,
        Err(_) => &new,
    };
    for d in discard {
        let _ = content.delete(d);
    }
    r
}

fn present_blobs(content: &ContentStore) -> HashSet<String> {
    let probe = content.path(&Digest::of(b""));
    let Some(dir) = probe.parent() else {
        return HashSet::new();
    };
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn read_files(
    reader: impl Read,
    content: &ContentStore,
    pins: &mut Pins,
    files: &mut Files,
) -> Result<(), ArchiveError> {
    let before = present_blobs(content);
    let mut archive = tar::Archive::new(apply::decompressed(reader).map_err(ArchiveError::Read)?);
    let mut any = false;
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        any = true;
        let path = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name_bytes() else {
                    continue;
                };
                let target = String::from_utf8_lossy(&target).into_owned();
                let target = if kind == tar::EntryType::Symlink && !target.starts_with('/') {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
                    for c in target.split('/') {
                        match c {
                            "" | "." => {}
                            ".." => {
                                parts.pop();
                            }
                            c => parts.push(c),
                        }
                    }
                    parts.join("/")
                } else {
                    clean(&target)
                };
                files.links.insert(path, target);
                continue;
            }
            _ => continue,
        }
        let size = entry.size();
        if is_metadata(&path) {
            if size > METADATA_MAX {
                return Err(invalid(format!(
                    "{path} is larger than {METADATA_MAX} bytes"
                )));
            }
            let mut v = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut v).map_err(ArchiveError::Read)?;
            if v.len() as u64 != size {
                return Err(truncated(&path));
            }
            files.metadata.insert(path, v);
            continue;
        }
        let expected = path
            .strip_prefix("blobs/sha256/")
            .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok());
        let mut counted = Counting {
            inner: &mut entry,
            n: 0,
        };
        let (d, n) = match content.write_pinned(&mut counted, expected.as_ref(), pins) {
            Ok(x) => x,
            Err(ContentError::Mismatch { .. }) if counted.n != size => {
                return Err(truncated(&path))
            }
            Err(ContentError::Mismatch { expected, actual }) => {
                return Err(invalid(format!(
                    "blob {path} has digest {actual}, not the {expected} its name says"
                )))
            }
            Err(ContentError::Io { source, .. })
                if source.kind() == io::ErrorKind::UnexpectedEof =>
            {
                return Err(truncated(&path))
            }
            Err(e) => return Err(e.into()),
        };
        if !before.contains(d.hex()) {
            files.new.insert(d.clone());
        }
        if n != size {
            return Err(truncated(&path));
        }
        files.blobs.insert(path, (d, n));
    }
    if !any {
        return Err(invalid("the archive is empty"));
    }
    // Anything after the end-of-archive marker is ignored, but a truncated gzip is an error.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(ArchiveError::Read)?;
    Ok(())
}

/// Counts what is read through it.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

fn truncated(path: &str) -> ArchiveError {
    ArchiveError::Read(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the archive is truncated in {path}"),
    ))
}

fn images(
    content: &ContentStore,
    pins: &mut Pins,
    files: &mut Files,
) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let legacy_tags = legacy_repo_tags(files)?;
    if let Some(index) = files.metadata.get("index.json") {
        let index = parse_json("index.json", index)?;
        let mut out = Vec::new();
        for desc in index["manifests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let Some(mut img) = oci_image(content, desc, 0)? else {
                continue;
            };
            if let Some(extra) = legacy_tags.get(&img.config_digest) {
                for t in extra {
                    if !img.tags.contains(t) {
                        img.tags.push(t.clone());
                    }
                }
            }
            merge(&mut out, img);
        }
        if out.is_empty() {
            return Err(invalid("index.json names no image manifest"));
        }
        return Ok(out);
    }
    if files.metadata.contains_key("manifest.json") {
        return legacy_images(content, pins, files);
    }
    Err(invalid(
        "no manifest.json or index.json: not a Docker save tarball or OCI image archive",
    ))
}

/// Two index entries for one manifest (one per tag) make one image.
fn merge(out: &mut Vec<ArchiveImage>, img: ArchiveImage) {
    if let Some(have) = out
        .iter_mut()
        .find(|i| i.manifest_digest == img.manifest_digest)
    {
        for t in img.tags {
            if !have.tags.contains(&t) {
                have.tags.push(t);
            }
        }
    } else {
        out.push(img);
    }
}

/// A descriptor's blob: present (in the archive or already in the store), of the given size.
fn descriptor_blob(content: &ContentStore, desc: &Value) -> Result<(Digest, u64), ArchiveError> {
    let ds = desc["digest"].as_str().unwrap_or("");
    let d = Digest::parse(ds)
        .map_err(|_| invalid(format!("descriptor digest {ds:?} is not sha256:<hex>")))?;
    let path = content.path(&d);
    let size = std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|_| ArchiveError::Missing(format!("blobs/sha256/{}", d.hex())))?;
    if let Some(want) = desc["size"].as_u64() {
        if want != size {
            return Err(invalid(format!(
                "blob {d} is {size} bytes, its descriptor says {want}"
            )));
        }
    }
    Ok((d, size))
}

fn tags_of(desc: &Value) -> Vec<Reference> {
    let ann = &desc["annotations"];
    let name = ann[ANNOTATION_IMAGE_NAME]
        .as_str()
        .and_then(|n| Reference::parse(n).ok());
    let name = name.or_else(|| {
        ann[ANNOTATION_REF_NAME]
            .as_str()
            .filter(|n| n.contains(':') || n.contains('/'))
            .and_then(|n| Reference::parse(n).ok())
    });
    name.into_iter().collect()
}

fn oci_image(
    content: &ContentStore,
    desc: &Value,
    depth: u32,
) -> Result<Option<ArchiveImage>, ArchiveError> {
    let mt = desc["mediaType"].as_str().unwrap_or("");
    let (digest, _) = descriptor_blob(content, desc)?;
    let doc = parse_json(&format!("manifest {digest}"), &content.read(&digest)?)?;
    let mt = if mt.is_empty() {
        doc["mediaType"].as_str().unwrap_or("")
    } else {
        mt
    };
    if mt == media::OCI_INDEX || mt == media::DOCKER_LIST || doc["manifests"].is_array() {
        if depth > 2 {
            return Err(invalid("image indexes nested too deep"));
        }
        let Some(child) = pick_platform(&doc) else {
            return Ok(None);
        };
        let img = oci_image(content, child, depth + 1)?;
        return Ok(img.map(|mut i| {
            i.tags = tags_of(desc);
            i
        }));
    }
    if mt != media::OCI_MANIFEST && mt != media::DOCKER_MANIFEST && !doc["config"].is_object() {
        return Ok(None);
    }
    let (config, _) = descriptor_blob(content, &doc["config"])?;
    let cfg = parse_json(&format!("config {config}"), &content.read(&config)?)?;
    let diff_ids = diff_ids(&cfg, &config)?;
    let layer_descs = doc["layers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if layer_descs.len() != diff_ids.len() {
        return Err(invalid(format!(
            "manifest {digest} has {} layers but its config lists {} diff ids",
            layer_descs.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (ld, diff_id) in layer_descs.iter().zip(diff_ids) {
        let (d, size) = descriptor_blob(content, ld)?;
        let media_type = ld["mediaType"]
            .as_str()
            .unwrap_or(media::OCI_LAYER)
            .to_string();
        if media_type.contains("zstd") {
            return Err(invalid(format!(
                "layer {d} is zstd-compressed, which is not supported"
            )));
        }
        layers.push(ArchiveLayer {
            digest: d,
            media_type,
            size,
            diff_id,
        });
    }
    Ok(Some(ArchiveImage {
        manifest_digest: digest,
        manifest_media_type: mt.to_string(),
        config_digest: config,
        layers,
        tags: tags_of(desc),
    }))
}

/// The manifest for this machine's platform in an index (linux/amd64 here), else the first
/// that is not an attestation.
fn pick_platform(index: &Value) -> Option<&Value> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let ms = index["manifests"].as_array()?;
    let real = |m: &&Value| m["annotations"]["vnd.docker.reference.type"].is_null();
    ms.iter()
        .filter(real)
        .find(|m| m["platform"]["architecture"] == arch && m["platform"]["os"] == "linux")
        .or_else(|| ms.iter().find(real))
}

fn diff_ids(cfg: &Value, config: &Digest) -> Result<Vec<Digest>, ArchiveError> {
    cfg["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| invalid(format!("config {config} has no rootfs.diff_ids")))?
        .iter()
        .map(|v| {
            let s = v.as_str().unwrap_or("");
            Digest::parse(s)
                .map_err(|_| invalid(format!("config {config} has a bad diff id {s:?}")))
        })
        .collect()
}

/// RepoTags of `manifest.json` by config digest (Docker 25 archives carry both files).
fn legacy_repo_tags(files: &Files) -> Result<HashMap<Digest, Vec<Reference>>, ArchiveError> {
    let mut out: HashMap<Digest, Vec<Reference>> = HashMap::new();
    let Some(m) = files.metadata.get("manifest.json") else {
        return Ok(out);
    };
    let m = parse_json("manifest.json", m)?;
    for e in m.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let Ok((config, _)) = files.blob(e["Config"].as_str().unwrap_or("")) else {
            continue;
        };
        out.entry(config).or_default().extend(repo_tags(e)?);
    }
    Ok(out)
}

fn repo_tags(entry: &Value) -> Result<Vec<Reference>, ArchiveError> {
    entry["RepoTags"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
        .map(|t| Reference::parse(t).map_err(|e| invalid(format!("manifest.json: {e}"))))
        .collect()
}

fn is_gzip(content: &ContentStore, d: &Digest) -> Result<bool, ArchiveError> {
    let mut f = content.open_blob(d)?;
    let mut head = [0u8; 2];
    let n = f.read(&mut head).map_err(ArchiveError::Read)?;
    Ok(n == 2 && head == [0x1f, 0x8b])
}

fn legacy_images(
    content: &ContentStore,
    pins: &mut Pins,
    files: &mut Files,
) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let m = parse_json("manifest.json", &files.metadata["manifest.json"])?;
    let entries = m
        .as_array()
        .ok_or_else(|| invalid("manifest.json is not a list"))?;
    let mut out = Vec::new();
    for e in entries {
        let cpath = e["Config"]
            .as_str()
            .ok_or_else(|| invalid("a manifest.json entry has no Config"))?;
        let (config, config_size) = files.blob(cpath)?;
        let file_hex = cpath
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if file_hex.len() == 64 && file_hex != config.hex() {
            return Err(invalid(format!(
                "config {cpath} has digest {config}, not the one its name says"
            )));
        }
        let cfg = parse_json(cpath, &content.read(&config)?)?;
        let diff_ids = diff_ids(&cfg, &config)?;
        let lpaths = e["Layers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if lpaths.len() != diff_ids.len() {
            return Err(invalid(format!(
                "{cpath}: manifest.json lists {} layers but the config lists {} diff ids",
                lpaths.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (lp, diff_id) in lpaths.iter().zip(diff_ids) {
            let lp = lp.as_str().unwrap_or("");
            let (d, size) = files.blob(lp)?;
            let gz = is_gzip(content, &d)?;
            let actual = if gz {
                apply::diff_id(content.open_blob(&d)?)?.0
            } else {
                d.clone()
            };
            if actual != diff_id {
                return Err(invalid(format!(
                    "layer {lp} has diff id {actual}, but the config says {diff_id}"
                )));
            }
            let media_type = if gz {
                media::OCI_LAYER_GZIP
            } else {
                media::OCI_LAYER
            };
            layers.push(ArchiveLayer {
                digest: d,
                media_type: media_type.into(),
                size,
                diff_id,
            });
        }
        let manifest = synthesize_manifest(&config, config_size, &layers);
        let manifest_digest = Digest::of(&manifest);
        // Written (pinned) either way: a removal between the look and the pin is undone.
        let existed = content.contains(&manifest_digest);
        content.write_pinned(&manifest[..], Some(&manifest_digest), pins)?;
        if !existed {
            files.new.insert(manifest_digest.clone());
        }
        merge(
            &mut out,
            ArchiveImage {
                manifest_digest,
                manifest_media_type: media::OCI_MANIFEST.into(),
                config_digest: config,
                layers,
                tags: repo_tags(e)?,
            },
        );
    }
    Ok(out)
}

/// The OCI manifest of a config and layers, byte-for-byte the same every time.
pub fn synthesize_manifest(config: &Digest, config_size: u64, layers: &[ArchiveLayer]) -> Vec<u8> {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config.as_str(), "size": config_size},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest.as_str(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
