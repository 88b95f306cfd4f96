//! `overlay2.size`: a size limit per writable snapshot through XFS project quotas, as Docker's
//! overlay2 does. Each active snapshot's `diff` directory gets a project id (its snapshot id)
//! that its new files inherit, and a hard block limit for that project.
//!
//! It needs the backing filesystem to be XFS mounted with project quota (`pquota`/`prjquota`);
//! anywhere else the option is refused at start with the reason.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a quota cannot be set up or applied.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The filesystem has no project quota.
    #[error("{0}")]
    Unsupported(String),
    /// A system call failed.
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

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> QuotaError + 'a {
    move |source| QuotaError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

const PRJQUOTA: libc::c_int = 2;
const fn xqm_cmd(x: libc::c_int) -> libc::c_int {
    ((b'X' as libc::c_int) << 8) + x
}
const fn qcmd(cmd: libc::c_int, kind: libc::c_int) -> libc::c_int {
    (cmd << 8) | (kind & 0xff)
}
const Q_XSETQLIM: libc::c_int = xqm_cmd(4);
const Q_XGETQSTAT: libc::c_int = xqm_cmd(5);
const FS_DQUOT_VERSION: i8 = 1;
const FS_PROJ_QUOTA: i8 = 2;
const FS_DQ_BSOFT: u16 = 1 << 2;
const FS_DQ_BHARD: u16 = 1 << 3;
const FS_QUOTA_PDQ_ACCT: u16 = 1 << 4;
const FS_QUOTA_PDQ_ENFD: u16 = 1 << 5;
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

/// `struct fs_disk_quota` from <linux/dqblk_xfs.h>.
#[repr(C)]
#[derive(Default)]
struct FsDiskQuota {
    d_version: i8,
    d_flags: i8,
    d_fieldmask: u16,
    d_id: u32,
    d_blk_hardlimit: u64,
    d_blk_softlimit: u64,
    d_ino_hardlimit: u64,
    d_ino_softlimit: u64,
    d_bcount: u64,
    d_icount: u64,
    d_itimer: i32,
    d_btimer: i32,
    d_iwarns: u16,
    d_bwarns: u16,
    d_itimer_hi: i8,
    d_btimer_hi: i8,
    d_rtbtimer_hi: i8,
    d_padding2: i8,
    d_rtb_hardlimit: u64,
    d_rtb_softlimit: u64,
    d_rtbcount: u64,
    d_rtbtimer: i32,
    d_rtbwarns: u16,
    d_padding3: i16,
    d_padding4: [u8; 8],
}

/// `struct fsxattr` from <linux/fs.h>.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    fsx_xflags: u32,
    fsx_extsize: u32,
    fsx_nextents: u32,
    fsx_projid: u32,
    fsx_cowextsize: u32,
    fsx_pad: [u8; 8],
}

nix::ioctl_read!(fs_ioc_fsgetxattr, b'X', 31, FsXattr);
nix::ioctl_write_ptr!(fs_ioc_fssetxattr, b'X', 32, FsXattr);

/// Project quotas on the filesystem of a plugin root.
#[derive(Debug)]
pub struct Quota {
    /// A block device node for the backing filesystem, which quotactl(2) needs.
    device: CString,
    bytes: u64,
}

