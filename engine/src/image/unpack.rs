//! Unpacking layers into the storage driver, as containerd does (DESIGN §3).
//!
//! For each layer, base first: `Stat(chain)` — present, skip; else `Prepare("extract-<nonce>
//! <chain>", parent chain, {containerd.io/snapshot.ref: chain})`, apply the layer into the
//! returned mounts, and `Commit(chain, key)`. With an overlay upper dir or an aufs branch the tar
//! is written straight into the directory the mounts name (the `upperdir=` option, the branch,
//! or the bind source of a snapshot without parent); otherwise the mounts are mounted on a
//! temporary directory under the engine root and the tar applied through them. A failed layer's
//! extract snapshot is removed, and so are the layers this call committed before it, so a
//! failed unpack leaves nothing behind. Shared layers exist once: they are skipped by `Stat`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use strata_proto::snapshots::{
    CommitSnapshotRequest, Kind, ListSnapshotsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest,
};
use strata_proto::types::Mount;
use tonic::Code;

use super::apply::{self, Applied, ApplyError, ApplyMode};
use crate::content::{ContentError, ContentStore, Digest};
use crate::storage::Storage;

/// The label containerd puts the target chain id in.
pub const LABEL_SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// A layer to unpack.
#[derive(Debug, Clone)]
pub struct UnpackLayer {
    /// The committed snapshot's name.
    pub chain_id: String,
    /// The chain below it.
    pub parent: Option<String>,
    /// The layer blob.
    pub blob: Digest,
    /// The diff id the image's config gives it.
    pub diff_id: Digest,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The snapshotter refused or is unavailable.
    #[error("{}", storage_message(op, key, status))]
    Storage {
        /// The call.
        op: &'static str,
        /// The snapshot key.
        key: String,
        /// What it said.
        status: Box<tonic::Status>,
    },
    /// The layer could not be applied.
    #[error("layer {blob}: {source}")]
    Apply {
        /// The blob.
        blob: Digest,
        /// Why.
        source: ApplyError,
    },
    /// The layer is not the one the config names.
    #[error("layer {blob} has diff id {actual}, but the image config says {expected}")]
    DiffId {
        /// The blob.
        blob: Digest,
        /// From the config.
        expected: Digest,
        /// What it hashed to.
        actual: Digest,
    },
    /// Reading the blob failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Mounting the snapshot failed.
    #[error("mounting the snapshot to apply layer {blob}: {source}")]
    Mount {
        /// The blob.
        blob: Digest,
        /// Why.
        source: Box<strata_snapshotter::mount::MountError>,
    },
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
    /// The blocking apply task died.
    #[error("the layer apply task failed: {0}")]
    Task(String),
}

/// One line for a snapshotter failure; an unreachable plugin is named as such (not by the
/// transport's words, which a client would take for the engine being unreachable).
fn storage_message(op: &str, key: &str, status: &tonic::Status) -> String {
    if status.code() == Code::Unavailable {
        format!("storage driver unavailable ({op} {key}): it is restarting or stopped; try again")
    } else {
        format!("storage driver: {op} {key}: {}", status.message())
    }
}

impl UnpackError {
    /// Whether the storage driver is the reason (so a client may retry).
    pub fn storage_status(&self) -> Option<&tonic::Status> {
        match self {
            UnpackError::Storage { status, .. } => Some(status.as_ref()),
            _ => None,
        }
    }
}

fn storage_err<'a>(
    op: &'static str,
    key: &'a str,
) -> impl FnOnce(tonic::Status) -> UnpackError + 'a {
    move |status| UnpackError::Storage {
        op,
        key: key.to_string(),
        status: Box::new(status),
    }
}

/// Whether a committed snapshot `chain` exists.
pub async fn exists(storage: &Storage, chain: &str) -> Result<bool, UnpackError> {
    let req = StatSnapshotRequest {
        snapshotter: storage.driver().to_string(),
        key: chain.to_string(),
    };
    match storage.snapshots().stat(req).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == Code::NotFound => Ok(false),
        Err(s) => Err(storage_err("stat", chain)(s)),
    }
}

/// Removes a snapshot (missing is fine).
pub async fn remove(storage: &Storage, key: &str) -> Result<(), UnpackError> {
    let req = RemoveSnapshotRequest {
        snapshotter: storage.driver().to_string(),
        key: key.to_string(),
    };
    match storage.snapshots().remove(req).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(storage_err("remove", key)(s)),
    }
}

