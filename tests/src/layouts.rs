//! How to count the snapshots a driver keeps storage for, from its on-disk layout. The crash
//! and concurrency tests compare this with List after Cleanup: a leaked directory (or device)
//! shows up as a count that is too high.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// overlay2 (DESIGN.md §4): one `<root>/snapshots/<id>/` per snapshot, and short links
/// `<root>/l/<short>` → `../snapshots/<id>/diff`. Counts the snapshot dirs; fails when a short
/// link dangles or there are more links than snapshot dirs (both are leaks).
pub fn overlay2_storage_count(root: &Path) -> Result<usize> {
    let snapshots = root.join("snapshots");
    let dirs = count_entries(&snapshots)?;
    let links_dir = root.join("l");
    let links = match fs::read_dir(&links_dir) {
        Ok(rd) => rd
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("read {}", links_dir.display()))?,
        Err(err) if err.kind() == ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(err).with_context(|| format!("read {}", links_dir.display())),
    };
    for link in &links {
        let path = link.path();
        if fs::metadata(&path).is_err() {
            let target = fs::read_link(&path).ok();
            bail!(
                "short link {} dangles (points to {target:?}): its snapshot's storage is gone \
                 but the link was left behind",
                path.display()
            );
        }
    }
    if links.len() > dirs {
        bail!(
            "{} has {} short links but {} has only {dirs} snapshot dirs",
            links_dir.display(),
            links.len(),
            snapshots.display()
        );
    }
    Ok(dirs)
}

/// The number of entries in `dir` (0 when it does not exist).
pub fn count_entries(dir: &Path) -> Result<usize> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut n = 0;
            for entry in rd {
                entry.with_context(|| format!("read {}", dir.display()))?;
                n += 1;
            }
            Ok(n)
        }
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(0),
        Err(err) => Err(err).with_context(|| format!("read {}", dir.display())),
    }
}

/// containerd's overlayfs and native snapshotters: one `<root>/snapshots/<id>/` per snapshot.
pub fn containerd_storage_count(root: &Path) -> Result<usize> {
    count_entries(&root.join("snapshots"))
}

/// aufs (DESIGN.md §4): `<root>/diff/<id>` per snapshot, with `<root>/layers/<id>` and
/// `<root>/mnt/<id>` beside it. Counts the diff dirs; fails when a layers file or mountpoint
/// has no diff dir (both are leaks).
pub fn aufs_storage_count(root: &Path) -> Result<usize> {
    let diff = root.join("diff");
    let dirs = count_entries(&diff)?;
    for other in ["layers", "mnt"] {
        let dir = root.join(other);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("read {}", dir.display())),
        };
        for entry in rd {
            let entry = entry.with_context(|| format!("read {}", dir.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if !diff.join(&name).exists() {
                bail!(
                    "{} has no {}: its snapshot's storage is gone but this was left behind",
                    entry.path().display(),
                    diff.join(&name).display()
                );
            }
        }
    }
    Ok(dirs)
}
