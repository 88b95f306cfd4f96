//! Applying a layer tar (gzip-compressed or not) to a directory, mount-aware and safely.
//!
//! How deletions are written depends on what the directory is ([`ApplyMode`], from the storage
//! driver's capabilities):
//! - [`ApplyMode::OverlayUpper`]: the directory is an overlay upper dir; `.wh.<name>` becomes a
//!   0/0 character device `<name>`, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its
//!   directory;
//! - [`ApplyMode::AufsBranch`]: an aufs rw branch, which uses the `.wh.` names natively, so they
//!   are stored as they are;
//! - [`ApplyMode::Mounted`]: a plain filesystem (the mounted snapshot): whiteouts delete, and an
//!   opaque directory loses everything this layer did not put there.
//!
//! Nothing is ever written outside the directory: entries with absolute paths or `..`
//! components are refused; every parent component is resolved
//! inside the root, following symlinks only as if the root were `/` and refusing a symlink that
//! climbs above it; the last component is never followed (files are created `O_EXCL|O_NOFOLLOW`
//! after removing what was there); hard links must name an existing entry inside the root; device
//! nodes are refused except 0/0 character devices (overlay whiteouts). Overlay-private xattrs
//! (`trusted.overlay.*`, and `user.overlay.*` which overlay reads with `userxattr`) in the tar are
//! not copied.
//!
//! Returns the diff id (the sha256 of the uncompressed tar) and sizes.
//!
//! [`extract`] unpacks a plain tar (`strata cp`) with the same containment: no whiteouts (a
//! `.wh.` name is a file like any other), no device nodes, optionally one owner for everything
//! and no directory replaced by a non-directory or the reverse.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};

use crate::content::Digest;
use strata_snapshotter::xattr;

/// The prefix of whiteout entries.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Marks its directory opaque.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// aufs' own metadata entries (`.wh..wh.plnk`, `.wh..wh.aufs`).
const AUFS_META_PREFIX: &str = ".wh..wh.";
/// How many symlinks one path may go through.
const MAX_SYMLINKS: usize = 40;

/// How whiteouts are written (the storage driver's `ApplyMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// A plain mounted filesystem: whiteouts delete.
    Mounted,
    /// An overlay upper dir: 0/0 character devices and the opaque xattr.
    OverlayUpper,
    /// An aufs branch: `.wh.` entries stored as they are.
    AufsBranch,
}

impl ApplyMode {
    /// From `strata.storage.v1.ApplyMode`.
    pub fn from_proto(mode: strata_proto::storage::ApplyMode) -> ApplyMode {
        use strata_proto::storage::ApplyMode as P;
        match mode {
            P::Mounted => ApplyMode::Mounted,
            P::OverlayUpper => ApplyMode::OverlayUpper,
            P::AufsBranch => ApplyMode::AufsBranch,
        }
    }
}

/// What applying a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// Bytes of regular file content in the layer.
    pub content_size: u64,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An entry that would write outside the root, or that is not allowed.
    #[error("layer entry {entry:?} refused: {reason}")]
    Refused {
        /// The entry's path in the tar.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// The tar (or its gzip) could not be read.
    #[error("reading the layer tar: {0}")]
    Read(#[source] io::Error),
    /// A file operation failed.
    #[error("layer entry {entry:?}: {op} {}: {source}", path.display())]
    Io {
        /// The entry being applied.
        entry: String,
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Hashes and counts what is read through it.
struct HashingReader<R> {
    inner: R,
    /// None when the digest is already known.
    hash: Option<Sha256>,
    size: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }
}

/// Opens a maybe-gzipped stream as the uncompressed tar.
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(open_tar(reader)?.0)
}

/// The uncompressed tar of a maybe-gzipped stream, and whether it was gzipped.
fn open_tar<'a, R: Read + 'a>(reader: R) -> io::Result<(Box<dyn Read + 'a>, bool)> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(buf)), true))
    } else {
        Ok((Box::new(buf), false))
    }
}

/// How [`extract`] writes a plain tar's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Give every entry this (uid, gid) instead of the tar's owners.
    pub owner: Option<(u32, u32)>,
    /// Refuse to replace a directory with a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
}