/// The directory to write a layer into directly, and how, if the mounts name one: a writable
/// bind mount shows its source as it is, so the layer goes there as through a mount (whiteouts
/// delete; for the aufs plugin that source is its union, which makes the whiteouts); an overlay
/// upper dir or an aufs rw branch takes the layer in the driver's own whiteout form.
fn direct_dir(mounts: &[Mount], mode: ApplyMode) -> Option<(PathBuf, ApplyMode)> {
    let [m] = mounts else { return None };
    let opt = |prefix: &str| {
        m.options
            .iter()
            .find_map(|o| o.strip_prefix(prefix).map(str::to_string))
    };
    let bind = m.r#type == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
    if bind {
        if m.options.iter().any(|o| o == "ro") {
            return None;
        }
        return Some((PathBuf::from(&m.source), ApplyMode::Mounted));
    }
    match (mode, m.r#type.as_str()) {
        (ApplyMode::OverlayUpper, "overlay") => {
            opt("upperdir=").map(|d| (PathBuf::from(d), ApplyMode::OverlayUpper))
        }
        (ApplyMode::AufsBranch, "aufs") => {
            let br = opt("br:").or_else(|| opt("br="))?;
            let first = br.split(':').next()?;
            Some((
                PathBuf::from(first.split('=').next()?),
                ApplyMode::AufsBranch,
            ))
        }
        _ => None,
    }
}

/// Applies one blob into a prepared snapshot's mounts.
fn apply_into(
    content: &ContentStore,
    blob: &Digest,
    diff_id: Option<&Digest>,
    mounts: &[Mount],
    mode: ApplyMode,
    tmp: &Path,
) -> Result<Applied, UnpackError> {
    let reader = content.open_blob(blob)?;
    // An uncompressed blob was verified against its digest when it was stored: if that is the
    // diff id the config names, the tar need not be hashed again.
    let known = (Some(blob) == diff_id).then_some(blob);
    let wrap = |source| UnpackError::Apply {
        blob: blob.clone(),
        source,
    };
    if let Some((dir, how)) = direct_dir(mounts, mode) {
        return apply::apply_layer_known(reader, &dir, how, known).map_err(wrap);
    }
    let target = tmp.join(format!("apply-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&target).map_err(|source| UnpackError::Io {
        op: "create directory",
        path: target.clone(),
        source,
    })?;
    let result = strata_snapshotter::mount::mount_all(mounts, &target)
        .map_err(|source| UnpackError::Mount {
            blob: blob.clone(),
            source: Box::new(source),
        })
        .and_then(|()| {
            let r = apply::apply_layer_known(reader, &target, ApplyMode::Mounted, known)
                .map_err(wrap);
            if let Err(e) = strata_snapshotter::mount::unmount_all(&target) {
                tracing::warn!(%e, target = %target.display(), "unmounting a layer's apply mount failed");
            }
            r
        });
    if let Err(e) = std::fs::remove_dir(&target) {
        tracing::warn!(%e, target = %target.display(), "removing a layer's apply mount point failed");
    }
    result
}

/// Unpacks `layers` (base first); returns the chains this call committed and the uncompressed
/// size of each layer it applied.
pub async fn unpack(
    storage: &Storage,
    content: &ContentStore,
    tmp: &Path,
    layers: &[UnpackLayer],
) -> Result<(Vec<String>, HashMap<String, u64>), UnpackError> {
    let mut committed: Vec<String> = Vec::new();
    let mut sizes = HashMap::new();
    let result = unpack_inner(storage, content, tmp, layers, &mut committed, &mut sizes).await;
    if let Err(e) = result {
        for chain in committed.iter().rev() {
            if let Err(re) = remove(storage, chain).await {
                tracing::warn!(%re, chain, "removing a layer of a failed unpack failed");
            }
        }
        return Err(e);
    }
    Ok((committed, sizes))
}

