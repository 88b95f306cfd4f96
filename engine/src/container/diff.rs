//! A container's changes as a layer tar, for `strata commit`.
//!
//! With a native diff (overlay2's upper directory) only the container's own layer is walked:
//! its files as they are, a 0/0 character device (overlay's whiteout) as `.wh.<name>`, and a
//! directory marked `trusted.overlay.opaque=y` with a `.wh..wh..opq` entry. Without one (a
//! plain filesystem, e.g. devicemapper's), the container's tree is compared with its parent's,
//! as Docker's naive diff does: new or changed entries are written, missing ones whited out.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// The header of an empty marker file (`.wh.<name>`, `.wh..wh..opq`).
fn marker_header() -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

/// Whether a directory is marked opaque in an overlay upper dir.
fn is_opaque(dir: &Path) -> bool {
    nix_getxattr(dir, "trusted.overlay.opaque").is_some_and(|v| v == b"y")
}

fn nix_getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: lgetxattr with NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

fn header_for(meta: &fs::Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Writes a layer tar of the tree at `root` to `out`. `overlay` converts overlay whiteouts
/// and opaque markers; `skip` names entries to leave out (relative paths).
struct Writer<W: io::Write> {
    tar: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    overlay: bool,
}

impl<W: io::Write> Writer<W> {
    fn whiteout(&mut self, rel: &Path) -> io::Result<()> {
        let name = rel
            .file_name()
            .map(|n| format!(".wh.{}", n.to_string_lossy()))
            .unwrap_or_default();
        let path = rel.parent().unwrap_or(Path::new("")).join(name);
        let mut h = marker_header();
        self.tar.append_data(&mut h, path, io::empty())
    }

    fn entry(&mut self, abs: &Path, rel: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(abs)?;
        let ft = meta.file_type();
        if self.overlay && ft.is_char_device() && meta.rdev() == 0 {
            return self.whiteout(rel);
        }
        if ft.is_dir() {
            let mut h = header_for(&meta, EntryType::Directory);
            self.tar.append_data(&mut h, rel, io::empty())?;
            if self.overlay && is_opaque(abs) {
                let mut o = Header::new_gnu();
                o.set_entry_type(EntryType::Regular);
                o.set_mode(0o644);
                o.set_size(0);
                self.tar
                    .append_data(&mut o, rel.join(".wh..wh..opq"), io::empty())?;
            }
            return Ok(());
        }
        if meta.nlink() > 1 && !ft.is_dir() {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())).cloned() {
                let mut h = header_for(&meta, EntryType::Link);
                return self.tar.append_link(&mut h, rel, first);
            }
            self.links
                .insert((meta.dev(), meta.ino()), rel.to_path_buf());
        }
        if ft.is_symlink() {
            let mut h = header_for(&meta, EntryType::Symlink);
            return self.tar.append_link(&mut h, rel, fs::read_link(abs)?);
        }
        if ft.is_file() {
            let mut h = header_for(&meta, EntryType::Regular);
            h.set_size(meta.len());
            return self.tar.append_data(&mut h, rel, File::open(abs)?);
        }
        let kind = if ft.is_fifo() {
            EntryType::Fifo
        } else if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else {
            // Sockets are not part of a layer.
            return Ok(());
        };
        let mut h = header_for(&meta, kind);
        let dev = meta.rdev();
        h.set_device_major(libc::major(dev))?;
        h.set_device_minor(libc::minor(dev))?;
        self.tar.append_data(&mut h, rel, io::empty())
    }
}

/// Sorted children of a directory.
fn children(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut v: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

/// The tar of an overlay upper dir (or of a whole root with no parent).
pub fn native_diff(upper: &Path, out: impl io::Write) -> io::Result<()> {
    let mut w = Writer {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        overlay: true,
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        for name in children(&dir)?.into_iter().rev() {
            let r = rel.join(&name);
            let abs = upper.join(&r);
            w.entry(&abs, &r)?;
            if fs::symlink_metadata(&abs)?.is_dir() {
                stack.push(r);
            }
        }
    }
    w.tar.into_inner()?.flush()
}

fn same(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.file_type() == b.file_type()
        && a.mode() == b.mode()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && (a.is_dir()
            || (a.len() == b.len() && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()))
        && a.rdev() == b.rdev()
}

/// The tar of what differs between `lower` (the parent's tree) and `upper` (the container's).
pub fn tree_diff(lower: &Path, upper: &Path, out: impl io::Write) -> io::Result<()> {
    let mut w = Writer {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        overlay: false,
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (udir, ldir) = (upper.join(&rel), lower.join(&rel));
        let lower_names = if ldir.is_dir() && !ldir.is_symlink() {
            children(&ldir)?
        } else {
            Vec::new()
        };
        let upper_names = children(&udir)?;
        for name in &lower_names {
            if !upper_names.contains(name) {
                w.whiteout(&rel.join(name))?;
            }
        }
        for name in upper_names.into_iter().rev() {
            let r = rel.join(&name);
            let (u, l) = (upper.join(&r), lower.join(&r));
            let um = fs::symlink_metadata(&u)?;
            let lm = fs::symlink_metadata(&l).ok();
            let changed = match &lm {
                None => true,
                Some(lm) => {
                    !same(&um, lm)
                        || (um.file_type().is_symlink() && fs::read_link(&u)? != fs::read_link(&l)?)
                }
            };
            if changed {
                w.entry(&u, &r)?;
            }
            if um.is_dir() {
                stack.push(r);
            }
        }
    }
    w.tar.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn tree_diff_adds_changes_and_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let (l, u) = (d.path().join("l"), d.path().join("u"));
        for r in [&l, &u] {
            fs::create_dir_all(r.join("etc")).unwrap();
            fs::write(r.join("etc/same"), "x").unwrap();
        }
        // Same content and times: unchanged.
        let t = fs::metadata(l.join("etc/same"))
            .unwrap()
            .modified()
            .unwrap();
        File::options()
            .write(true)
            .open(u.join("etc/same"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        fs::write(l.join("gone"), "g").unwrap();
        fs::write(u.join("new"), "n").unwrap();
        let mut out = Vec::new();
        tree_diff(&l, &u, &mut out).unwrap();
        let n = names(&out);
        assert!(
            n.contains(&".wh.gone".to_string()) && n.contains(&"new".to_string()),
            "{n:?}"
        );
        assert!(!n.contains(&"etc/same".to_string()), "{n:?}");
    }

    #[test]
    fn native_diff_keeps_hard_links() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), "1").unwrap();
        fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        let mut out = Vec::new();
        native_diff(d.path(), &mut out).unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let kinds: Vec<EntryType> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(kinds, vec![EntryType::Regular, EntryType::Link]);
    }
}
