//! The container's root filesystem, set up by the container's first process in its new
//! mount namespace: propagation, the spec's mounts in order, /dev, `pivot_root`, then the
//! masked and read-only paths and a read-only root.
//!
//! `pivot_root` cannot work when the current root is the initial ramfs (an initramfs that was
//! never switched away from, as in some VMs and minimal hosts): the kernel refuses to pivot
//! away from rootfs. There, and when asked (`no_pivot`), the fallback is runc's: move the
//! rootfs mount over `/` with `MS_MOVE` and `chroot` into it. That is weaker (the old root
//! stays reachable for a process that can escape a chroot, so it is only used when needed).

pub mod devices;
pub mod mounts;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::cgroups::Cgroup;
use crate::syscall::{Syscall, SyscallError};

/// What went wrong while building the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A system call failed.
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    /// File work failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Too many symlinks.
    #[error("too many levels of symbolic links in {}", .0.display())]
    SymlinkLoop(PathBuf),
    /// Something in the spec cannot be done.
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, RootfsError>;

/// Everything the rootfs setup needs.
#[derive(Debug, Clone)]
pub struct RootfsConfig<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// The absolute rootfs.
    pub rootfs: &'a Path,
    /// The bundle, for relative bind sources.
    pub bundle: &'a Path,
    /// The container's cgroup, for `cgroup` mounts.
    pub cgroup: Option<&'a Cgroup>,
    /// Whether a new cgroup namespace was made.
    pub new_cgroupns: bool,
    /// Whether the container is in a new user namespace (devices are bind-mounted then).
    pub in_userns: bool,
}

/// Mount propagation for `/` before anything is mounted: the spec's `rootfsPropagation` if it
/// is a private-ish mode, else `rslave` (runc's default), so nothing leaks back to the host.
pub fn root_propagation(spec: &Spec) -> Result<MsFlags> {
    let p = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone());
    match p.as_deref() {
        None | Some("") => Ok(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        Some(name) => {
            let f = mounts::propagation_flags(name).ok_or_else(|| {
                RootfsError::Invalid(format!("unknown rootfsPropagation {name:?}"))
            })?;
            // Shared propagation is set on the new root after the mounts, see `finish`.
            if f.contains(MsFlags::MS_SHARED) {
                Ok(MsFlags::MS_PRIVATE | MsFlags::MS_REC)
            } else {
                Ok(f | MsFlags::MS_REC)
            }
        }
    }
}

/// Mounts everything under the rootfs (before `pivot_root`).
pub fn prepare(sys: &dyn Syscall, cfg: &RootfsConfig) -> Result<()> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        root_propagation(cfg.spec)?,
        None,
    )?;
    // The rootfs must be a mount point for pivot_root, and a private one.
    sys.mount(
        Some(cfg.rootfs),
        cfg.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let mut dev_is_bound = false;
    for m in cfg.spec.mounts().iter().flatten() {
        mounts::mount_entry(sys, cfg.rootfs, cfg.bundle, m, cfg.cgroup, cfg.new_cgroupns)?;
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("bind") {
            dev_is_bound = true;
        }
    }
    if !dev_is_bound {
        let mut nodes = devices::default_devices();
        for d in cfg
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default()
        {
            let node = devices::from_spec(&d)?;
            nodes.retain(|n| n.path != node.path);
            nodes.push(node);
        }
        devices::create_devices(sys, cfg.rootfs, &nodes, cfg.in_userns)?;
        devices::create_symlinks(cfg.rootfs)?;
    }
    Ok(())
}

/// Whether `/` is the initial ramfs (where pivot_root is refused).
fn root_is_ramfs() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    nix::sys::statfs::statfs("/")
        .map(|s| s.filesystem_type().0 == RAMFS_MAGIC)
        .unwrap_or(false)
}

