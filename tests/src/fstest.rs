//! Filesystem helpers for layer tests: apply a list of changes to a directory, and compare two
//! trees deeply with a readable diff.
//!
//! Paths in changes are absolute within the tree (`/etc/hosts`). Modes are set explicitly with
//! chmod after creating, so the process umask never matters.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use strata_snapshotter::xattr;

/// One change to a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create or truncate a regular file with this content, then chmod it.
    File {
        /// Path in the tree.
        path: String,
        /// The whole content.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// Create a directory (parents too, 0755) and chmod it; an existing dir is left as it is.
    Dir {
        /// Path in the tree.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// Remove a file, link or whole directory tree; a missing path is fine.
    RemoveAll(String),
    /// lchown.
    Chown {
        /// Path in the tree.
        path: String,
        /// New owner.
        uid: u32,
        /// New group.
        gid: u32,
    },
    /// chmod.
    Chmod {
        /// Path in the tree.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A hard link `new` to the existing file `existing`.
    Link {
        /// Existing file.
        existing: String,
        /// New name.
        new: String,
    },
    /// A symlink at `link` whose content is `target` (taken literally).
    Symlink {
        /// Link content.
        target: String,
        /// Where the link is made.
        link: String,
    },
    /// A device node or fifo (`kind` is [`EntryKind::CharDevice`], [`EntryKind::BlockDevice`]
    /// or [`EntryKind::Fifo`]), then chmod.
    Mknod {
        /// Path in the tree.
        path: String,
        /// What to make.
        kind: EntryKind,
        /// Permission bits.
        mode: u32,
        /// Device major number.
        major: u64,
        /// Device minor number.
        minor: u64,
    },
    /// Overwrite bytes of an existing file in place at `offset` (a partial write, as a
    /// database would do; the file is not truncated).
    WriteAt {
        /// Path in the tree.
        path: String,
        /// Where to write.
        offset: u64,
        /// What to write.
        data: Vec<u8>,
    },
    /// Set an extended attribute (not following symlinks).
    SetXattr {
        /// Path in the tree.
        path: String,
        /// Attribute name, e.g. `user.x` or `security.capability`.
        name: String,
        /// Attribute value.
        value: Vec<u8>,
    },
    /// Remove an extended attribute.
    RemoveXattr {
        /// Path in the tree.
        path: String,
        /// Attribute name.
        name: String,
    },
    /// rename(2), replacing an existing file.
    Rename {
        /// Old path.
        from: String,
        /// New path.
        to: String,
    },
}

/// A file with content and mode.
pub fn create_file(path: &str, content: impl AsRef<[u8]>, mode: u32) -> Change {
    Change::File {
        path: path.to_owned(),
        content: content.as_ref().to_vec(),
        mode,
    }
}

/// A directory with mode.
pub fn create_dir(path: &str, mode: u32) -> Change {
    Change::Dir {
        path: path.to_owned(),
        mode,
    }
}

/// Remove a path and everything below it.
pub fn remove_all(path: &str) -> Change {
    Change::RemoveAll(path.to_owned())
}

/// Change ownership (not following symlinks).
pub fn chown(path: &str, uid: u32, gid: u32) -> Change {
    Change::Chown {
        path: path.to_owned(),
        uid,
        gid,
    }
}

/// Change permission bits.
pub fn chmod(path: &str, mode: u32) -> Change {
    Change::Chmod {
        path: path.to_owned(),
        mode,
    }
}

/// Hard-link `new` to `existing`.
pub fn link(existing: &str, new: &str) -> Change {
    Change::Link {
        existing: existing.to_owned(),
        new: new.to_owned(),
    }
}

/// A symlink at `link` pointing to `target`.
pub fn symlink(target: &str, link: &str) -> Change {
    Change::Symlink {
        target: target.to_owned(),
        link: link.to_owned(),
    }
}

/// A character device node.
pub fn char_device(path: &str, mode: u32, major: u64, minor: u64) -> Change {
    Change::Mknod {
        path: path.to_owned(),
        kind: EntryKind::CharDevice,
        mode,
        major,
        minor,
    }
}

/// A block device node.
pub fn block_device(path: &str, mode: u32, major: u64, minor: u64) -> Change {
    Change::Mknod {
        path: path.to_owned(),
        kind: EntryKind::BlockDevice,
        mode,
        major,
        minor,
    }
}

/// A named pipe.
pub fn fifo(path: &str, mode: u32) -> Change {
    Change::Mknod {
        path: path.to_owned(),
        kind: EntryKind::Fifo,
        mode,
        major: 0,
        minor: 0,
    }
}

/// Overwrite bytes of an existing file at `offset`.
pub fn write_at(path: &str, offset: u64, data: impl AsRef<[u8]>) -> Change {
    Change::WriteAt {
        path: path.to_owned(),
        offset,
        data: data.as_ref().to_vec(),
    }
}

/// Set the xattr `name` of `path` to `value`.
pub fn set_xattr(path: &str, name: &str, value: impl AsRef<[u8]>) -> Change {
    Change::SetXattr {
        path: path.to_owned(),
        name: name.to_owned(),
        value: value.as_ref().to_vec(),
    }
}

/// Remove the xattr `name` of `path`.
pub fn remove_xattr(path: &str, name: &str) -> Change {
    Change::RemoveXattr {
        path: path.to_owned(),
        name: name.to_owned(),
    }
}

/// Rename `from` to `to`.
pub fn rename(from: &str, to: &str) -> Change {
    Change::Rename {
        from: from.to_owned(),
        to: to.to_owned(),
    }
}

/// `root` joined with a tree path (leading slashes dropped).
pub fn in_tree(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Applies `changes` to the tree at `root`, in order.
pub fn apply(root: &Path, changes: &[Change]) -> Result<()> {
    for change in changes {
        apply_one(root, change)
            .with_context(|| format!("apply {change:?} in {}", root.display()))?;
    }
    Ok(())
}

fn apply_one(root: &Path, change: &Change) -> Result<()> {
    match change {
        Change::File {
            path,
            content,
            mode,
        } => {
            let p = in_tree(root, path);
            fs::write(&p, content).context("write")?;
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).context("chmod")?;
        }
        Change::Dir { path, mode } => {
            let p = in_tree(root, path);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!("{} exists and is not a directory", p.display()),
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    if let Some(parent) = p.parent() {
                        make_parents(parent)?;
                    }
                    fs::create_dir(&p).context("mkdir")?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).context("chmod")?;
                }
                Err(err) => return Err(err).context("lstat"),
            }
        }
        Change::RemoveAll(path) => {
            let p = in_tree(root, path);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&p).context("remove dir tree")?,
                Ok(_) => fs::remove_file(&p).context("remove file")?,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err).context("lstat"),
            }
        }
        Change::Chown { path, uid, gid } => {
            std::os::unix::fs::lchown(in_tree(root, path), Some(*uid), Some(*gid))
                .context("lchown")?;
        }
        Change::Chmod { path, mode } => {
            fs::set_permissions(in_tree(root, path), fs::Permissions::from_mode(*mode))
                .context("chmod")?;
        }
        Change::Link { existing, new } => {
            fs::hard_link(in_tree(root, existing), in_tree(root, new)).context("link")?;
        }
        Change::Symlink { target, link } => {
            std::os::unix::fs::symlink(target, in_tree(root, link)).context("symlink")?;
        }
        Change::Mknod {
            path,
            kind,
            mode,
            major,
            minor,
        } => {
            let p = in_tree(root, path);
            let sflag = match kind {
                EntryKind::CharDevice => SFlag::S_IFCHR,
                EntryKind::BlockDevice => SFlag::S_IFBLK,
                EntryKind::Fifo => SFlag::S_IFIFO,
                other => bail!("mknod cannot make a {other:?}"),
            };
            mknod(
                &p,
                sflag,
                Mode::from_bits_truncate(0o600),
                makedev(*major, *minor),
            )
            .context("mknod")?;
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).context("chmod")?;
        }
        Change::WriteAt { path, offset, data } => {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(in_tree(root, path))
                .context("open for writing")?;
            file.write_all_at(data, *offset).context("pwrite")?;
        }
        Change::SetXattr { path, name, value } => {
            xattr::set(&in_tree(root, path), name.as_ref(), value, 0).context("lsetxattr")?;
        }
        Change::RemoveXattr { path, name } => {
            xattr::remove(&in_tree(root, path), name.as_ref()).context("lremovexattr")?;
        }
        Change::Rename { from, to } => {
            fs::rename(in_tree(root, from), in_tree(root, to)).context("rename")?;
        }
    }
    Ok(())
}

