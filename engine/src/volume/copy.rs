//! Filling an empty volume from the image, as Docker does when a container first mounts it:
//! the tree under the container's path is copied with its owners, modes, times, extended
//! attributes, symlinks, hard links, device nodes and fifos, and the volume's root takes the
//! owner and mode of the image's directory.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use strata_snapshotter::xattr;

/// A copy that failed, with the operation and the path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct CopyError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

fn at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |source| CopyError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `dir` has no entries (a missing directory counts as empty).
pub fn is_empty_dir(dir: &Path) -> Result<bool, CopyError> {
    match fs::read_dir(dir) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(at("read directory", dir)(e)),
    }
}

/// Copies the contents of directory `src` into the existing directory `dst`, then gives `dst`
/// the owner and mode of `src` (Docker's `copyExistingContents` + `copyOwnership`).
pub fn seed(src: &Path, dst: &Path) -> Result<(), CopyError> {
    let mut links = HashMap::new();
    copy_children(src, dst, &mut links)?;
    let meta = fs::symlink_metadata(src).map_err(at("stat", src))?;
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(at("chown", dst))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(at("chmod", dst))
}

fn copy_children(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), CopyError> {
    for entry in fs::read_dir(src).map_err(at("read directory", src))? {
        let entry = entry.map_err(at("read directory", src))?;
        copy_entry(&entry.path(), &dst.join(entry.file_name()), links)?;
    }
    Ok(())
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), CopyError> {
    let meta = fs::symlink_metadata(src).map_err(at("stat", src))?;
    let ft = meta.file_type();
    if !ft.is_dir() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return fs::hard_link(first, dst).map_err(at("link", dst));
        }
        links.insert((meta.dev(), meta.ino()), dst.to_path_buf());
    }
    if ft.is_dir() {
        fs::create_dir(dst).map_err(at("create directory", dst))?;
        copy_children(src, dst, links)?;
    } else if ft.is_file() {
        fs::copy(src, dst).map_err(at("copy to", dst))?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(at("read link", src))?;
        std::os::unix::fs::symlink(target, dst).map_err(at("symlink", dst))?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        let kind = if ft.is_fifo() {
            SFlag::S_IFIFO
        } else if ft.is_char_device() {
            SFlag::S_IFCHR
        } else {
            SFlag::S_IFBLK
        };
        nix::sys::stat::mknod(
            dst,
            kind,
            Mode::from_bits_truncate(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .map_err(|e| at("mknod", dst)(e.into()))?;
    } else {
        // A socket belongs to the process that made it; Docker skips them too.
        return Ok(());
    }
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(at("chown", dst))?;
    if !ft.is_symlink() {
        // After chown, which clears the set-id bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(at("chmod", dst))?;
    }
    copy_xattrs(src, dst)?;
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| at("set times of", dst)(e.into()))
}

fn copy_xattrs(src: &Path, dst: &Path) -> Result<(), CopyError> {
    let names = match xattr::list(src) {
        // A source filesystem without extended attributes has none to copy.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Vec::new(),
        r => r.map_err(at("list extended attributes of", src))?,
    };
    for name in names {
        let value = xattr::get(src, &name).map_err(at("read extended attribute of", src))?;
        if let Err(e) = xattr::set(dst, &name, &value, 0) {
            if e.raw_os_error() == Some(libc::ENOTSUP) {
                tracing::warn!(
                    path = %dst.display(),
                    xattr = %name.to_string_lossy(),
                    "the volume's filesystem does not support this extended attribute"
                );
                continue;
            }
            return Err(at("set extended attribute on", dst)(e));
        }
    }
    Ok(())
}

/// The bytes of the regular files under `dir` (hard links counted once; symlinks not followed).
pub fn tree_size(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_contents_modes_links_and_times() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("sub/f"), "data").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::hard_link(src.join("sub/f"), src.join("hl")).unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("ln")).unwrap();
        xattr::set(&src.join("sub/f"), "user.strata".as_ref(), b"kept", 0).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o710)).unwrap();
        let old = TimeSpec::new(1_000_000, 5);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &src.join("sub/f"),
            &old,
            &old,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        assert!(is_empty_dir(&dst).unwrap());
        seed(&src, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("sub/f")).unwrap(), "data");
        assert_eq!(
            xattr::get(&dst.join("sub/f"), "user.strata".as_ref()).unwrap(),
            b"kept",
            "extended attributes are copied"
        );
        let m = fs::metadata(dst.join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000, 5));
        assert_eq!(
            m.ino(),
            fs::metadata(dst.join("hl")).unwrap().ino(),
            "a hard link stays one"
        );
        assert_eq!(fs::read_link(dst.join("ln")).unwrap(), Path::new("sub/f"));
        assert_eq!(fs::metadata(&dst).unwrap().mode() & 0o7777, 0o710);
        assert!(!is_empty_dir(&dst).unwrap());
        assert_eq!(tree_size(&dst), 4);
    }
}
