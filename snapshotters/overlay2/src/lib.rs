//! The overlay2 storage driver: Docker's overlay2 layout behind containerd's snapshots API.
//!
//! On disk, under the plugin's root:
//!
//! ```text
//! snapshots/<id>/diff      the snapshot's own files (overlay upperdir, or the bind source)
//! snapshots/<id>/work      overlay workdir (active snapshots with a parent)
//! l/<short>  ->  ../snapshots/<id>/diff
//! staging/<n>/{diff,work}  empty snapshot trees made ahead of time (see `pool`)
//! trash/<id>               removed snapshots, deleted by a background thread
//! metadata.db/             sled: keys, kinds, parents, labels (see strata-snapshotter)
//! ```
//!
//! The short links keep overlay's `lowerdir` option small: a lower layer costs
//! `<root>/l/<short>:`, and `<short>` is the snapshot id in base 32 (a few characters), so 128
//! layers fit one page after containerd's lowerdir compaction, and Strata's own mounter has no
//! limit at all (see `strata_snapshotter::mount`).
//!
//! Mounts: no parent → a bind of `diff` (`rw` for an active snapshot, `ro` for a view); a view of
//! one parent → a read-only bind of the parent's `diff`; otherwise an `overlay` with the lower
//! directories nearest parent first, plus `upperdir` and `workdir` for an active snapshot.

mod pool;
mod quota;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use strata_proto::storage::{ApplyMode, CapabilitiesResponse};
use strata_proto::types::Mount;
use strata_snapshotter::error::{Error, IoContext, Result};
use strata_snapshotter::fsutil::{backing_fs, disk_usage, remove_tree};
use strata_snapshotter::options::{parse_size, OptionError, StorageOpts};
use strata_snapshotter::{Kind, Snap, Snapshotter, Usage};

pub use quota::QuotaError;

/// The options this driver takes.
pub const OPTIONS: &[&str] = &["overlay2.mountopt", "overlay2.size"];

/// The kernel's limit on overlay lower layers (OVL_MAX_STACK).
pub const MAX_LAYERS: u32 = 500;

/// Why the driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An option is wrong.
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The root cannot hold overlay2 storage.
    #[error(transparent)]
    Storage(#[from] Error),
}

impl From<OpenError> for strata_snapshotter::plugin::StartError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Option(o) => o.into(),
            OpenError::Storage(s) => s.into(),
        }
    }
}

/// The overlay2 driver.
#[derive(Debug)]
pub struct Overlay2 {
    root: PathBuf,
    snapshots: PathBuf,
    links: PathBuf,
    /// Extra overlay mount options (`overlay2.mountopt`).
    mountopt: Vec<String>,
    /// `index=off` is passed where the kernel has the index feature.
    index_off: bool,
    /// Whether the kernel's overlay leaves a layer's changes in its upper directory only.
    native_diff: bool,
    quota: Option<quota::Quota>,
    backing_fs: String,
    trash: PathBuf,
    pool: pool::Pool,
    /// Does what need not delay a reply: deletes what Remove moved to `trash/`, and makes the
    /// short links of new writable snapshots ahead of their Commit.
    worker: mpsc::Sender<Job>,
}

/// Work done after the reply, in order, by one background thread.
#[derive(Debug)]
enum Job {
    /// Delete a removed snapshot's tree.
    Delete(PathBuf),
    /// Make a short link (`link` → `target`) if the snapshot still exists.
    Link {
        link: PathBuf,
        target: PathBuf,
        dir: PathBuf,
    },
}

/// Starts the background thread, and hands it what an earlier run left in `trash`.
fn start_worker(trash: &Path) -> Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("overlay2-worker".into())
        .spawn(move || {
            for job in rx {
                match job {
                    Job::Delete(path) => {
                        if let Err(e) = remove_tree(&path) {
                            tracing::warn!(%e, "deleting a removed snapshot failed; cleanup will retry");
                        }
                    }
                    // Commit makes the link itself if it is not there yet; a link left after a
                    // racing Remove dangles, and Cleanup removes it.
                    Job::Link { link, target, dir } if dir.is_dir() => {
                        let _ = std::os::unix::fs::symlink(&target, &link);
                    }
                    Job::Link { .. } => {}
                }
            }
        })
        .map_err(|e| Error::io("start the background thread for", trash, e))?;
    for entry in fs::read_dir(trash).ctx("read directory", trash)? {
        let entry = entry.ctx("read directory", trash)?;
        let _ = tx.send(Job::Delete(entry.path()));
    }
    Ok(tx)
}

