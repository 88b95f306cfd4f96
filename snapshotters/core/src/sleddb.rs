//! Opening a sled store so that a process killed while sled wrote a snapshot still opens.
//!
//! sled 0.34 writes the snapshot of its page table to `snap.<lsn>.generating`, syncs it, renames
//! it to `snap.<lsn>` and only then removes the older snapshots. On open it reads the newest
//! `snap.*` file, an unfinished `.generating` one included, and it writes a new snapshot while it
//! recovers. A `kill -9` between that file's creation and its rename, which a process killed
//! during its start meets, leaves a store that refuses to open with "Read corrupted data at file
//! offset None". The finished snapshot before the unfinished one is still there, so [`open`]
//! removes unfinished snapshots first, holding sled's own lock while it does, so that the
//! snapshot a running process is writing is never touched.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The suffix sled gives a snapshot it has not finished writing.
const UNFINISHED: &str = ".generating";

/// Opens the sled store at `path` with `config`'s other settings, after removing the snapshot
/// files a killed process left unfinished.
pub fn open(path: &Path, config: sled::Config) -> sled::Result<sled::Db> {
    remove_unfinished_snapshots(path)?;
    config.path(path).open()
}

/// Removes `snap.*.generating` files from the store at `path`, unless a running process holds
/// the store (then sled's open reports that process).
fn remove_unfinished_snapshots(path: &Path) -> io::Result<()> {
    let lock = match File::open(path.join("db")) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // sled locks the `db` file with flock; taking the same lock here means no process has the
    // store open. It is let go before sled takes it.
    // SAFETY: flock on a file descriptor we own for the duration of the call.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("snap.") && name.ends_with(UNFINISHED) {
            tracing::warn!(
                file = %entry.path().display(),
                "removing a metadata snapshot a killed process left unfinished"
            );
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store, closed, with one key flushed, and the snapshot files it has.
    fn store_with_a_key(path: &Path) -> Vec<String> {
        let db = sled::Config::new().path(path).open().unwrap();
        db.insert("kept", "yes").unwrap();
        db.flush().unwrap();
        drop(db);
        // Open once more so that sled writes a snapshot while it recovers.
        drop(sled::Config::new().path(path).open().unwrap());
        snapshots(path)
    }

    fn snapshots(path: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snap."))
            .collect();
        names.sort();
        names
    }

    /// What a kill between the creation and the rename leaves: an empty `.generating` file
    /// for a later point of the log than the finished snapshot.
    fn leave_unfinished_snapshot(path: &Path) {
        File::create(path.join("snap.7FFFFFFFFFFFFFFF.generating")).unwrap();
    }

    #[test]
    fn a_store_with_an_unfinished_snapshot_opens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let finished = store_with_a_key(&path);
        assert!(!finished.is_empty(), "sled wrote no snapshot: {finished:?}");
        leave_unfinished_snapshot(&path);
        // The failure this module exists for: sled alone refuses the store.
        let err = sled::Config::new().path(&path).open().unwrap_err();
        assert!(
            matches!(err, sled::Error::Corruption { .. }),
            "sled alone: {err:?}"
        );

        let db = open(&path, sled::Config::new()).unwrap();
        assert_eq!(db.get("kept").unwrap().as_deref(), Some(&b"yes"[..]));
        drop(db);
        assert!(
            snapshots(&path).iter().all(|n| !n.ends_with(UNFINISHED)),
            "{:?}",
            snapshots(&path)
        );
    }

    #[test]
    fn a_store_in_use_is_left_alone_and_reported_by_sled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        store_with_a_key(&path);
        let running = sled::Config::new().path(&path).open().unwrap();
        leave_unfinished_snapshot(&path);
        let err = open(&path, sled::Config::new()).unwrap_err();
        assert!(matches!(err, sled::Error::Io(_)), "{err:?}");
        assert!(
            snapshots(&path).iter().any(|n| n.ends_with(UNFINISHED)),
            "the running store's snapshot was removed"
        );
        drop(running);
    }

    #[test]
    fn a_new_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("new"), sled::Config::new()).unwrap();
        db.insert("k", "v").unwrap();
    }
}