fn make_parents(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_parents(parent)?;
    }
    fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", dir.display()))
}

/// The kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// What the comparison looks at for one path. Times are ignored; so is a directory's size,
/// which depends on the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File type.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content of a regular file.
    pub content: Option<Vec<u8>>,
    /// Target of a symlink.
    pub target: Option<PathBuf>,
    /// Device number of a device node.
    pub rdev: Option<u64>,
    /// Extended attributes (overlayfs hides its own `trusted.overlay.*`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The other paths in the same tree that are hard links to this file.
    pub links: Vec<String>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if let Some(c) = &self.content {
            let shown: String = String::from_utf8_lossy(&c[..c.len().min(40)]).into_owned();
            write!(f, " {} bytes {shown:?}", c.len())?;
        }
        if let Some(t) = &self.target {
            write!(f, " -> {}", t.display())?;
        }
        if let Some(r) = self.rdev {
            write!(
                f,
                " dev {}:{}",
                nix::sys::stat::major(r),
                nix::sys::stat::minor(r)
            )?;
        }
        for (name, value) in &self.xattrs {
            write!(f, " xattr {name}={:?}", String::from_utf8_lossy(value))?;
        }
        if !self.links.is_empty() {
            write!(f, " hard-linked with {:?}", self.links)?;
        }
        Ok(())
    }
}