/// The short link name of a snapshot id: base 32 with Docker's alphabet.
pub fn short_name(mut id: u64) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    loop {
        out.push(ALPHABET[(id % 32) as usize]);
        id /= 32;
        if id == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

fn overlay_param(name: &str) -> Option<String> {
    fs::read_to_string(Path::new("/sys/module/overlay/parameters").join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

fn validate_mountopt(value: &str) -> std::result::Result<Vec<String>, String> {
    let opts: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for o in &opts {
        let key = o.split('=').next().unwrap_or_default();
        if matches!(key, "lowerdir" | "upperdir" | "workdir") {
            return Err(format!("{key} is set by the driver and cannot be given"));
        }
    }
    Ok(opts)
}

/// Whether readdir on `dir`'s filesystem reports file types (d_type).
fn supports_d_type(dir: &Path) -> Result<bool> {
    let probe = dir.join(".d_type-probe");
    fs::create_dir_all(&probe).ctx("create directory", &probe)?;
    let file = probe.join("f");
    fs::write(&file, b"").ctx("write", &file)?;
    let mut d = nix::dir::Dir::open(
        &probe,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io("open directory", &probe, e.into()))?;
    let mut known = true;
    for entry in d.iter() {
        let entry = entry.map_err(|e| Error::io("read directory", &probe, e.into()))?;
        if entry.file_name().to_bytes() == b"f" {
            known = entry.file_type().is_some();
        }
    }
    remove_tree(&probe)?;
    Ok(known)
}

impl Overlay2 {
    /// Opens the driver in `root` (made if missing), taking its options from `opts`.
    pub fn open(root: &Path, opts: &mut StorageOpts) -> std::result::Result<Self, OpenError> {
        let mountopt = opts
            .take_with("overlay2.mountopt", validate_mountopt)?
            .unwrap_or_default();
        let size = opts.take_with("overlay2.size", parse_size)?;
        if !Path::new("/sys/module/overlay").exists()
            && !fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("\toverlay\n"))
        {
            return Err(Error::Unimplemented(
                "the kernel has no overlay filesystem (not in /proc/filesystems)".into(),
            )
            .into());
        }
        let snapshots = root.join("snapshots");
        let links = root.join("l");
        let trash = root.join("trash");
        for d in [&snapshots, &links, &trash] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .ctx("create directory", d)?;
        }
        let backing = backing_fs(root)?;
        if backing == "overlayfs" {
            return Err(Error::Unimplemented(format!(
                "{} is on an overlay filesystem: overlay2 cannot stack on overlayfs; use another root",
                root.display()
            ))
            .into());
        }
        if !supports_d_type(root)? {
            return Err(Error::Unimplemented(format!(
                "the {backing} filesystem at {} does not support d_type, which overlay needs (for xfs, mkfs with ftype=1)",
                root.display()
            ))
            .into());
        }
        let quota = match size {
            None => None,
            Some(0) => None,
            Some(bytes) => Some(quota::Quota::new(root, bytes, &backing).map_err(|e| {
                OptionError::Invalid {
                    key: "overlay2.size".into(),
                    value: bytes.to_string(),
                    reason: e.to_string(),
                }
            })?),
        };
        let redirect = overlay_param("redirect_dir").is_some_and(|v| v == "Y" || v == "on");
        let metacopy = overlay_param("metacopy").is_some_and(|v| v == "Y" || v == "on");
        Ok(Overlay2 {
            root: root.to_path_buf(),
            snapshots,
            links,
            mountopt,
            index_off: overlay_param("index").is_some(),
            native_diff: !redirect && !metacopy,
            quota,
            backing_fs: backing,
            worker: start_worker(&trash)?,
            pool: pool::Pool::open(&root.join("staging"))?,
            trash,
        })
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    fn diff(&self, id: u64) -> PathBuf {
        self.dir(id).join("diff")
    }

    fn link(&self, id: u64) -> PathBuf {
        self.links.join(short_name(id))
    }

    /// Where a snapshot's short link points, relative to `l/`.
    fn link_target(id: u64) -> PathBuf {
        PathBuf::from("../snapshots")
            .join(id.to_string())
            .join("diff")
    }

    fn bind(source: &Path, ro: bool) -> Mount {
        Mount {
            r#type: "bind".into(),
            source: source.to_string_lossy().into_owned(),
            target: String::new(),
            options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
        }
    }
}

impl Snapshotter for Overlay2 {
    fn name(&self) -> &'static str {
        "overlay2"
    }

    fn create(&self, snap: &Snap<'_>) -> Result<()> {
        if snap.parents.len() > MAX_LAYERS as usize {
            return Err(Error::FailedPrecondition(format!(
                "the parent chain has {} layers; overlay mounts at most {MAX_LAYERS}",
                snap.parents.len()
            )));
        }
        let dir = self.dir(snap.id);
        match (snap.kind, snap.parents.is_empty()) {
            // A view of a parent mounts its parents' directories only; its own directory just
            // holds its place.
            (Kind::View, false) => fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .ctx("create directory", &dir)?,
            (Kind::View, true) => pool::make_tree(&dir, false)?,
            _ => self.pool.place(&dir)?,
        }
        if let (Some(q), Kind::Active) = (&self.quota, snap.kind) {
            q.limit(&dir.join("diff"), snap.id)
                .map_err(|e| Error::Driver {
                    driver: "overlay2",
                    message: e.to_string(),
                })?;
        }
        if snap.kind == Kind::Active {
            // Only committed snapshots need a link (only they are parents): make it now, off the
            // request path, so that Commit usually finds it made.
            let job = Job::Link {
                link: self.link(snap.id),
                target: Self::link_target(snap.id),
                dir,
            };
            let _ = self.worker.send(job);
        }
        Ok(())
    }

    /// Only committed snapshots are parents: Commit makes sure the short link exists (the
    /// background thread usually made it after Prepare).
    fn commit(&self, snap: &Snap<'_>) -> Result<()> {
        let link = self.link(snap.id);
        let target = Self::link_target(snap.id);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            return Ok(());
        }
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => Ok(()),
            // Made meanwhile by the background thread, or by a commit retried after a crash
            // between the link and the metadata.
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    && fs::read_link(&link).is_ok_and(|t| t == target) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::io("create link", link, e)),
        }
    }

    fn mounts(&self, snap: &Snap<'_>) -> Result<Vec<Mount>> {
        match (snap.kind, snap.parents) {
            (Kind::Committed, _) => Err(Error::FailedPrecondition(
                "committed snapshots have no mounts".into(),
            )),
            (kind, []) => Ok(vec![Self::bind(&self.diff(snap.id), kind == Kind::View)]),
            (Kind::View, [parent]) => Ok(vec![Self::bind(&self.diff(*parent), true)]),
            (kind, parents) => {
                let mut options = Vec::with_capacity(self.mountopt.len() + 4);
                if self.index_off {
                    options.push("index=off".to_string());
                }
                options.extend(self.mountopt.iter().cloned());
                if kind == Kind::Active {
                    options.push(format!(
                        "workdir={}",
                        self.dir(snap.id).join("work").display()
                    ));
                    options.push(format!("upperdir={}", self.diff(snap.id).display()));
                }
                let lowers: Vec<String> = parents
                    .iter()
                    .map(|p| self.link(*p).to_string_lossy().into_owned())
                    .collect();
                options.push(format!("lowerdir={}", lowers.join(":")));
                Ok(vec![Mount {
                    r#type: "overlay".into(),
                    source: "overlay".into(),
                    target: String::new(),
                    options,
                }])
            }
        }
    }

    fn remove(&self, id: u64) -> Result<()> {
        let link = self.link(id);
        match fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove link", link, e))
            }
            _ => {}
        }
        let dir = self.dir(id);
        let doomed = self.trash.join(id.to_string());
        match fs::rename(&dir, &doomed) {
            Ok(()) => {
                if let Err(mpsc::SendError(Job::Delete(path))) =
                    self.worker.send(Job::Delete(doomed))
                {
                    remove_tree(&path)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("move to trash", dir, e)),
        }
    }

    fn usage(&self, snap: &Snap<'_>) -> Result<Usage> {
        let diff = self.diff(snap.id);
        if diff.exists() {
            disk_usage(&diff)
        } else {
            // A view of a parent has no files of its own.
            Ok(Usage::default())
        }
    }

    fn cleanup(&self, live: &BTreeSet<u64>) -> Result<()> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.snapshots).ctx("read directory", &self.snapshots)? {
            let entry = entry.ctx("read directory", &self.snapshots)?;
            let name = entry.file_name();
            match name.to_str().and_then(|n| n.parse::<u64>().ok()) {
                Some(id) if live.contains(&id) => {}
                Some(id) => {
                    self.remove(id)?;
                    removed += 1;
                }
                None => {
                    tracing::warn!(path = %entry.path().display(), "cleanup: not a snapshot directory; left alone")
                }
            }
        }
        for entry in fs::read_dir(&self.trash).ctx("read directory", &self.trash)? {
            let entry = entry.ctx("read directory", &self.trash)?;
            remove_tree(&entry.path())?;
            removed += 1;
        }
        for entry in fs::read_dir(&self.links).ctx("read directory", &self.links)? {
            let entry = entry.ctx("read directory", &self.links)?;
            // A link whose snapshot directory is gone is left over from an interrupted create
            // or remove.
            if fs::metadata(entry.path()).is_err() {
                fs::remove_file(entry.path()).ctx("remove link", entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "cleanup removed storage no snapshot owns");
        }
        Ok(())
    }

    fn status(&self, snapshots: usize) -> Result<Vec<(String, String)>> {
        let yes_no = |b: bool| if b { "true" } else { "false" }.to_string();
        let mut rows = vec![
            ("Root Dir".to_string(), self.root.display().to_string()),
            ("Backing Filesystem".to_string(), self.backing_fs.clone()),
            ("Supports d_type".to_string(), yes_no(true)),
            ("Native Overlay Diff".to_string(), yes_no(self.native_diff)),
            (
                "Using metacopy".to_string(),
                yes_no(overlay_param("metacopy").is_some_and(|v| v == "Y")),
            ),
            ("Snapshots".to_string(), snapshots.to_string()),
            ("Max Layer Depth".to_string(), MAX_LAYERS.to_string()),
        ];
        if !self.mountopt.is_empty() {
            rows.push(("Mount Options".to_string(), self.mountopt.join(",")));
        }
        rows.push((
            "Default Layer Size".to_string(),
            self.quota.as_ref().map_or("unlimited".to_string(), |q| {
                format!("{} bytes (project quota)", q.bytes())
            }),
        ));
        Ok(rows)
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            driver: "overlay2".into(),
            native_diff: self.native_diff,
            apply_mode: ApplyMode::OverlayUpper as i32,
            quota: self.quota.is_some(),
            max_layer_depth: MAX_LAYERS,
            extra: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_short_and_distinct() {
        assert_eq!(short_name(0), "A");
        assert_eq!(short_name(1), "B");
        assert_eq!(short_name(32), "BA");
        let names: BTreeSet<String> = (0..5000).map(short_name).collect();
        assert_eq!(names.len(), 5000);
        assert!(short_name(u64::MAX).len() <= 13);
    }

    #[test]
    fn mountopt_refuses_driver_paths() {
        assert_eq!(
            validate_mountopt("nodev, metacopy=off").unwrap(),
            vec!["nodev", "metacopy=off"]
        );
        assert!(validate_mountopt("upperdir=/x").is_err());
    }

    fn driver(dir: &Path) -> Overlay2 {
        Overlay2::open(dir, &mut StorageOpts::default()).unwrap()
    }

    #[test]
    fn mounts_follow_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let d = driver(dir.path());
        let root = dir.path().display().to_string();
        let m = d
            .mounts(&Snap {
                id: 7,
                kind: Kind::Active,
                parents: &[],
            })
            .unwrap();
        assert_eq!(m[0].r#type, "bind");
        assert_eq!(m[0].source, format!("{root}/snapshots/7/diff"));
        assert_eq!(m[0].options, vec!["rw", "rbind"]);
        let m = d
            .mounts(&Snap {
                id: 7,
                kind: Kind::View,
                parents: &[3],
            })
            .unwrap();
        assert_eq!(
            (m[0].source.as_str(), m[0].options[0].as_str()),
            (format!("{root}/snapshots/3/diff").as_str(), "ro")
        );
        let m = d
            .mounts(&Snap {
                id: 9,
                kind: Kind::Active,
                parents: &[8, 2],
            })
            .unwrap();
        assert_eq!(m[0].r#type, "overlay");
        let opts = &m[0].options;
        assert_eq!(
            opts.last().unwrap(),
            &format!("lowerdir={root}/l/I:{root}/l/C")
        );
        assert!(opts.contains(&format!("upperdir={root}/snapshots/9/diff")));
        let m = d
            .mounts(&Snap {
                id: 9,
                kind: Kind::View,
                parents: &[8, 2],
            })
            .unwrap();
        assert!(!m[0].options.iter().any(|o| o.starts_with("upperdir")));
    }

    #[test]
    fn create_remove_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let d = driver(dir.path());
        d.create(&Snap {
            id: 1,
            kind: Kind::Active,
            parents: &[],
        })
        .unwrap();
        d.create(&Snap {
            id: 2,
            kind: Kind::Active,
            parents: &[1],
        })
        .unwrap();
        let two = Snap {
            id: 2,
            kind: Kind::Active,
            parents: &[1],
        };
        d.commit(&two).unwrap();
        d.commit(&two).unwrap();
        assert!(dir.path().join("snapshots/2/work").is_dir());
        assert!(
            dir.path().join("l/C").join(".").exists(),
            "link resolves to diff"
        );
        d.cleanup(&BTreeSet::from([1])).unwrap();
        assert!(!dir.path().join("snapshots/2").exists());
        assert!(fs::symlink_metadata(dir.path().join("l/C")).is_err());
        d.remove(1).unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("snapshots")).unwrap().count(),
            0
        );
    }

    #[test]
    fn bad_options_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = StorageOpts::parse(&["overlay2.size=lots"]).unwrap();
        let e = Overlay2::open(dir.path(), &mut o).unwrap_err().to_string();
        assert!(e.contains("overlay2.size"), "{e}");
    }
}
