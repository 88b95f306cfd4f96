//! The aufs storage driver: Docker's aufs layout behind containerd's snapshots API, on the
//! kernel's aufs where there is one and on Strata's own FUSE union filesystem everywhere else.
//!
//! On disk, under the plugin's root (see [`layout`]):
//!
//! ```text
//! diff/<id>     the snapshot's own files in aufs' format (`.wh.<name>`, `.wh..wh..opq`)
//! layers/<id>   its parents' ids, nearest first, one per line
//! mnt/<id>      where its union is mounted while it is an active snapshot or a view
//! metadata.db/  sled: keys, kinds, parents, labels (see strata-snapshotter)
//! ```
//!
//! Mounts: the plugin mounts the union at `mnt/<id>` itself (kernel aufs, or a FUSE server it
//! supervises, see [`supervisor`]) and returns a bind of that directory (`rw`, or `ro` for a
//! view), which every mounter can do, containerd's included.
//!
//! ```no_run
//! # use strata_aufs::Aufs;
//! # use strata_snapshotter::options::StorageOpts;
//! let driver = Aufs::open(std::path::Path::new("/var/lib/strata/aufs"), &mut StorageOpts::default())?;
//! # Ok::<(), strata_aufs::OpenError>(())
//! ```

pub mod fuse;
pub mod fuse_main;
pub mod kernel;
pub mod layout;
pub mod supervisor;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strata_proto::storage::{ApplyMode, CapabilitiesResponse};
use strata_proto::types::Mount;
use strata_snapshotter::error::{Error, IoContext, Result};
use strata_snapshotter::fsutil::{backing_fs, disk_usage, remove_tree};
use strata_snapshotter::options::{OptionError, StorageOpts};
use strata_snapshotter::{Kind, Snap, Snapshotter, Usage};

use layout::Layout;
use supervisor::{Mode, Supervisor};

/// The options this driver takes.
pub const OPTIONS: &[&str] = &["aufs.fuse_timeout"];

/// Parent layers kernel aufs can stack: its default build (CONFIG_AUFS_BRANCH_MAX_127) takes
/// 127 branches, one of them the snapshot's own.
pub const KERNEL_MAX_LAYERS: u32 = 126;
/// Parent layers the FUSE union is advertised to stack (overlay2's, so a host can move
/// between the two).
pub const FUSE_MAX_LAYERS: u32 = 500;

/// Why the driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An option is wrong.
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The root cannot hold aufs storage.
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

/// The aufs driver.
#[derive(Debug)]
pub struct Aufs {
    layout: Layout,
    backing_fs: String,
    mode: Mode,
    sup: Arc<Supervisor>,
}

fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |e| Error::io(op, path, e)
}

/// `aufs.fuse_timeout`: seconds (`30`, `30s`) or milliseconds (`500ms`), more than zero.
fn parse_timeout(v: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = match v.strip_suffix("ms") {
        Some(n) => (n, 1),
        None => (v.strip_suffix('s').unwrap_or(v), 1000),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n * unit)),
        _ => Err("want a duration such as 30s or 500ms".into()),
    }
}

impl Aufs {
    /// Opens the driver in `root` (made if missing).
    pub fn open(root: &Path, opts: &mut StorageOpts) -> std::result::Result<Self, OpenError> {
        let timeout = opts
            .take_with("aufs.fuse_timeout", parse_timeout)?
            .unwrap_or(supervisor::DEFAULT_FUSE_TIMEOUT);
        let layout = Layout::new(root);
        for d in layout.dirs() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .ctx("create directory", &d)?;
        }
        let backing = backing_fs(root)?;
        let mode = if kernel::available() {
            Mode::Kernel {
                dirperm1: kernel::probe_dirperm1(root),
            }
        } else {
            if !Path::new("/dev/fuse").exists() {
                return Err(Error::Unimplemented(
                    "the kernel has neither aufs (not in /proc/filesystems) nor FUSE (/dev/fuse)"
                        .into(),
                )
                .into());
            }
            Mode::Fuse
        };
        let sup = Supervisor::start(layout.clone(), mode, timeout)?;
        Ok(Aufs {
            layout,
            backing_fs: backing,
            mode,
            sup,
        })
    }

    fn max_layers(&self) -> u32 {
        match self.mode {
            Mode::Kernel { .. } => KERNEL_MAX_LAYERS,
            Mode::Fuse => FUSE_MAX_LAYERS,
        }
    }

    /// Every id that has storage under the root.
    fn stored_ids(&self) -> Result<BTreeSet<String>> {
        let mut ids = BTreeSet::new();
        for d in self.layout.dirs() {
            for entry in fs::read_dir(&d).ctx("read directory", &d)? {
                let entry = entry.ctx("read directory", &d)?;
                if let Some(name) = entry.file_name().to_str() {
                    if !name.starts_with('.') {
                        ids.insert(name.to_string());
                    }
                }
            }
        }
        Ok(ids)
    }

    fn remove_storage(&self, id: &str) -> Result<()> {
        if let Ok(n) = id.parse::<u64>() {
            self.sup.stop(n)?;
        }
        remove_tree(&self.layout.diff(id))?;
        let layers = self.layout.layers(id);
        match fs::remove_file(&layers) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove", layers, e))
            }
            _ => {}
        }
        let mnt = self.layout.mnt(id);
        match fs::remove_dir(&mnt) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", mnt, e)),
            _ => Ok(()),
        }
    }
}