async fn unpack_inner(
    storage: &Storage,
    content: &ContentStore,
    tmp: &Path,
    layers: &[UnpackLayer],
    committed: &mut Vec<String>,
    sizes: &mut HashMap<String, u64>,
) -> Result<(), UnpackError> {
    let mut mode = None;
    for layer in layers {
        if exists(storage, &layer.chain_id).await? {
            continue;
        }
        let mode = match mode {
            Some(m) => m,
            None => {
                let caps = storage.capabilities().await;
                let m = ApplyMode::from_proto(caps.apply_mode());
                mode = Some(m);
                m
            }
        };
        let key = format!("extract-{:016x} {}", rand::random::<u64>(), layer.chain_id);
        let req = PrepareSnapshotRequest {
            snapshotter: storage.driver().to_string(),
            key: key.clone(),
            parent: layer.parent.clone().unwrap_or_default(),
            labels: [(LABEL_SNAPSHOT_REF.to_string(), layer.chain_id.clone())].into(),
        };
        let mounts = match storage.snapshots().prepare(req).await {
            Ok(r) => r.into_inner().mounts,
            // Another unpack is making the same layer; it will be there when it is done.
            Err(s) if s.code() == Code::AlreadyExists => continue,
            Err(s) => return Err(storage_err("prepare", &key)(s)),
        };
        let (c, blob, t) = (content.clone(), layer.blob.clone(), tmp.to_path_buf());
        let diff = layer.diff_id.clone();
        let applied = tokio::task::spawn_blocking(move || {
            apply_into(&c, &blob, Some(&diff), &mounts, mode, &t)
        })
        .await
        .map_err(|e| UnpackError::Task(e.to_string()))
        .and_then(|r| r);
        let applied = match applied {
            Ok(a) if a.diff_id == layer.diff_id => a,
            Ok(a) => {
                remove_quietly(storage, &key).await;
                return Err(UnpackError::DiffId {
                    blob: layer.blob.clone(),
                    expected: layer.diff_id.clone(),
                    actual: a.diff_id,
                });
            }
            Err(e) => {
                remove_quietly(storage, &key).await;
                return Err(e);
            }
        };
        let req = CommitSnapshotRequest {
            snapshotter: storage.driver().to_string(),
            name: layer.chain_id.clone(),
            key: key.clone(),
            labels: [(LABEL_SNAPSHOT_REF.to_string(), layer.chain_id.clone())].into(),
            parent: String::new(),
        };
        match storage.snapshots().commit(req).await {
            Ok(_) => committed.push(layer.chain_id.clone()),
            Err(s) if s.code() == Code::AlreadyExists => remove_quietly(storage, &key).await,
            Err(s) => {
                remove_quietly(storage, &key).await;
                return Err(storage_err("commit", &layer.chain_id)(s));
            }
        }
        sizes.insert(layer.chain_id.clone(), applied.tar_size);
    }
    Ok(())
}

