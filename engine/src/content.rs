//! The content store: blobs by sha256 under `<root>/content/blobs/sha256/<hex>`.
//!
//! A blob is written to a temporary name under `<root>/content/ingest/`, hashed as it is
//! written, checked against the digest it should have, fsynced, and renamed into place; a blob
//! whose digest does not match is refused and its temporary file removed. Blobs are immutable
//! and never depend on the storage driver.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

/// A content digest, `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Content store failures.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected sha256: and 64 hex digits")]
    InvalidDigest(String),
    /// The content does not hash to the digest it claims.
    #[error("content digest mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// What it should be.
        expected: Digest,
        /// What it is.
        actual: Digest,
    },
    /// No such blob.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl Digest {
    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Digest, ContentError> {
        match s.strip_prefix("sha256:") {
            Some(h)
                if h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Digest(s.to_string()))
            }
            _ => Err(ContentError::InvalidDigest(s.to_string())),
        }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    /// Blobs an operation in progress relies on (see [`Pins`]), with how many pin each.
    pinned: Arc<Mutex<HashMap<Digest, usize>>>,
}

/// The blobs one operation in progress (a load reading its archive) has written or found,
/// kept from [`ContentStore::delete`] until it is dropped: another image's removal or a
/// failed load meanwhile cannot take a blob from under it.
#[derive(Debug)]
pub struct Pins {
    store: ContentStore,
    held: Vec<Digest>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut pinned = self.store.lock_pins();
        for d in self.held.drain(..) {
            if let Some(n) = pinned.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    pinned.remove(&d);
                }
            }
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ContentError + 'a {
    move |source| ContentError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl ContentStore {
    /// Opens the store under `root` (`<root>/content`), removing unfinished ingests.
    pub fn open(root: &Path) -> Result<Self, ContentError> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        fs::create_dir_all(&blobs).map_err(io_err("create directory", &blobs))?;
        let _ = fs::remove_dir_all(&ingest);
        fs::create_dir_all(&ingest).map_err(io_err("create directory", &ingest))?;
        Ok(ContentStore {
            blobs,
            ingest,
            pinned: Arc::default(),
        })
    }

    fn lock_pins(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, usize>> {
        self.pinned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty set of pins for one operation.
    pub fn pins(&self) -> Pins {
        Pins {
            store: self.clone(),
            held: Vec::new(),
        }
    }

    /// Whether an operation in progress relies on the blob.
    pub fn is_pinned(&self, d: &Digest) -> bool {
        self.lock_pins().contains_key(d)
    }

    /// Where a blob lives.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    /// Whether the blob is present.
    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ContentError> {
        File::open(self.path(d)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound(d.clone())
            } else {
                ContentError::Io {
                    op: "open",
                    path: self.path(d),
                    source: e,
                }
            }
        })
    }

    /// Reads a whole (small) blob.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, ContentError> {
        let mut v = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut v)
            .map_err(io_err("read", &self.path(d)))?;
        Ok(v)
    }

    /// Writes `reader` as a blob; if `expected` is given, refuses content with another digest.
    /// Returns the digest and size.
    pub fn write(
        &self,
        reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), ContentError> {
        self.write_with(reader, expected, None)
    }

    /// [`ContentStore::write`], pinning the blob in `pins` before it is in place (so that a
    /// deletion of the same blob meanwhile either came before, and this puts it back, or
    /// leaves it).
    pub fn write_pinned(
        &self,
        reader: impl Read,
        expected: Option<&Digest>,
        pins: &mut Pins,
    ) -> Result<(Digest, u64), ContentError> {
        self.write_with(reader, expected, Some(pins))
    }

    fn write_with(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
        pins: Option<&mut Pins>,
    ) -> Result<(Digest, u64), ContentError> {
        let tmp = self
            .ingest
            .join(format!("{}-{}", std::process::id(), rand::random::<u64>()));
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let result = (|| {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut size = 0u64;
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(io_err("read content for", &tmp))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_err("write", &tmp))?;
                size += n as u64;
            }
            let actual = Digest(format!("sha256:{}", hex::encode(h.finalize())));
            if let Some(exp) = expected {
                if *exp != actual {
                    return Err(ContentError::Mismatch {
                        expected: exp.clone(),
                        actual,
                    });
                }
            }
            f.sync_all().map_err(io_err("sync", &tmp))?;
            if let Some(p) = pins {
                *self.lock_pins().entry(actual.clone()).or_default() += 1;
                p.held.push(actual.clone());
            }
            let dest = self.path(&actual);
            fs::rename(&tmp, &dest).map_err(io_err("rename into", &dest))?;
            Ok((actual, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Deletes a blob (missing is fine), unless an operation in progress has it pinned; then
    /// it stays, and `false` says so.
    pub fn delete(&self, d: &Digest) -> Result<bool, ContentError> {
        let pinned = self.lock_pins();
        if pinned.contains_key(d) {
            return Ok(false);
        }
        match fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ContentError::Io {
                op: "remove",
                path: self.path(d),
                source: e,
            }),
            _ => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_verify_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"hello");
        let (got, size) = s.write(&b"hello"[..], Some(&d)).unwrap();
        assert_eq!((got.clone(), size), (d.clone(), 5));
        assert_eq!(s.read(&d).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let e = s.write(&b"hello!"[..], Some(&wrong)).unwrap_err();
        assert!(matches!(e, ContentError::Mismatch { .. }), "{e}");
        assert_eq!(
            fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0,
            "no temp file left"
        );
        assert!(!s.contains(&wrong));
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(d.as_str()).is_ok());
    }

    #[test]
    fn a_pinned_blob_outlives_deletes_until_its_pins_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let (mut a, mut b) = (s.pins(), s.clone().pins());
        let (d, _) = s.write_pinned(&b"shared"[..], None, &mut a).unwrap();
        s.write_pinned(&b"shared"[..], None, &mut b).unwrap();
        assert!(!s.delete(&d).unwrap(), "kept while pinned");
        drop(a);
        assert!(
            !s.delete(&d).unwrap(),
            "the other operation still relies on it"
        );
        assert!(s.contains(&d));
        drop(b);
        assert!(!s.is_pinned(&d));
        assert!(s.delete(&d).unwrap() && !s.contains(&d));
        let (other, _) = s.write(&b"plain"[..], None).unwrap();
        assert!(
            s.delete(&other).unwrap(),
            "a blob written without pins goes at once"
        );
    }
}
