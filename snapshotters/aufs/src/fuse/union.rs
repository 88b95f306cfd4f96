//! aufs semantics over a list of branch directories, free of FUSE: lookups top-down, whiteouts,
//! opaque directories, merged directory listings and copy-up. Branch 0 is the top (the only one
//! written); the others are read-only lower layers, nearest first.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    DirBuilderExt, DirEntryExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use strata_snapshotter::xattr;

/// The prefix of a whiteout: `.wh.<name>` hides `<name>` in the branches below.
pub const WH_PREFIX: &str = ".wh.";
/// Inside a directory, makes it opaque: nothing below shows through.
pub const OPAQUE: &str = ".wh..wh..opq";
/// The prefix of aufs' meta names (`.wh..wh.plnk`, `.wh..wh.aufs`, `.wh..wh.orph`, the opaque
/// marker): never shown, never whiteouts.
pub const META_PREFIX: &str = ".wh..wh.";

/// aufs' directory for orphans in the top branch; here, copy-ups in progress (a copy is made
/// there and renamed into place). Emptied when a server starts and at Commit.
pub const ORPH: &str = ".wh..wh.orph";

/// Whether a name is reserved by aufs (a whiteout or a meta name): never shown or created.
pub fn is_reserved(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX.as_bytes())
}

/// The whiteout name for `name`.
pub fn whiteout_name(name: &OsStr) -> OsString {
    let mut w = OsString::from(WH_PREFIX);
    w.push(name);
    w
}

/// What a name resolves to in the union.
#[derive(Debug)]
pub enum Found {
    /// A directory, merged from these branches (top first; the list stops at an opaque one).
    Dir {
        /// The branches that hold it.
        layers: Vec<usize>,
        /// The topmost one's metadata.
        meta: Metadata,
    },
    /// Anything else, from one branch.
    Other {
        /// The branch it comes from.
        branch: usize,
        /// Its metadata.
        meta: Metadata,
    },
}

/// What a copy-up puts in the copy of a regular file.
#[derive(Debug)]
pub enum Content {
    /// The lower file's content.
    Copy,
    /// Nothing: it is about to be truncated.
    Empty,
    /// The content, already copied to this temporary file by [`Branches::stage`].
    Staged(PathBuf),
}

impl Content {
    /// Removes a staged copy that is not used.
    pub fn discard(&self) {
        if let Content::Staged(t) = self {
            let _ = fs::remove_file(t);
        }
    }
}

/// One entry of a merged listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The entry's name.
    pub name: OsString,
    /// Its file type.
    pub kind: fs::FileType,
    /// The branch it is shown from.
    pub branch: usize,
    /// Its inode number there (d_ino).
    pub ino: u64,
}

/// The branches of one union.
#[derive(Debug)]
pub struct Branches {
    dirs: Vec<PathBuf>,
    writable: bool,
    temp: AtomicU64,
}

