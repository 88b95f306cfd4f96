//! The filesystem on the base device: making it, growing it when `dm.basesize` is raised, and
//! reading a device's used inodes from its superblock.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{DevError, DevResult, IoCtx};
use crate::options::Fs;

fn run(program: &'static str, args: &[&str], path: &Path) -> DevResult<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .ctx("run", program)?;
    if out.status.success() {
        return Ok(());
    }
    Err(DevError::Command {
        program,
        path: path.to_path_buf(),
        message: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Makes `fs` on `dev` with the extra `args`.
pub fn mkfs(fs: Fs, dev: &Path, args: &[String]) -> DevResult<()> {
    let d = dev.to_string_lossy();
    let mut all: Vec<&str> = match fs {
        Fs::Ext4 => vec![
            "-q",
            "-F",
            "-E",
            "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
        ],
        Fs::Xfs => vec!["-q", "-f", "-K"],
    };
    all.extend(args.iter().map(String::as_str));
    all.push(&d);
    match fs {
        Fs::Ext4 => run("mkfs.ext4", &all, dev),
        Fs::Xfs => run("mkfs.xfs", &all, dev),
    }
}

/// Mounts `dev` on `dir` for `f` and unmounts it after.
fn with_mounted<T>(
    fs: Fs,
    dev: &Path,
    dir: &Path,
    f: impl FnOnce() -> DevResult<T>,
) -> DevResult<T> {
    fs::create_dir_all(dir).ctx("create directory", dir)?;
    let data = match fs {
        Fs::Xfs => Some("nouuid"),
        Fs::Ext4 => None,
    };
    mount(Some(dev), dir, Some(fs.name()), MsFlags::empty(), data)
        .map_err(|e| DevError::io("mount", dir, e.into()))?;
    let r = f();
    if let Err(e) = umount2(dir, MntFlags::empty()) {
        tracing::warn!(%e, dir = %dir.display(), "unmounting the base device failed; detaching it");
        umount2(dir, MntFlags::MNT_DETACH).map_err(|e| DevError::io("unmount", dir, e.into()))?;
    }
    r
}

/// Prepares a new base filesystem: an empty root (ext4's lost+found removed, so an empty
/// snapshot is an empty directory as on every other driver), mode 0755.
pub fn prepare_base(fs: Fs, dev: &Path, dir: &Path) -> DevResult<()> {
    with_mounted(fs, dev, dir, || {
        let lf = dir.join("lost+found");
        if lf.exists() {
            fs::remove_dir(&lf).ctx("remove", &lf)?;
        }
        Ok(())
    })
}

/// Grows the filesystem on `dev` to fill it.
pub fn grow(fs: Fs, dev: &Path, dir: &Path) -> DevResult<()> {
    match fs {
        Fs::Ext4 => {
            // The base was unmounted cleanly; e2fsck would bring back the lost+found the
            // driver removed, so resize2fs is forced past its fsck check.
            run("resize2fs", &["-f", &dev.to_string_lossy()], dev)
        }
        Fs::Xfs => with_mounted(fs, dev, dir, || {
            run("xfs_growfs", &[&dir.to_string_lossy()], dir)
        }),
    }
}

/// The inodes in use on `dev`, from its superblock (exact for an unmounted filesystem).
pub fn used_inodes(fs: Fs, dev: &Path) -> DevResult<u64> {
    let mut f = fs::File::open(dev).ctx("open", dev)?;
    let mut sb = [0u8; 160];
    let offset = match fs {
        Fs::Ext4 => 1024,
        Fs::Xfs => 0,
    };
    f.seek(SeekFrom::Start(offset)).ctx("seek", dev)?;
    f.read_exact(&mut sb).ctx("read the superblock of", dev)?;
    let le32 = |o: usize| u64::from(u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]));
    let be64 = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sb[o..o + 8]);
        u64::from_be_bytes(b)
    };
    Ok(match fs {
        // s_inodes_count - s_free_inodes_count, less the 10 reserved inodes.
        Fs::Ext4 => le32(0).saturating_sub(le32(16)).saturating_sub(10),
        // sb_icount - sb_ifree.
        Fs::Xfs => be64(128).saturating_sub(be64(136)),
    })
}