/// Extracts the plain (uncompressed or gzipped) tar in `reader` into the directory `root`;
/// returns the bytes of file content written.
pub fn extract(reader: impl Read, root: &Path, opts: ExtractOptions) -> Result<u64, ApplyError> {
    let mut applier = Applier {
        root: root.to_path_buf(),
        mode: ApplyMode::Mounted,
        plain: Some(opts),
        written: HashSet::new(),
        dir_times: Vec::new(),
        content_size: 0,
    };
    let mut archive = tar::Archive::new(decompressed(reader).map_err(ApplyError::Read)?);
    for entry in archive.entries().map_err(ApplyError::Read)? {
        applier.entry(entry.map_err(ApplyError::Read)?)?;
    }
    applier.set_dir_times()?;
    Ok(applier.content_size)
}

/// Computes the diff id and size of a layer without applying it.
pub fn diff_id(reader: impl Read) -> Result<(Digest, u64), ApplyError> {
    let mut r = HashingReader {
        inner: decompressed(reader).map_err(ApplyError::Read)?,
        hash: Some(Sha256::new()),
        size: 0,
    };
    io::copy(&mut r, &mut io::sink()).map_err(ApplyError::Read)?;
    Ok((finish(r.hash.unwrap_or_default())?, r.size))
}

/// Applies the layer in `reader` to `root`.
pub fn apply_layer(reader: impl Read, root: &Path, mode: ApplyMode) -> Result<Applied, ApplyError> {
    apply_layer_known(reader, root, mode, None)
}

/// Applies a layer whose diff id is already known (an uncompressed blob, verified by digest when
/// it was stored), without hashing it again.
pub fn apply_layer_known(
    reader: impl Read,
    root: &Path,
    mode: ApplyMode,
    diff_id: Option<&Digest>,
) -> Result<Applied, ApplyError> {
    let (inner, gzipped) = open_tar(reader).map_err(ApplyError::Read)?;
    // A compressed blob's digest is not its diff id: hash it whatever the caller knows.
    let diff_id = diff_id.filter(|_| !gzipped);
    let mut hashing = HashingReader {
        inner,
        hash: diff_id.is_none().then(Sha256::new),
        size: 0,
    };
    let mut applier = Applier {
        root: root.to_path_buf(),
        mode,
        plain: None,
        written: HashSet::new(),
        dir_times: Vec::new(),
        content_size: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(ApplyError::Read)? {
            let entry = entry.map_err(ApplyError::Read)?;
            applier.entry(entry)?;
        }
    }
    // The end-of-archive blocks and any padding are part of the diff id.
    io::copy(&mut hashing, &mut io::sink()).map_err(ApplyError::Read)?;
    applier.set_dir_times()?;
    let diff_id = match (diff_id, hashing.hash) {
        (Some(d), _) => d.clone(),
        (None, h) => finish(h.unwrap_or_default())?,
    };
    Ok(Applied {
        diff_id,
        tar_size: hashing.size,
        content_size: applier.content_size,
    })
}

fn finish(h: Sha256) -> Result<Digest, ApplyError> {
    Digest::parse(&format!("sha256:{}", hex::encode(h.finalize())))
        .map_err(|e| ApplyError::Read(io::Error::other(e)))
}