/// Reads the whole tree below `root` (the root itself is not included) without following
/// symlinks, keyed by path (`/a/b`).
pub fn read_tree(root: &Path) -> Result<BTreeMap<String, Entry>> {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    walk(root, "", &mut entries, &mut inodes)?;
    for group in inodes.values().filter(|g| g.len() > 1) {
        for path in group {
            if let Some(e) = entries.get_mut(path) {
                e.links = group.iter().filter(|p| *p != path).cloned().collect();
            }
        }
    }
    Ok(entries)
}

fn walk(
    dir: &Path,
    prefix: &str,
    entries: &mut BTreeMap<String, Entry>,
    inodes: &mut BTreeMap<(u64, u64), Vec<String>>,
) -> Result<()> {
    let rd = fs::read_dir(dir).with_context(|| format!("read dir {}", dir.display()))?;
    for item in rd {
        let item = item.with_context(|| format!("read dir {}", dir.display()))?;
        let path = item.path();
        let name = format!("{prefix}/{}", item.file_name().to_string_lossy());
        let md =
            fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_char_device() {
            EntryKind::CharDevice
        } else if ft.is_block_device() {
            EntryKind::BlockDevice
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            EntryKind::Socket
        };
        let content = match kind {
            EntryKind::File => {
                Some(fs::read(&path).with_context(|| format!("read {}", path.display()))?)
            }
            _ => None,
        };
        let target = match kind {
            EntryKind::Symlink => {
                Some(fs::read_link(&path).with_context(|| format!("readlink {}", path.display()))?)
            }
            _ => None,
        };
        let rdev =
            matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice).then(|| md.rdev());
        let mut xattrs = BTreeMap::new();
        let names = match xattr::list(&path) {
            // A filesystem without extended attributes: none.
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Vec::new(),
            r => r.with_context(|| format!("llistxattr {}", path.display()))?,
        };
        for name in names {
            let value = xattr::get(&path, &name)
                .with_context(|| format!("lgetxattr {} {}", path.display(), name.display()))?;
            xattrs.insert(name.to_string_lossy().into_owned(), value);
        }
        if kind != EntryKind::Dir {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(name.clone());
        }
        entries.insert(
            name.clone(),
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                content,
                target,
                rdev,
                xattrs,
                links: Vec::new(),
            },
        );
        if kind == EntryKind::Dir {
            walk(&path, &name, entries, inodes)?;
        }
    }
    Ok(())
}

/// The differences between two trees, one line each; empty when they are equal.
pub fn diff_trees(expected: &Path, actual: &Path) -> Result<Vec<String>> {
    let want = read_tree(expected).context("read the expected tree")?;
    let got = read_tree(actual).context("read the actual tree")?;
    let mut lines = Vec::new();
    for (path, w) in &want {
        match got.get(path) {
            None => lines.push(format!("missing  {path}: want {w}")),
            Some(g) if g != w => lines.push(format!(
                "differs  {path}: want {w}\n                got  {g}"
            )),
            Some(_) => {}
        }
    }
    for (path, g) in &got {
        if !want.contains_key(path) {
            lines.push(format!("extra    {path}: got {g}"));
        }
    }
    Ok(lines)
}

/// Fails with a readable diff unless the trees at `expected` and `actual` are equal.
pub fn check_trees_equal(expected: &Path, actual: &Path) -> Result<()> {
    let lines = diff_trees(expected, actual)?;
    if lines.is_empty() {
        return Ok(());
    }
    let shown = lines.len().min(40);
    bail!(
        "tree {} differs from the expected tree {} ({} differences{}):\n  {}",
        actual.display(),
        expected.display(),
        lines.len(),
        if shown < lines.len() {
            ", first 40 shown"
        } else {
            ""
        },
        lines[..shown].join("\n  ")
    )
}

