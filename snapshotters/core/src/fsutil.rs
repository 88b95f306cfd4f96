//! Filesystem helpers the drivers share.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::snapshotter::Usage;

/// Disk usage of a directory tree: allocated bytes (st_blocks × 512) and inodes, each hard-linked
/// inode counted once, as containerd's `fs.DiskUsage` counts.
pub fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir).ctx("stat", &dir)?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.size += (meta.blocks() * 512) as i64;
            usage.inodes += 1;
        }
        if !meta.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let entry = entry.ctx("read directory", &dir)?;
            let ft = entry.file_type().ctx("stat", entry.path())?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else {
                let m = entry.metadata().ctx("stat", entry.path())?;
                if seen.insert((m.dev(), m.ino())) {
                    usage.size += (m.blocks() * 512) as i64;
                    usage.inodes += 1;
                }
            }
        }
    }
    Ok(usage)
}

/// The name of the filesystem that holds `path`, as `docker info` shows it ("extfs", "xfs" …).
pub fn backing_fs(path: &Path) -> Result<String> {
    let st = nix::sys::statfs::statfs(path)
        .map_err(|e| crate::error::Error::io("statfs", path, e.into()))?;
    let magic = st.filesystem_type().0 as u64;
    Ok(match magic {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x8584_58F6 => "ramfs",
        0x5346_544E => "ntfs",
        0x0000_6969 => "nfs",
        0xE0F5_E1E2 => "erofs",
        0x7371_7368 => "squashfs",
        0x00C3_6400 => "ceph",
        _ => return Ok(format!("<unknown> (magic {magic:#x})")),
    }
    .to_string())
}

/// Removes a directory tree; a missing one is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.ctx("remove", path),
    }
}