/// An entry's path split into normal components; refuses absolute paths and `..`.
fn components(raw: &[u8], entry: &str) -> Result<Vec<OsString>, ApplyError> {
    if raw.starts_with(b"/") {
        // Layer tars hold relative paths; an absolute one is made to escape.
        return Err(ApplyError::Refused {
            entry: entry.to_string(),
            reason: "its path is absolute",
        });
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(ApplyError::Refused {
                    entry: entry.to_string(),
                    reason: "its path has a '..' component",
                })
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

struct Applier {
    root: PathBuf,
    mode: ApplyMode,
    /// Set for a plain tar ([`extract`]), not a layer.
    plain: Option<ExtractOptions>,
    /// Paths this layer wrote (for opaque directories in mounted mode).
    written: HashSet<PathBuf>,
    /// Directory mtimes, set at the end (children change them).
    dir_times: Vec<(PathBuf, u64)>,
    content_size: u64,
}

/// The entry's mtime, uid, gid, mode and xattrs.
struct Meta {
    mtime: u64,
    uid: u32,
    gid: u32,
    mode: u32,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Applier {
    /// Sets the directory mtimes (children changed them), deepest first.
    fn set_dir_times(&self) -> Result<(), ApplyError> {
        for (path, mtime) in self.dir_times.iter().rev() {
            set_times(path, *mtime).map_err(|source| ApplyError::Io {
                entry: path.display().to_string(),
                op: "set times of",
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// With `no_overwrite_dir_non_dir`: refuses an entry that would replace a directory with a
    /// non-directory or the reverse (a symlink counts as a non-directory).
    fn check_overwrite(&self, path: &Path, is_dir: bool, entry: &str) -> Result<(), ApplyError> {
        if !self.plain.is_some_and(|p| p.no_overwrite_dir_non_dir) {
            return Ok(());
        }
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && !is_dir => Err(ApplyError::Refused {
                entry: entry.to_string(),
                reason: "cannot overwrite a directory with a non-directory",
            }),
            Ok(m) if !m.is_dir() && is_dir => Err(ApplyError::Refused {
                entry: entry.to_string(),
                reason: "cannot overwrite a non-directory with a directory",
            }),
            _ => Ok(()),
        }
    }

    fn io<'a>(
        &self,
        entry: &'a str,
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> ApplyError + 'a {
        move |source| ApplyError::Io {
            entry: entry.to_string(),
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Resolves `comps` as a directory inside the root: every component is followed, symlinks as
    /// if the root were `/`; one that climbs above the root is refused. Missing directories are
    /// made when `create`.
    fn resolve_dir(
        &self,
        comps: &[OsString],
        create: bool,
        entry: &str,
    ) -> Result<PathBuf, ApplyError> {
        let mut stack: Vec<OsString> = Vec::new();
        let mut pending: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut follows = 0;
        while let Some(c) = pending.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                if stack.pop().is_none() {
                    return Err(ApplyError::Refused {
                        entry: entry.to_string(),
                        reason: "a symlink in its path points outside the root",
                    });
                }
                continue;
            }
            let mut path = self.root.clone();
            path.extend(&stack);
            path.push(&c);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(c),
                Ok(m) if m.file_type().is_symlink() => {
                    follows += 1;
                    if follows > MAX_SYMLINKS {
                        return Err(ApplyError::Refused {
                            entry: entry.to_string(),
                            reason: "too many levels of symlinks in its path",
                        });
                    }
                    let target =
                        fs::read_link(&path).map_err(self.io(entry, "read link", &path))?;
                    let tb = target.as_os_str().as_bytes();
                    if tb.starts_with(b"/") {
                        stack.clear();
                    }
                    for t in tb.split(|b| *b == b'/').rev() {
                        pending.push_front(OsString::from_vec(t.to_vec()));
                    }
                }
                Ok(_) => {
                    return Err(ApplyError::Io {
                        entry: entry.to_string(),
                        op: "use as a directory",
                        path,
                        source: io::Error::from_raw_os_error(libc::ENOTDIR),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(self.io(entry, "create directory", &path))?;
                    stack.push(c);
                }
                Err(e) => return Err(self.io(entry, "look up", &path)(e)),
            }
        }
        let mut path = self.root.clone();
        path.extend(&stack);
        Ok(path)
    }

    /// Removes whatever is at `path` (never following it).
    fn remove(&self, path: &Path, keep_dir: bool, entry: &str) -> Result<(), ApplyError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                if !keep_dir {
                    fs::remove_dir_all(path).map_err(self.io(entry, "remove", path))?;
                }
                Ok(())
            }
            Ok(_) => fs::remove_file(path).map_err(self.io(entry, "remove", path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(entry, "look up", path)(e)),
        }
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            return Ok(());
        }
        let comps = components(&raw, &name)?;
        let Some((base, parents)) = comps.split_last() else {
            return Ok(()); // the root itself
        };
        let meta = self.meta(&mut e, &name)?;
        let base_str = base.to_string_lossy();
        let layer = self.plain.is_none();
        if layer && self.mode != ApplyMode::AufsBranch && base_str.starts_with(WHITEOUT_PREFIX) {
            let dir = self.resolve_dir(parents, true, &name)?;
            if base_str == OPAQUE_WHITEOUT {
                return self.opaque(&dir, &name);
            }
            if base_str.starts_with(AUFS_META_PREFIX) {
                return Ok(());
            }
            let target = OsStr::from_bytes(&base.as_bytes()[WHITEOUT_PREFIX.len()..]);
            if target.is_empty() || target == "." || target == ".." {
                return Err(ApplyError::Refused {
                    entry: name,
                    reason: "a whiteout of no name, '.' or '..'",
                });
            }
            return self.whiteout(&dir.join(target), &meta, &name);
        }
        let dir = self.resolve_dir(parents, true, &name)?;
        let path = dir.join(base);
        use tar::EntryType as T;
        self.check_overwrite(&path, kind == T::Directory, &name)?;
        match kind {
            T::Directory => {
                self.remove(&path, true, &name)?;
                if !path.is_dir() {
                    fs::create_dir(&path).map_err(self.io(&name, "create directory", &path))?;
                }
                self.set_meta(&path, &meta, false, &name)?;
                self.dir_times.push((path.clone(), meta.mtime));
            }
            T::Regular | T::Continuous => {
                self.remove(&path, false, &name)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(self.io(&name, "create", &path))?;
                let want = e.size();
                let n = io::copy(&mut e, &mut f).map_err(ApplyError::Read)?;
                if n != want {
                    return Err(ApplyError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry {name:?} is truncated: {n} of {want} bytes"),
                    )));
                }
                self.content_size += n;
                drop(f);
                self.set_meta(&path, &meta, false, &name)?;
                set_times(&path, meta.mtime).map_err(self.io(&name, "set times of", &path))?;
            }
            T::Symlink => {
                let target = e.link_name_bytes().ok_or(ApplyError::Refused {
                    entry: name.clone(),
                    reason: "a symlink without a target",
                })?;
                let target = OsStr::from_bytes(&target).to_os_string();
                self.remove(&path, false, &name)?;
                std::os::unix::fs::symlink(&target, &path).map_err(self.io(
                    &name,
                    "create symlink",
                    &path,
                ))?;
                self.set_meta(&path, &meta, true, &name)?;
                set_times(&path, meta.mtime).map_err(self.io(&name, "set times of", &path))?;
            }
            T::Link => {
                let target = e.link_name_bytes().ok_or(ApplyError::Refused {
                    entry: name.clone(),
                    reason: "a hard link without a target",
                })?;
                let tcomps = components(&target, &name)?;
                let Some((tbase, tparents)) = tcomps.split_last() else {
                    return Err(ApplyError::Refused {
                        entry: name,
                        reason: "a hard link to the root",
                    });
                };
                let tdir = self
                    .resolve_dir(tparents, false, &name)
                    .map_err(|err| match err {
                        ApplyError::Io { .. } => ApplyError::Refused {
                            entry: name.clone(),
                            reason: "its hard link target is not in the layer's root",
                        },
                        other => other,
                    })?;
                let tpath = tdir.join(tbase);
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(ApplyError::Refused {
                            entry: name,
                            reason: "its hard link target is not a file inside the root",
                        })
                    }
                }
                if tpath != path {
                    self.remove(&path, false, &name)?;
                    fs::hard_link(&tpath, &path).map_err(self.io(&name, "hard link", &path))?;
                }
            }
            T::Fifo => {
                self.remove(&path, false, &name)?;
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
                    .map_err(|en| self.io(&name, "make fifo", &path)(en.into()))?;
                self.set_meta(&path, &meta, false, &name)?;
                set_times(&path, meta.mtime).map_err(self.io(&name, "set times of", &path))?;
            }
            T::Char | T::Block => {
                let major = e.header().device_major().ok().flatten().unwrap_or(u32::MAX);
                let minor = e.header().device_minor().ok().flatten().unwrap_or(u32::MAX);
                if !layer {
                    return Err(ApplyError::Refused {
                        entry: name,
                        reason: "device nodes cannot be copied",
                    });
                }
                if kind != T::Char || major != 0 || minor != 0 {
                    return Err(ApplyError::Refused {
                        entry: name,
                        reason: "device nodes are not allowed in layers",
                    });
                }
                // A 0/0 character device is an overlay whiteout already.
                match self.mode {
                    ApplyMode::OverlayUpper | ApplyMode::Mounted => {
                        self.whiteout(&path, &meta, &name)?
                    }
                    ApplyMode::AufsBranch => {
                        let mut wh = OsString::from(WHITEOUT_PREFIX);
                        wh.push(base);
                        self.whiteout(&dir.join(wh), &meta, &name)?
                    }
                }
            }
            _ => {
                return Err(ApplyError::Refused {
                    entry: name,
                    reason: "unsupported tar entry type",
                })
            }
        }
        self.written.insert(path);
        Ok(())
    }

    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, ApplyError> {
        let h = e.header();
        let old = h.as_old();
        // An empty numeric field (all NULs or spaces) reads as 0, as Go's archive/tar reads it;
        // anything else that is not a number is a corrupt header.
        let field = |r: io::Result<u64>, raw: &[u8], what: &str| match r {
            Ok(v) => Ok(v),
            Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
            Err(_) => Err(ApplyError::Read(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {name:?} has a corrupt {what} field in its header"),
            ))),
        };
        let mut m = Meta {
            mtime: field(h.mtime(), &old.mtime, "mtime")?,
            uid: field(h.uid(), &old.uid, "uid")? as u32,
            gid: field(h.gid(), &old.gid, "gid")? as u32,
            mode: field(h.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777,
            xattrs: Vec::new(),
        };
        let owner = self.plain.and_then(|p| p.owner);
        if let Some(exts) = e.pax_extensions().map_err(ApplyError::Read)? {
            for ext in exts {
                let ext = ext.map_err(ApplyError::Read)?;
                let key = ext.key_bytes();
                let num = || {
                    std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|v| v.parse::<u32>().ok())
                };
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    m.xattrs.push((x.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"uid" {
                    m.uid = num().unwrap_or(m.uid);
                } else if key == b"gid" {
                    m.gid = num().unwrap_or(m.gid);
                } else if key == b"mtime" {
                    let v = std::str::from_utf8(ext.value_bytes()).unwrap_or("");
                    if let Ok(t) = v.split('.').next().unwrap_or("").parse::<u64>() {
                        m.mtime = t;
                    }
                }
            }
        }
        if let Some((uid, gid)) = owner {
            (m.uid, m.gid) = (uid, gid);
        }
        Ok(m)
    }

    fn set_meta(
        &self,
        path: &Path,
        m: &Meta,
        symlink: bool,
        entry: &str,
    ) -> Result<(), ApplyError> {
        std::os::unix::fs::lchown(path, Some(m.uid), Some(m.gid)).map_err(self.io(
            entry,
            "change owner of",
            path,
        ))?;
        if !symlink {
            // After chown, which clears set-id bits.
            fs::set_permissions(path, fs::Permissions::from_mode(m.mode)).map_err(self.io(
                entry,
                "change mode of",
                path,
            ))?;
        }
        for (k, v) in &m.xattrs {
            if k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.") {
                tracing::warn!(entry, "not copying an overlay-private xattr from a layer");
                continue;
            }
            if let Err(err) = xattr::set(path, OsStr::from_bytes(k), v, 0) {
                if err.raw_os_error() == Some(libc::ENOTSUP) {
                    tracing::warn!(entry, xattr = %String::from_utf8_lossy(k), "the filesystem does not support this xattr");
                    continue;
                }
                return Err(self.io(entry, "set xattr on", path)(err));
            }
        }
        Ok(())
    }

    /// Deletes `path` as the mode says.
    fn whiteout(&mut self, path: &Path, m: &Meta, entry: &str) -> Result<(), ApplyError> {
        match self.mode {
            ApplyMode::Mounted => self.remove(path, false, entry),
            ApplyMode::OverlayUpper => {
                self.remove(path, false, entry)?;
                nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|en| self.io(entry, "make whiteout", path)(en.into()))?;
                std::os::unix::fs::lchown(path, Some(m.uid), Some(m.gid)).map_err(self.io(
                    entry,
                    "change owner of",
                    path,
                ))?;
                self.written.insert(path.to_path_buf());
                Ok(())
            }
            ApplyMode::AufsBranch => {
                self.remove(path, false, entry)?;
                fs::File::create(path).map_err(self.io(entry, "create", path))?;
                self.set_meta(path, m, false, entry)?;
                self.written.insert(path.to_path_buf());
                Ok(())
            }
        }
    }

    /// Makes `dir` opaque.
    fn opaque(&mut self, dir: &Path, entry: &str) -> Result<(), ApplyError> {
        match self.mode {
            ApplyMode::OverlayUpper => xattr::set(dir, "trusted.overlay.opaque".as_ref(), b"y", 0)
                .map_err(self.io(entry, "set opaque xattr on", dir)),
            ApplyMode::AufsBranch => Ok(()),
            ApplyMode::Mounted => {
                let rd = fs::read_dir(dir).map_err(self.io(entry, "read directory", dir))?;
                for child in rd {
                    let child = child.map_err(self.io(entry, "read directory", dir))?.path();
                    if !self.written.contains(&child) {
                        self.remove(&child, false, entry)?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn set_times(path: &Path, mtime: u64) -> io::Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