/// Makes the rootfs the new `/`: `pivot_root(".", ".")` then unmounting the old root (runc's
/// trick, which needs no directory for the old root); or the documented fallback.
pub fn pivot(sys: &dyn Syscall, rootfs: &Path, no_pivot: bool) -> Result<()> {
    sys.chdir(rootfs)?;
    if !no_pivot {
        match sys.pivot_root(Path::new("."), Path::new(".")) {
            Ok(()) => {
                // The old root is stacked on top of the new one: make sure nothing propagates
                // to the host, then lazily detach it.
                sys.mount(
                    None,
                    Path::new("."),
                    None,
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    None,
                )?;
                sys.umount2(Path::new("."), MntFlags::MNT_DETACH)?;
                sys.chdir(Path::new("/"))?;
                return Ok(());
            }
            Err(e) if e.errno == Errno::EINVAL && root_is_ramfs() => {
                tracing::info!(
                    "root is an initramfs, using MS_MOVE and chroot instead of pivot_root"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    sys.mount(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
    sys.chroot(Path::new("."))?;
    sys.chdir(Path::new("/"))?;
    Ok(())
}

/// After the pivot: masked paths, read-only paths, a read-only root and shared propagation.
pub fn finish(sys: &dyn Syscall, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
    {
        mask_path(sys, Path::new(&p))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        readonly_path(sys, Path::new(&p))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().clone()) {
        if let Some(f) = mounts::propagation_flags(&p).filter(|f| f.contains(MsFlags::MS_SHARED)) {
            sys.mount(None, Path::new("/"), None, f, None)?;
        }
    }
    Ok(())
}

/// Hides a path: a read-only empty tmpfs over a directory, `/dev/null` over anything else.
/// A path that does not exist needs no hiding.
pub fn mask_path(sys: &dyn Syscall, path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RootfsError::Io {
                op: "stat masked path",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if meta.is_dir() {
        sys.mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k,mode=000"),
        )?;
    } else {
        sys.mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    Ok(())
}

/// The mount flags a path already has (nosuid, nodev...), to keep across a bind remount
/// (runc does the same: a remount that dropped them would fail or loosen the mount).
fn existing_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (from, to) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(from) {
            out |= to;
        }
    }
    out
}

/// Makes a path read-only with a bind mount of itself remounted read-only, keeping the flags
/// it had.
pub fn readonly_path(sys: &dyn Syscall, path: &Path) -> Result<()> {
    if let Err(e) = sys.mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    ) {
        if e.errno == Errno::ENOENT {
            return Ok(());
        }
        return Err(e.into());
    }
    let keep = existing_flags(path);
    sys.mount(
        None,
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    #[test]
    fn pivot_uses_the_dot_trick() {
        let sys = RecordingSyscall::default();
        pivot(&sys, Path::new("/r"), false).unwrap();
        let calls = sys.calls();
        assert_eq!(calls[0], Call::Chdir("/r".into()));
        assert_eq!(
            calls[1],
            Call::PivotRoot {
                new_root: ".".into(),
                put_old: ".".into()
            }
        );
        assert!(matches!(calls[3], Call::Umount { .. }));
    }

    #[test]
    fn no_pivot_moves_and_chroots() {
        let sys = RecordingSyscall::default();
        pivot(&sys, Path::new("/r"), true).unwrap();
        let calls = sys.calls();
        assert!(matches!(&calls[1], Call::Mount { flags, .. } if *flags == MsFlags::MS_MOVE));
        assert_eq!(calls[2], Call::Chroot(".".into()));
    }

    #[test]
    fn pivot_failure_off_ramfs_is_an_error() {
        let sys = RecordingSyscall::failing("pivot_root");
        // The test host's root is not a ramfs, so EINVAL is reported, not papered over.
        assert!(pivot(&sys, Path::new("/r"), false).is_err());
    }

    #[test]
    fn masking_dirs_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        let sys = RecordingSyscall::default();
        mask_path(&sys, tmp.path()).unwrap();
        mask_path(&sys, &file).unwrap();
        mask_path(&sys, &tmp.path().join("missing")).unwrap();
        let calls = sys.calls();
        assert_eq!(calls.len(), 2);
        assert!(matches!(&calls[0], Call::Mount { fstype: Some(t), .. } if t == "tmpfs"));
        assert!(
            matches!(&calls[1], Call::Mount { source: Some(s), .. } if s == Path::new("/dev/null"))
        );
    }

    #[test]
    fn default_propagation_is_rslave() {
        let spec = Spec::default();
        assert_eq!(
            root_propagation(&spec).unwrap(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
    }
}