impl Snapshotter for Aufs {
    fn name(&self) -> &'static str {
        "aufs"
    }

    fn create(&self, snap: &Snap<'_>) -> Result<()> {
        if snap.parents.len() > self.max_layers() as usize {
            return Err(Error::FailedPrecondition(format!(
                "the parent chain has {} layers; this aufs mounts at most {} below a snapshot",
                snap.parents.len(),
                self.max_layers()
            )));
        }
        let id = snap.id.to_string();
        let parents: Vec<String> = snap.parents.iter().map(u64::to_string).collect();
        self.layout
            .write_parents(&id, &parents)
            .map_err(io_err("write", self.layout.layers(&id)))?;
        self.layout
            .make_dirs(&id)
            .map_err(io_err("create directory", self.layout.diff(&id)))
    }

    fn mounts(&self, snap: &Snap<'_>) -> Result<Vec<Mount>> {
        let ro = match snap.kind {
            Kind::Committed => {
                return Err(Error::FailedPrecondition(
                    "committed snapshots have no mounts".into(),
                ))
            }
            Kind::View => true,
            Kind::Active => false,
        };
        self.sup.ensure(snap.id, ro)?;
        Ok(vec![Mount {
            r#type: "bind".into(),
            source: self.layout.mnt(&snap.id.to_string()).display().to_string(),
            target: String::new(),
            options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
        }])
    }

    /// A committed snapshot is only a branch of others: its own union is unmounted, and what
    /// an interrupted copy-up left in its orphan directory removed.
    fn commit(&self, snap: &Snap<'_>) -> Result<()> {
        self.sup.stop(snap.id)?;
        remove_tree(
            &self
                .layout
                .diff(&snap.id.to_string())
                .join(fuse::union::ORPH),
        )
    }

    fn remove(&self, id: u64) -> Result<()> {
        self.remove_storage(&id.to_string())
    }

    fn usage(&self, snap: &Snap<'_>) -> Result<Usage> {
        disk_usage(&self.layout.diff(&snap.id.to_string()))
    }

    fn cleanup(&self, live: &BTreeSet<u64>) -> Result<()> {
        let mut removed = 0;
        for id in self.stored_ids()? {
            match id.parse::<u64>() {
                Ok(n) if live.contains(&n) => {}
                Ok(_) => {
                    self.remove_storage(&id)?;
                    removed += 1;
                }
                Err(_) => tracing::warn!(id, "cleanup: not a snapshot of this plugin; left alone"),
            }
        }
        // Parent lists a crash left half written (`layers/.<id>.tmp`).
        let layers = &self.layout.dirs()[1];
        for entry in fs::read_dir(layers).ctx("read directory", layers)? {
            let entry = entry.ctx("read directory", layers)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                fs::remove_file(entry.path()).ctx("remove", entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "cleanup removed storage no snapshot owns");
        }
        Ok(())
    }

    fn status(&self, _snapshots: usize) -> Result<Vec<(String, String)>> {
        let diff = &self.layout.dirs()[0];
        let dirs = fs::read_dir(diff).ctx("read directory", diff)?.count();
        let failures = self.sup.failures();
        let mut rows = vec![
            (
                "Root Dir".to_string(),
                self.layout.root().display().to_string(),
            ),
            ("Backing Filesystem".to_string(), self.backing_fs.clone()),
            ("Dirs".to_string(), dirs.to_string()),
            (
                "Dirperm1 Supported".to_string(),
                matches!(self.mode, Mode::Kernel { dirperm1: true }).to_string(),
            ),
            (
                "Mode".to_string(),
                match self.mode {
                    Mode::Kernel { .. } => "kernel aufs",
                    Mode::Fuse => "FUSE",
                }
                .to_string(),
            ),
        ];
        if self.mode == Mode::Fuse {
            rows.push(("FUSE Servers".to_string(), self.sup.servers().to_string()));
            rows.push((
                "FUSE Timeout".to_string(),
                format!("{:?}", self.sup.timeout()),
            ));
            rows.push(("FUSE Failures".to_string(), failures.count.to_string()));
            if let Some(last) = failures.last {
                rows.push(("Last FUSE Failure".to_string(), last));
            }
        }
        Ok(rows)
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            driver: "aufs".into(),
            native_diff: true,
            apply_mode: ApplyMode::AufsBranch as i32,
            quota: false,
            max_layer_depth: self.max_layers(),
            extra: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_timeout_parses() {
        assert_eq!(parse_timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