impl Quota {
    /// Checks that `root`'s filesystem enforces project quotas and prepares to set limits of
    /// `bytes` per writable snapshot.
    pub fn new(root: &Path, bytes: u64, backing_fs: &str) -> Result<Self, QuotaError> {
        if backing_fs != "xfs" {
            return Err(QuotaError::Unsupported(format!(
                "needs project quota on an xfs backing filesystem mounted with pquota; {} is on {backing_fs}",
                root.display()
            )));
        }
        if bytes < 4096 {
            return Err(QuotaError::Unsupported(
                "a layer size limit must be at least 4K".into(),
            ));
        }
        let dev = fs::metadata(root).map_err(io_err("stat", root))?.dev();
        let node = root.join("backingFsBlockDev");
        if let Ok(m) = fs::symlink_metadata(&node) {
            if !(m.file_type().is_block_device() && m.rdev() == dev) {
                fs::remove_file(&node).map_err(io_err("remove", &node))?;
            }
        }
        if fs::symlink_metadata(&node).is_err() {
            nix::sys::stat::mknod(
                &node,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                dev,
            )
            .map_err(|e| QuotaError::Io {
                op: "mknod",
                path: node.clone(),
                source: e.into(),
            })?;
        }
        let device = CString::new(node.as_os_str().as_bytes())
            .map_err(|_| QuotaError::Unsupported("the root path contains a NUL byte".into()))?;
        // fs_quota_stat: qs_version (s8), then qs_flags (u16) at offset 2; the rest is not read.
        let mut stat = [0u8; 256];
        stat[0] = 1;
        // SAFETY: quotactl with a NUL-terminated device path and a buffer larger than
        // struct fs_quota_stat (80 bytes), which the kernel fills.
        let r = unsafe {
            libc::quotactl(
                qcmd(Q_XGETQSTAT, PRJQUOTA),
                device.as_ptr(),
                0,
                stat.as_mut_ptr().cast(),
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(QuotaError::Unsupported(format!(
                "cannot read the project quota state of {} ({e}); mount it with -o pquota",
                root.display()
            )));
        }
        let flags = u16::from_ne_bytes([stat[2], stat[3]]);
        if flags & FS_QUOTA_PDQ_ACCT == 0 || flags & FS_QUOTA_PDQ_ENFD == 0 {
            return Err(QuotaError::Unsupported(format!(
                "project quota is not enforced on {}; mount it with -o pquota",
                root.display()
            )));
        }
        Ok(Quota { device, bytes })
    }

    /// The limit per writable snapshot, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives `dir` the project id `id` (inherited by what is made in it) and limits it.
    pub fn limit(&self, dir: &Path, id: u64) -> Result<(), QuotaError> {
        let projid = u32::try_from(id).map_err(|_| {
            QuotaError::Unsupported(format!("snapshot id {id} does not fit a project id"))
        })?;
        let f = fs::File::open(dir).map_err(io_err("open", dir))?;
        let mut attr = FsXattr::default();
        // SAFETY: FS_IOC_FSGETXATTR on an open directory fd, filling a correctly sized struct.
        unsafe { fs_ioc_fsgetxattr(f.as_raw_fd(), &mut attr) }.map_err(|e| QuotaError::Io {
            op: "get project id",
            path: dir.into(),
            source: e.into(),
        })?;
        attr.fsx_projid = projid;
        attr.fsx_xflags |= FS_XFLAG_PROJINHERIT;
        // SAFETY: FS_IOC_FSSETXATTR on an open directory fd with a correctly sized struct.
        unsafe { fs_ioc_fssetxattr(f.as_raw_fd(), &attr) }.map_err(|e| QuotaError::Io {
            op: "set project id",
            path: dir.into(),
            source: e.into(),
        })?;
        let blocks = self.bytes.div_ceil(512);
        let mut q = FsDiskQuota {
            d_version: FS_DQUOT_VERSION,
            d_flags: FS_PROJ_QUOTA,
            d_fieldmask: FS_DQ_BSOFT | FS_DQ_BHARD,
            d_id: projid,
            d_blk_hardlimit: blocks,
            d_blk_softlimit: blocks,
            ..Default::default()
        };
        // SAFETY: quotactl with a NUL-terminated device path and a fully initialised
        // struct fs_disk_quota.
        let r = unsafe {
            libc::quotactl(
                qcmd(Q_XSETQLIM, PRJQUOTA),
                self.device.as_ptr(),
                projid as libc::c_int,
                (&mut q as *mut FsDiskQuota).cast(),
            )
        };
        if r != 0 {
            return Err(QuotaError::Io {
                op: "set project quota",
                path: dir.into(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel_headers() {
        assert_eq!(std::mem::size_of::<FsDiskQuota>(), 112);
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(qcmd(Q_XSETQLIM, PRJQUOTA), 0x0058_0402);
    }

    #[test]
    fn refused_off_xfs() {
        let dir = tempfile::tempdir().unwrap();
        let e = Quota::new(dir.path(), 1 << 20, "extfs")
            .unwrap_err()
            .to_string();
        assert!(e.contains("xfs"), "{e}");
    }
}