/// Removes what an unpack interrupted by a crash left — `extract-…` snapshots in the driver and
/// apply mount points under `tmp` (unmounted first) — and layer snapshots (committed, named by a
/// chain id) that no image in `keep` uses and nothing sits on: the ones a forced `rmi` had to
/// leave under a container. Call it with no unpack running. Returns how many it removed.
pub async fn remove_leftovers(
    storage: &Storage,
    tmp: &Path,
    keep: &HashSet<String>,
) -> Result<usize, UnpackError> {
    if let Ok(rd) = std::fs::read_dir(tmp) {
        for e in rd.flatten() {
            let p = e.path();
            if let Err(err) = strata_snapshotter::mount::unmount_all(&p) {
                tracing::warn!(%err, path = %p.display(), "unmounting a stale apply mount failed");
            }
            if let Err(err) = std::fs::remove_dir(&p) {
                tracing::warn!(%err, path = %p.display(), "removing a stale apply mount point failed");
            }
        }
    }
    let req = ListSnapshotsRequest {
        snapshotter: storage.driver().to_string(),
        filters: Vec::new(),
    };
    let mut stream = match storage.snapshots().list(req).await {
        Ok(r) => r.into_inner(),
        // containerd's snapshotters answer NotFound while they hold no snapshot at all.
        Err(s) if s.code() == Code::NotFound => return Ok(0),
        Err(s) => return Err(storage_err("list", "snapshots")(s)),
    };
    let mut all: Vec<(String, String, bool)> = Vec::new();
    while let Some(batch) = stream
        .message()
        .await
        .map_err(storage_err("list", "snapshots"))?
    {
        all.extend(batch.info.into_iter().map(|i| {
            let committed = i.kind() == Kind::Committed;
            (i.name, i.parent, committed)
        }));
    }
    let is_chain = |n: &str| {
        n.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let mut removed = 0;
    for (name, _, _) in all
        .iter()
        .filter(|(n, _, _)| n.starts_with("extract-") && n.contains(' '))
    {
        tracing::info!(
            key = name,
            "removing an extract snapshot an interrupted unpack left"
        );
        remove(storage, name).await?;
        removed += 1;
    }
    all.retain(|(n, _, _)| !(n.starts_with("extract-") && n.contains(' ')));
    // Orphan layers, children first: each round removes those nothing else sits on.
    loop {
        let parents: HashSet<&str> = all.iter().map(|(_, p, _)| p.as_str()).collect();
        let round: Vec<String> = all
            .iter()
            .filter(|(n, _, c)| {
                *c && is_chain(n) && !keep.contains(n) && !parents.contains(n.as_str())
            })
            .map(|(n, _, _)| n.clone())
            .collect();
        if round.is_empty() {
            return Ok(removed);
        }
        for name in &round {
            tracing::info!(chain = name, "removing a layer snapshot no image uses");
            remove(storage, name).await?;
            removed += 1;
        }
        all.retain(|(n, _, _)| !round.contains(n));
    }
}

async fn remove_quietly(storage: &Storage, key: &str) {
    if let Err(e) = remove(storage, key).await {
        tracing::warn!(%e, key, "removing an extract snapshot failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str, src: &str, opts: &[&str]) -> Mount {
        Mount {
            r#type: t.into(),
            source: src.into(),
            options: opts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_unreachable_driver_is_named_as_such() {
        let e = storage_err("stat", "sha256:x")(tonic::Status::unavailable("transport error"));
        let msg = e.to_string();
        assert!(
            msg.starts_with("storage driver unavailable (stat sha256:x)"),
            "{msg}"
        );
        assert!(!msg.contains("transport"), "{msg}");
        assert_eq!(
            e.storage_status().map(|s| s.code()),
            Some(Code::Unavailable)
        );
        let e = storage_err("prepare", "k")(tonic::Status::failed_precondition("no parent"));
        assert_eq!(e.to_string(), "storage driver: prepare k: no parent");
    }

    #[test]
    fn finds_the_directory_to_write_into() {
        let ov = m(
            "overlay",
            "overlay",
            &["workdir=/w", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"],
        );
        let bind = m("bind", "/s/1/fs", &["rw", "rbind"]);
        let ro = m("bind", "/s/1/fs", &["ro", "rbind"]);
        let aufs = m("aufs", "none", &["br:/b/rw=rw:/b/1=ro+wh"]);
        let one = |x: &Mount, mode| direct_dir(std::slice::from_ref(x), mode);
        use ApplyMode::*;
        assert_eq!(
            one(&ov, OverlayUpper),
            Some(("/s/2/fs".into(), OverlayUpper))
        );
        assert_eq!(one(&bind, OverlayUpper), Some(("/s/1/fs".into(), Mounted)));
        assert_eq!(one(&bind, AufsBranch), Some(("/s/1/fs".into(), Mounted)));
        assert_eq!(one(&bind, Mounted), Some(("/s/1/fs".into(), Mounted)));
        assert_eq!(one(&aufs, AufsBranch), Some(("/b/rw".into(), AufsBranch)));
        assert_eq!(one(&ro, Mounted), None);
        assert_eq!(one(&ov, Mounted), None);
        assert_eq!(direct_dir(&[ov.clone(), bind], OverlayUpper), None);
        assert_eq!(one(&m("ext4", "/dev/x", &[]), OverlayUpper), None);
    }

    /// The MOUNTED path: the snapshot's mounts (here an overlay of a lower with `etc/gone`) are
    /// mounted on a temporary directory, the layer applied through them with real deletions
    /// (which overlay records as its own whiteouts), and unmounted again. Needs root.
    #[test]
    fn sudo_mounted_apply_goes_through_a_temporary_mount() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(&dir.path().join("engine")).unwrap();
        let (lower, upper, work) = (
            dir.path().join("lower"),
            dir.path().join("upper"),
            dir.path().join("work"),
        );
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/gone"), b"x").unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in [("etc/new", &b"n"[..]), ("etc/.wh.gone", &b""[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_path(path).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let (blob, _) = content.write(&tar[..], None).unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let opts = [
            format!("workdir={}", work.display()),
            format!("upperdir={}", upper.display()),
            format!("lowerdir={}", lower.display()),
        ];
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let mounts = [m("overlay", "overlay", &opts)];
        let applied = apply_into(&content, &blob, None, &mounts, ApplyMode::Mounted, &tmp).unwrap();
        assert_eq!(applied.diff_id, Digest::of(&tar));
        assert_eq!(std::fs::read(upper.join("etc/new")).unwrap(), b"n");
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let wh = std::fs::symlink_metadata(upper.join("etc/gone")).unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "overlay's whiteout"
        );
        assert!(!upper.join("etc/.wh.gone").exists());
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "the mount point is gone"
        );
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounted.contains(&*tmp.to_string_lossy()), "still mounted");
    }
}
