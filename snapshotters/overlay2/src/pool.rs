//! Snapshot directories made ahead of time.
//!
//! A writable snapshot needs `<id>/`, `<id>/diff` and `<id>/work`: three mkdirs, the larger part
//! of a Prepare's cost. A background thread keeps a few such trees ready under `staging/`, and
//! Prepare moves one into place with a single rename. Staging trees name no snapshot, so a
//! crash leaves nothing to clean: the next start takes them over.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use strata_snapshotter::error::{Error, IoContext, Result};
use strata_snapshotter::fsutil::remove_tree;

/// How many trees are kept ready.
const READY: usize = 32;

/// Makes an empty snapshot tree at `dir`: `dir/` (0700), `diff/` (0755), `work/` (0700).
pub fn make_tree(dir: &Path, work: bool) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .ctx("create directory", dir)?;
    let diff = dir.join("diff");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&diff)
        .ctx("create directory", &diff)?;
    if work {
        let w = dir.join("work");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&w)
            .ctx("create directory", &w)?;
    }
    Ok(())
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    ready: Mutex<Vec<PathBuf>>,
    counter: AtomicU64,
}

/// The pool of ready snapshot trees.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    wake: mpsc::SyncSender<()>,
}

impl Shared {
    fn fill(&self) {
        loop {
            if self.ready.lock().unwrap_or_else(|p| p.into_inner()).len() >= READY {
                return;
            }
            let path = self
                .dir
                .join(self.counter.fetch_add(1, Ordering::Relaxed).to_string());
            match make_tree(&path, true) {
                Ok(()) => self
                    .ready
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(path),
                Err(e) => {
                    tracing::warn!(%e, "making a staging snapshot tree failed; Prepare will make its own");
                    let _ = remove_tree(&path);
                    return;
                }
            }
        }
    }
}

impl Pool {
    /// Opens the pool in `dir`, taking over complete trees an earlier run left there.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .ctx("create directory", dir)?;
        let mut ready = Vec::new();
        let mut max = 0;
        for entry in fs::read_dir(dir).ctx("read directory", dir)? {
            let entry = entry.ctx("read directory", dir)?;
            let path = entry.path();
            let n = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok());
            let empty = |p: &Path| {
                fs::read_dir(p)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false)
            };
            match n {
                Some(n)
                    if empty(&path.join("diff"))
                        && empty(&path.join("work"))
                        && ready.len() < READY =>
                {
                    max = max.max(n);
                    ready.push(path);
                }
                _ => remove_tree(&path)?,
            }
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            ready: Mutex::new(ready),
            counter: AtomicU64::new(max + 1),
        });
        let (wake, rx) = mpsc::sync_channel::<()>(1);
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("overlay2-staging".into())
            .spawn(move || {
                worker.fill();
                while rx.recv().is_ok() {
                    worker.fill();
                }
            })
            .map_err(|e| Error::io("start the staging thread for", dir, e))?;
        Ok(Pool { shared, wake })
    }

    /// Moves a ready tree to `dest`, or makes one there if none is ready.
    pub fn place(&self, dest: &Path) -> Result<()> {
        let ready = self
            .shared
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        // Ask for more; if a request is already pending, that is enough.
        let _ = self.wake.try_send(());
        match ready {
            Some(src) => match fs::rename(&src, dest) {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::warn!(%e, src = %src.display(), "moving a staging tree failed; making one");
                    let _ = remove_tree(&src);
                    make_tree(dest, true)
                }
            },
            None => make_tree(dest, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_ready_trees_and_reuses_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        {
            let pool = Pool::open(&staging).unwrap();
            for i in 0..40 {
                let dest = dir.path().join(format!("s{i}"));
                pool.place(&dest).unwrap();
                assert!(dest.join("diff").is_dir() && dest.join("work").is_dir());
            }
        }
        // Junk in staging is removed on open, complete trees are kept.
        fs::create_dir_all(staging.join("junk")).unwrap();
        let pool = Pool::open(&staging).unwrap();
        assert!(!staging.join("junk").exists());
        pool.place(&dir.path().join("again")).unwrap();
    }
}
