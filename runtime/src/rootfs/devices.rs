//! /dev inside the container: the default device nodes, the spec's devices, and the usual
//! symlinks (`/dev/fd`, `/dev/stdin`..., `/dev/ptmx`).

use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mounts::secure_join;
use super::RootfsError;
use crate::syscall::Syscall;

/// A device node to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the container.
    pub path: String,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: SFlag,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every container gets (the OCI spec's list).
pub fn default_devices() -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .iter()
    .map(|(name, major, minor)| DeviceNode {
        path: format!("/dev/{name}"),
        kind: SFlag::S_IFCHR,
        major: *major,
        minor: *minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// A spec device as a node.
pub fn from_spec(d: &LinuxDevice) -> Result<DeviceNode, RootfsError> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(RootfsError::Invalid(format!(
                "device {} has type a, which is not a node type",
                d.path().display()
            )))
        }
    };
    let num = |v: i64, what| {
        u64::try_from(v).map_err(|_| {
            RootfsError::Invalid(format!(
                "device {} has a negative {what}",
                d.path().display()
            ))
        })
    };
    Ok(DeviceNode {
        path: d.path().to_string_lossy().into_owned(),
        kind,
        major: num(d.major(), "major")?,
        minor: num(d.minor(), "minor")?,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Makes the nodes under `rootfs`. With `bind` (inside a user namespace, where mknod is not
/// allowed) the host's node is bind-mounted on an empty file instead, as runc does.
pub fn create_devices(
    sys: &dyn Syscall,
    rootfs: &Path,
    nodes: &[DeviceNode],
    bind: bool,
) -> Result<(), RootfsError> {
    for n in nodes {
        let target = secure_join(rootfs, Path::new(&n.path))?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| RootfsError::Io {
                op: "mkdir",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        if bind {
            if !target.exists() {
                std::fs::File::create(&target).map_err(|source| RootfsError::Io {
                    op: "create",
                    path: target.clone(),
                    source,
                })?;
            }
            sys.mount(
                Some(Path::new(&n.path)),
                &target,
                None,
                MsFlags::MS_BIND,
                None,
            )?;
            continue;
        }
        match std::fs::symlink_metadata(&target) {
            Ok(_) => std::fs::remove_file(&target).map_err(|source| RootfsError::Io {
                op: "remove",
                path: target.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RootfsError::Io {
                    op: "stat",
                    path: target.clone(),
                    source,
                })
            }
        }
        sys.mknod(
            &target,
            n.kind,
            n.mode,
            nix::sys::stat::makedev(n.major, n.minor),
        )?;
        sys.lchown(&target, n.uid, n.gid)?;
    }
    Ok(())
}

/// `/dev/fd`, `/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/dev/core` and `/dev/ptmx`.
pub fn create_symlinks(rootfs: &Path) -> Result<(), RootfsError> {
    let dev = rootfs.join("dev");
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if dev.join("pts").is_dir() {
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        let link = dev.join(name);
        if name == "ptmx" {
            // A ptmx node from the image or the defaults would point at the host's devpts.
            let _ = std::fs::remove_file(&link);
        }
        match std::os::unix::fs::symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(RootfsError::Io {
                    op: "symlink",
                    path: link,
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    #[test]
    fn makes_nodes_or_binds_them() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = RecordingSyscall::default();
        create_devices(&sys, tmp.path(), &default_devices()[..1], false).unwrap();
        assert_eq!(
            sys.calls()[0],
            Call::Mknod {
                path: tmp.path().join("dev/null"),
                kind: SFlag::S_IFCHR,
                mode: 0o666,
                dev: nix::sys::stat::makedev(1, 3)
            }
        );
        let sys = RecordingSyscall::default();
        create_devices(&sys, tmp.path(), &default_devices()[1..2], true).unwrap();
        assert!(
            matches!(&sys.calls()[0], Call::Mount { source: Some(s), .. } if s == Path::new("/dev/zero"))
        );
    }

    #[test]
    fn symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("dev/pts")).unwrap();
        create_symlinks(tmp.path()).unwrap();
        assert_eq!(
            std::fs::read_link(tmp.path().join("dev/ptmx")).unwrap(),
            Path::new("pts/ptmx")
        );
        assert_eq!(
            std::fs::read_link(tmp.path().join("dev/fd")).unwrap(),
            Path::new("/proc/self/fd")
        );
        create_symlinks(tmp.path()).unwrap();
    }
}