fn lstat(p: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn exists(p: &Path) -> io::Result<bool> {
    Ok(lstat(p)?.is_some())
}

fn ts(secs: i64, nsec: i64) -> TimeSpec {
    TimeSpec::new(secs, nsec)
}

/// Gives `to` the owner, mode, xattrs and times of `meta` (the metadata of `from`).
fn copy_attrs(from: &Path, meta: &Metadata, to: &Path) -> io::Result<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        // chown clears setuid/setgid, so the mode goes after it.
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    xattr::copy_all(from, to)?;
    utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &ts(meta.atime(), meta.atime_nsec()),
        &ts(meta.mtime(), meta.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

impl Branches {
    /// The union of `dirs` (top first); only the top is ever written, and only if `writable`.
    pub fn new(dirs: Vec<PathBuf>, writable: bool) -> Self {
        Branches {
            dirs,
            writable,
            temp: AtomicU64::new(0),
        }
    }

    /// Whether writes are allowed.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The real path of union path `rel` in branch `b`.
    pub fn real(&self, b: usize, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.dirs[b].clone()
        } else {
            self.dirs[b].join(rel)
        }
    }

    /// The top branch's directory (for statfs).
    pub fn top(&self) -> &Path {
        &self.dirs[0]
    }

    /// The branches the root merges: all of them down to the first with an opaque root.
    pub fn root_layers(&self) -> io::Result<Vec<usize>> {
        let mut layers = Vec::new();
        for b in 0..self.dirs.len() {
            layers.push(b);
            if exists(&self.dirs[b].join(OPAQUE))? {
                break;
            }
        }
        Ok(layers)
    }

    /// Looks `name` up in directory `dir` (union path) that merges `layers`.
    pub fn resolve(&self, dir: &Path, layers: &[usize], name: &OsStr) -> io::Result<Option<Found>> {
        if is_reserved(name) {
            return Ok(None);
        }
        let mut dir_layers = Vec::new();
        let mut top_meta = None;
        for &b in layers {
            let parent = self.real(b, dir);
            let real = parent.join(name);
            match lstat(&real)? {
                Some(m) if m.is_dir() => {
                    if top_meta.is_none() {
                        top_meta = Some(m);
                    }
                    dir_layers.push(b);
                    if exists(&real.join(OPAQUE))? {
                        break;
                    }
                }
                Some(m) => {
                    if dir_layers.is_empty() {
                        return Ok(Some(Found::Other { branch: b, meta: m }));
                    }
                    break;
                }
                None => {
                    if exists(&parent.join(whiteout_name(name)))? {
                        break;
                    }
                }
            }
        }
        Ok(top_meta.map(|meta| Found::Dir {
            layers: dir_layers,
            meta,
        }))
    }

    /// Whether a lower branch (not the top) would show something at `dir/name`: removing or
    /// replacing the top's entry then needs a whiteout or an opaque directory.
    pub fn lower_has(&self, dir: &Path, layers: &[usize], name: &OsStr) -> io::Result<bool> {
        let lower: Vec<usize> = layers.iter().copied().filter(|b| *b != 0).collect();
        Ok(self.resolve(dir, &lower, name)?.is_some())
    }

    /// The merged listing of directory `dir` over `layers`: whiteouts hide lower names, meta
    /// names are never shown.
    pub fn list(&self, dir: &Path, layers: &[usize]) -> io::Result<Vec<DirEntry>> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut hidden: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for &b in layers {
            let real = self.real(b, dir);
            let mut whiteouts = Vec::new();
            let rd = match fs::read_dir(&real) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in rd {
                let entry = entry?;
                let name = entry.file_name();
                let bytes = name.as_bytes();
                if bytes.starts_with(META_PREFIX.as_bytes()) {
                    continue;
                }
                if let Some(target) = bytes.strip_prefix(WH_PREFIX.as_bytes()) {
                    whiteouts.push(OsStr::from_bytes(target).to_os_string());
                    continue;
                }
                if hidden.contains(&name) || seen.contains(&name) {
                    continue;
                }
                let kind = entry.file_type()?;
                seen.insert(name.clone());
                out.push(DirEntry {
                    name,
                    kind,
                    branch: b,
                    ino: entry.ino(),
                });
            }
            hidden.extend(whiteouts);
        }
        Ok(out)
    }

    /// Makes sure directory `rel` exists in the top branch, copying each missing ancestor's
    /// owner, mode, xattrs and times from the branch that shows it. Returns the union paths of
    /// the directories made (top-down).
    pub fn copy_up_dirs(&self, rel: &Path, root_layers: &[usize]) -> io::Result<Vec<PathBuf>> {
        let mut made = Vec::new();
        let mut cur = PathBuf::new();
        let mut layers = root_layers.to_vec();
        for comp in rel.components() {
            let name = comp.as_os_str();
            let next = cur.join(name);
            let top = self.real(0, &next);
            match self.resolve(&cur, &layers, name)? {
                Some(Found::Dir { layers: l, meta }) => {
                    if l.first() != Some(&0) {
                        let from = self.real(l[0], &next);
                        fs::DirBuilder::new().mode(0o700).create(&top)?;
                        copy_attrs(&from, &meta, &top)?;
                        made.push(next.clone());
                        layers = std::iter::once(0).chain(l).collect();
                    } else {
                        layers = l;
                    }
                }
                _ => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
            cur = next;
        }
        Ok(made)
    }

    /// A fresh temporary name in the top's [`ORPH`] directory (made if missing).
    fn temp(&self) -> io::Result<PathBuf> {
        let dir = self.dirs[0].join(ORPH);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!("cpup.{}.{n}", std::process::id())))
    }

    /// Removes what an interrupted copy-up left in the top's [`ORPH`] directory.
    pub fn clear_orphans(&self) -> io::Result<()> {
        match fs::remove_dir_all(self.dirs[0].join(ORPH)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Copies the content of regular file `rel` of branch `from` into a temporary file in the
    /// top's [`ORPH`] directory, for [`Content::Staged`]. Needs no lock: lower files never change.
    pub fn stage(&self, rel: &Path, from: usize) -> io::Result<PathBuf> {
        let tmp = self.temp()?;
        let copied = (|| -> io::Result<()> {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            io::copy(&mut File::open(self.real(from, rel))?, &mut out)?;
            Ok(())
        })();
        match copied {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Copies the non-directory at union path `rel` from branch `from` into the top (its parent
    /// must already be there): content (as `content` says), owner, mode, xattrs and times. The
    /// copy is made under a temporary name and renamed into place.
    pub fn copy_up_file(&self, rel: &Path, from: usize, content: Content) -> io::Result<Metadata> {
        let src = self.real(from, rel);
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) => {
                content.discard();
                return Err(e);
            }
        };
        let ft = meta.file_type();
        let tmp = match (&content, ft.is_file()) {
            (Content::Staged(t), true) => t.clone(),
            _ => {
                content.discard();
                self.temp()?
            }
        };
        let made = (|| -> io::Result<()> {
            if let Content::Staged(_) = content {
                // Already there, with the content.
            } else if ft.is_file() {
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                if let Content::Copy = content {
                    let mut input = File::open(&src)?;
                    io::copy(&mut input, &mut out)?;
                }
            } else if ft.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&src)?, &tmp)?;
            } else {
                let kind = if ft.is_fifo() {
                    SFlag::S_IFIFO
                } else if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    SFlag::S_IFBLK
                } else if ft.is_socket() {
                    SFlag::S_IFSOCK
                } else {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                };
                nix::sys::stat::mknod(&tmp, kind, Mode::from_bits_truncate(0o600), meta.rdev())?;
            }
            copy_attrs(&src, &meta, &tmp)?;
            fs::rename(&tmp, self.real(0, rel))
        })();
        if let Err(e) = made {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::symlink_metadata(self.real(0, rel))
    }

    /// What union path `rel` resolves to, walking down from the root.
    pub fn resolve_path(&self, rel: &Path) -> io::Result<Option<Found>> {
        let mut layers = self.root_layers()?;
        let mut cur = PathBuf::new();
        let mut comps = rel.components().peekable();
        while let Some(c) = comps.next() {
            let found = self.resolve(&cur, &layers, c.as_os_str())?;
            if comps.peek().is_none() {
                return Ok(found);
            }
            match found {
                Some(Found::Dir { layers: l, .. }) => layers = l,
                _ => return Ok(None),
            }
            cur.push(c);
        }
        Ok(None)
    }

    /// The other paths of inode `ino` in branch `b` (at most `max`), found by walking it.
    fn other_links(&self, b: usize, ino: u64, not: &Path, max: usize) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(self.real(b, &dir))? {
                let entry = entry?;
                let rel = dir.join(entry.file_name());
                if entry.file_type()?.is_dir() {
                    stack.push(rel);
                } else if entry.ino() == ino && rel != not {
                    out.push(rel);
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Copies the non-directory at `rel` from branch `from` into the top, keeping hard links
    /// within a layer (what aufs' pseudo-links are for): when the lower file has other names
    /// that the union shows, they are linked to the copy too, so every name keeps showing one
    /// inode. Returns the copy's metadata and the directories made in the top for those names.
    pub fn copy_up_linked(
        &self,
        rel: &Path,
        from: usize,
        content: Content,
    ) -> io::Result<(Metadata, Vec<PathBuf>)> {
        let src = match fs::symlink_metadata(self.real(from, rel)) {
            Ok(m) => m,
            Err(e) => {
                content.discard();
                return Err(e);
            }
        };
        let meta = self.copy_up_file(rel, from, content)?;
        let mut made = Vec::new();
        if src.nlink() < 2 {
            return Ok((meta, made));
        }
        let top = self.real(0, rel);
        let root_layers = self.root_layers()?;
        let others = self.other_links(from, src.ino(), rel, src.nlink() as usize - 1)?;
        for other in others {
            let shown = matches!(
                self.resolve_path(&other)?,
                Some(Found::Other { branch, meta: m }) if branch == from && m.ino() == src.ino()
            );
            if !shown {
                continue;
            }
            made.extend(self.copy_up_dirs(other.parent().unwrap_or(Path::new("")), &root_layers)?);
            fs::hard_link(&top, self.real(0, &other))?;
        }
        Ok((fs::symlink_metadata(&top)?, made))
    }

    /// Writes a whiteout for `dir/name` in the top (whose `dir` must exist).
    pub fn whiteout(&self, dir: &Path, name: &OsStr) -> io::Result<()> {
        let path = self.real(0, dir).join(whiteout_name(name));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the top's whiteout for `dir/name`; returns whether there was one.
    pub fn clear_whiteout(&self, dir: &Path, name: &OsStr) -> io::Result<bool> {
        match fs::remove_file(self.real(0, dir).join(whiteout_name(name))) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Marks the top's directory `rel` opaque.
    pub fn make_opaque(&self, rel: &Path) -> io::Result<()> {
        let path = self.real(0, rel).join(OPAQUE);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the top's entry at `rel` (a directory with everything in it: only whiteouts and
    /// meta names remain in a directory the union shows empty).
    pub fn remove_top(&self, rel: &Path) -> io::Result<()> {
        let path = self.real(0, rel);
        match lstat(&path)? {
            Some(m) if m.is_dir() => fs::remove_dir_all(&path),
            Some(_) => fs::remove_file(&path),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[DirEntry]) -> Vec<String> {
        let mut v: Vec<String> = entries
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_entries() {
        let t = tempfile::tempdir().unwrap();
        let (top, mid, low) = (t.path().join("0"), t.path().join("1"), t.path().join("2"));
        for d in [&top, &mid, &low] {
            fs::create_dir_all(d.join("d")).unwrap();
        }
        fs::write(low.join("a"), "low a").unwrap();
        fs::write(low.join("b"), "low b").unwrap();
        fs::write(low.join("d/x"), "x").unwrap();
        fs::write(mid.join(".wh.a"), "").unwrap();
        fs::write(mid.join("d/y"), "y").unwrap();
        fs::write(mid.join("d").join(OPAQUE), "").unwrap();
        fs::write(top.join("c"), "c").unwrap();
        fs::create_dir(top.join(".wh..wh.plnk")).unwrap();
        let u = Branches::new(vec![top, mid, low], true);
        let root = u.root_layers().unwrap();
        assert_eq!(root, vec![0, 1, 2]);
        assert!(u
            .resolve(Path::new(""), &root, OsStr::new("a"))
            .unwrap()
            .is_none());
        assert!(matches!(
            u.resolve(Path::new(""), &root, OsStr::new("b")).unwrap(),
            Some(Found::Other { branch: 2, .. })
        ));
        let Some(Found::Dir { layers, .. }) =
            u.resolve(Path::new(""), &root, OsStr::new("d")).unwrap()
        else {
            panic!("d is a directory")
        };
        assert_eq!(layers, vec![0, 1]);
        assert_eq!(
            names(&u.list(Path::new(""), &root).unwrap()),
            ["b", "c", "d"]
        );
        assert_eq!(names(&u.list(Path::new("d"), &layers).unwrap()), ["y"]);
        assert!(u.lower_has(Path::new(""), &root, OsStr::new("b")).unwrap());
        assert!(!u.lower_has(Path::new(""), &root, OsStr::new("c")).unwrap());
    }

    #[test]
    fn copy_up_keeps_attributes() {
        let t = tempfile::tempdir().unwrap();
        let (top, low) = (t.path().join("0"), t.path().join("1"));
        fs::create_dir_all(&top).unwrap();
        fs::create_dir_all(low.join("etc/sub")).unwrap();
        fs::set_permissions(low.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(low.join("etc/sub/f"), "content").unwrap();
        std::os::unix::fs::lchown(low.join("etc/sub/f"), Some(5), Some(6)).unwrap();
        fs::set_permissions(low.join("etc/sub/f"), fs::Permissions::from_mode(0o4711)).unwrap();
        let u = Branches::new(vec![top.clone(), low], true);
        let root = u.root_layers().unwrap();
        let made = u.copy_up_dirs(Path::new("etc/sub"), &root).unwrap();
        assert_eq!(made, [PathBuf::from("etc"), PathBuf::from("etc/sub")]);
        assert_eq!(
            fs::metadata(top.join("etc")).unwrap().mode() & 0o7777,
            0o750
        );
        let m = u
            .copy_up_file(Path::new("etc/sub/f"), 1, Content::Copy)
            .unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4711, 5, 6));
        assert_eq!(fs::read(top.join("etc/sub/f")).unwrap(), b"content");
        assert!(u
            .copy_up_dirs(Path::new("etc/sub"), &root)
            .unwrap()
            .is_empty());
    }
}