/// Reads every file and lists every dir below `root`, to prove a mount is readable. Returns
/// the number of entries.
pub fn read_everything(root: &Path) -> Result<usize> {
    Ok(read_tree(root)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_and_compare_equal_trees() -> Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        let changes = vec![
            create_dir("/etc", 0o700),
            create_file("/etc/hosts", "x", 0o644),
            link("/etc/hosts", "/etc/hosts2"),
            symlink("hosts", "/etc/link"),
            create_dir("/a/b/c", 0o755),
            rename("/etc/hosts2", "/etc/hosts3"),
            chmod("/etc/hosts", 0o600),
            remove_all("/a/b"),
            remove_all("/does-not-exist"),
        ];
        apply(a.path(), &changes)?;
        apply(b.path(), &changes)?;
        check_trees_equal(a.path(), b.path())?;
        let tree = read_tree(a.path())?;
        assert_eq!(tree["/etc/hosts"].links, vec!["/etc/hosts3".to_owned()]);
        assert_eq!(tree["/etc/hosts"].mode, 0o600);
        assert_eq!(tree["/etc"].mode, 0o700);
        assert!(!tree.contains_key("/a/b"));
        Ok(())
    }

    #[test]
    fn differences_are_reported() -> Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        apply(
            a.path(),
            &[
                create_file("/f", "one", 0o644),
                create_file("/g", "", 0o644),
            ],
        )?;
        apply(
            b.path(),
            &[
                create_file("/f", "two", 0o644),
                create_file("/h", "", 0o644),
            ],
        )?;
        let lines = diff_trees(a.path(), b.path())?;
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(check_trees_equal(a.path(), b.path()).is_err());
        // A hard link in one tree but a copy in the other differs.
        let c = tempfile::tempdir()?;
        let d = tempfile::tempdir()?;
        apply(c.path(), &[create_file("/x", "1", 0o644), link("/x", "/y")])?;
        apply(
            d.path(),
            &[create_file("/x", "1", 0o644), create_file("/y", "1", 0o644)],
        )?;
        assert_eq!(diff_trees(c.path(), d.path())?.len(), 2);
        Ok(())
    }

    /// Every attribute the comparison promises to look at is seen: two trees that differ only
    /// in it must differ. (Needs root for chown and mknod.)
    #[test]
    fn every_compared_attribute_is_seen() -> Result<()> {
        let base = vec![
            create_dir("/d", 0o755),
            create_file("/d/f", "content", 0o644),
            symlink("target", "/d/l"),
            char_device("/d/c", 0o600, 1, 3),
            create_file("/d/g", "g", 0o644),
        ];
        let variants: Vec<(&str, Change)> = vec![
            ("mode", chmod("/d/f", 0o600)),
            ("setuid bit", chmod("/d/f", 0o4644)),
            ("owner", chown("/d/f", 1, 0)),
            ("group", chown("/d/f", 0, 1)),
            ("content", create_file("/d/f", "CONTENT", 0o644)),
            ("dir mode", chmod("/d", 0o700)),
            ("xattr", set_xattr("/d/f", "user.x", "1")),
            ("hard link", link("/d/f", "/d/f2")),
        ];
        for (what, change) in variants {
            let a = tempfile::tempdir()?;
            let b = tempfile::tempdir()?;
            apply(a.path(), &base)?;
            apply(b.path(), &base)?;
            apply(b.path(), &[change])?;
            let lines = diff_trees(a.path(), b.path())?;
            assert!(!lines.is_empty(), "a difference in {what} was not seen");
        }
        // Replacements of one kind of entry by another, or other targets and device numbers.
        let replacements: Vec<(&str, Vec<Change>)> = vec![
            (
                "symlink target",
                vec![remove_all("/d/l"), symlink("other", "/d/l")],
            ),
            (
                "device number",
                vec![remove_all("/d/c"), char_device("/d/c", 0o600, 1, 5)],
            ),
            (
                "device kind",
                vec![remove_all("/d/c"), block_device("/d/c", 0o600, 1, 3)],
            ),
            (
                "fifo for file",
                vec![remove_all("/d/g"), fifo("/d/g", 0o644)],
            ),
            (
                "dir for file",
                vec![remove_all("/d/g"), create_dir("/d/g", 0o644)],
            ),
        ];
        for (what, changes) in replacements {
            let a = tempfile::tempdir()?;
            let b = tempfile::tempdir()?;
            apply(a.path(), &base)?;
            apply(b.path(), &base)?;
            apply(b.path(), &changes)?;
            let lines = diff_trees(a.path(), b.path())?;
            assert!(!lines.is_empty(), "a difference in {what} was not seen");
        }
        Ok(())
    }
}
