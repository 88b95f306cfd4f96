//! Mounting what a snapshotter returns, as containerd's `mount.All` would, without its limits.
//!
//! A snapshot's mounts are `bind`, `overlay` or a block filesystem (`ext4`, `xfs`, …) with
//! fstab-style options. The engine mounts container roots with [`mount_all`], and the tests
//! mount snapshots with it.
//!
//! Overlay mounts with many layers do not fit mount(2)'s one page of option data. In that case
//! the mounter uses the new mount API (`fsopen`/`fsconfig` with one `lowerdir+` per layer, Linux
//! 6.8+), which has no length limit; on older kernels it rewrites the lower directories
//! relative to their common parent and mounts from a child process whose working directory is
//! that parent, as containerd does. See [`OverlayStrategy`].

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags as MountFlags};
use strata_proto::types::Mount;

/// Linux's limit on mount(2) option data: one page, including the terminating NUL.
pub const MOUNT_DATA_MAX: usize = 4095;

/// A mount or unmount that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The system call failed.
    #[error("mount {fstype} {source_path:?} on {}: {error}{}", target.display(), kernel_log(.log))]
    Mount {
        /// The filesystem type.
        fstype: String,
        /// The mount source.
        source_path: String,
        /// Where it was to be mounted.
        target: PathBuf,
        /// The OS error.
        error: io::Error,
        /// What the kernel said about it (new mount API only).
        log: Vec<String>,
    },
    /// Unmounting failed.
    #[error("unmount {}: {error}", target.display())]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The mount description cannot be mounted as given.
    #[error("invalid mount {fstype} on {}: {reason}", target.display())]
    Invalid {
        /// The filesystem type.
        fstype: String,
        /// Where it was to be mounted.
        target: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn kernel_log(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {})", log.join("; "))
    }
}

/// How an overlay mount is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayStrategy {
    /// mount(2) when the options fit one page, else the new mount API, else relative paths.
    Auto,
    /// mount(2) with the options as given (fails past one page).
    Classic,
    /// `fsopen`/`fsconfig` with `lowerdir+` (Linux 6.8+).
    NewApi,
    /// mount(2) from the lower directories' common parent, with relative lower paths.
    Relative,
}

/// Flags and the rest of the options, from fstab-style options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    flags: MountFlags,
    /// Propagation changes applied after the mount (MS_PRIVATE etc., with MS_REC).
    propagation: MountFlags,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Parsed {
    let mut p = Parsed {
        flags: MountFlags::empty(),
        propagation: MountFlags::empty(),
        data: Vec::new(),
    };
    for o in options {
        let (set, clear, prop) = match o.as_str() {
            "ro" => (
                MountFlags::MS_RDONLY,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "rw" => (
                MountFlags::empty(),
                MountFlags::MS_RDONLY,
                MountFlags::empty(),
            ),
            "bind" => (
                MountFlags::MS_BIND,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "rbind" => (
                MountFlags::MS_BIND | MountFlags::MS_REC,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "nosuid" => (
                MountFlags::MS_NOSUID,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "suid" => (
                MountFlags::empty(),
                MountFlags::MS_NOSUID,
                MountFlags::empty(),
            ),
            "nodev" => (
                MountFlags::MS_NODEV,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "dev" => (
                MountFlags::empty(),
                MountFlags::MS_NODEV,
                MountFlags::empty(),
            ),
            "noexec" => (
                MountFlags::MS_NOEXEC,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "exec" => (
                MountFlags::empty(),
                MountFlags::MS_NOEXEC,
                MountFlags::empty(),
            ),
            "sync" => (
                MountFlags::MS_SYNCHRONOUS,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "async" => (
                MountFlags::empty(),
                MountFlags::MS_SYNCHRONOUS,
                MountFlags::empty(),
            ),
            "dirsync" => (
                MountFlags::MS_DIRSYNC,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "noatime" => (
                MountFlags::MS_NOATIME,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "atime" => (
                MountFlags::empty(),
                MountFlags::MS_NOATIME,
                MountFlags::empty(),
            ),
            "nodiratime" => (
                MountFlags::MS_NODIRATIME,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "diratime" => (
                MountFlags::empty(),
                MountFlags::MS_NODIRATIME,
                MountFlags::empty(),
            ),
            "relatime" => (
                MountFlags::MS_RELATIME,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "norelatime" => (
                MountFlags::empty(),
                MountFlags::MS_RELATIME,
                MountFlags::empty(),
            ),
            "strictatime" => (
                MountFlags::MS_STRICTATIME,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "mand" => (
                MountFlags::MS_MANDLOCK,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "nomand" => (
                MountFlags::empty(),
                MountFlags::MS_MANDLOCK,
                MountFlags::empty(),
            ),
            "remount" => (
                MountFlags::MS_REMOUNT,
                MountFlags::empty(),
                MountFlags::empty(),
            ),
            "private" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_PRIVATE,
            ),
            "rprivate" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_PRIVATE | MountFlags::MS_REC,
            ),
            "shared" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_SHARED,
            ),
            "rshared" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_SHARED | MountFlags::MS_REC,
            ),
            "slave" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_SLAVE,
            ),
            "rslave" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_SLAVE | MountFlags::MS_REC,
            ),
            "unbindable" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_UNBINDABLE,
            ),
            "runbindable" => (
                MountFlags::empty(),
                MountFlags::empty(),
                MountFlags::MS_UNBINDABLE | MountFlags::MS_REC,
            ),
            other => {
                p.data.push(other.to_string());
                continue;
            }
        };
        p.flags.insert(set);
        p.flags.remove(clear);
        p.propagation.insert(prop);
    }
    p
}

/// Mounts every mount in order on `target` (all on the same target, as snapshot mounts are).
/// On failure, the ones already made are unmounted again.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    for (done, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target, OverlayStrategy::Auto) {
            for _ in 0..done {
                if let Err(ue) = unmount(target) {
                    tracing::warn!(%ue, "undoing a partial mount_all failed");
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Mounts one mount on `target`, choosing how overlays are mounted.
pub fn mount_one(m: &Mount, target: &Path, strategy: OverlayStrategy) -> Result<(), MountError> {
    let parsed = parse_options(&m.options);
    let err = |error: io::Error| MountError::Mount {
        fstype: m.r#type.clone(),
        source_path: m.source.clone(),
        target: target.to_path_buf(),
        error,
        log: Vec::new(),
    };
    if m.r#type == "overlay" {
        mount_overlay(m, &parsed, target, strategy)?;
    } else if m.r#type == "bind" || parsed.flags.contains(MountFlags::MS_BIND) {
        let flags = parsed.flags | MountFlags::MS_BIND;
        classic_mount(
            &m.source,
            target,
            "none",
            flags - MountFlags::MS_RDONLY,
            None,
        )
        .map_err(err)?;
        if parsed.flags.contains(MountFlags::MS_RDONLY) {
            // A bind mount ignores MS_RDONLY until it is remounted.
            let ro = MountFlags::MS_BIND
                | MountFlags::MS_REMOUNT
                | MountFlags::MS_RDONLY
                | (flags & MountFlags::MS_REC);
            if let Err(e) = classic_mount("", target, "none", ro, None) {
                let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
                return Err(err(e));
            }
        }
    } else {
        let data = parsed.data.join(",");
        classic_mount(&m.source, target, &m.r#type, parsed.flags, Some(&data)).map_err(err)?;
    }
    if !parsed.propagation.is_empty() {
        if let Err(e) = classic_mount("", target, "none", parsed.propagation, None) {
            let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
            return Err(err(e));
        }
    }
    Ok(())
}

fn classic_mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
) -> io::Result<()> {
    let data = data.filter(|d| !d.is_empty());
    if let Some(d) = data {
        if d.len() > MOUNT_DATA_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mount options are {} bytes, more than one page ({MOUNT_DATA_MAX})",
                    d.len()
                ),
            ));
        }
    }
    let source = (!source.is_empty()).then_some(source);
    nix::mount::mount(source, target, Some(fstype), flags, data).map_err(io::Error::from)
}

fn mount_overlay(
    m: &Mount,
    parsed: &Parsed,
    target: &Path,
    strategy: OverlayStrategy,
) -> Result<(), MountError> {
    let data = parsed.data.join(",");
    let invalid = |reason: String| MountError::Invalid {
        fstype: m.r#type.clone(),
        target: target.into(),
        reason,
    };
    let mount_err = |error: io::Error, log: Vec<String>| MountError::Mount {
        fstype: "overlay".into(),
        source_path: m.source.clone(),
        target: target.into(),
        error,
        log,
    };
    let strategy = match strategy {
        OverlayStrategy::Auto if data.len() <= MOUNT_DATA_MAX => OverlayStrategy::Classic,
        s => s,
    };
    let relative = || {
        relative_overlay(parsed, target, &invalid).and_then(|r| r.map_err(|e| mount_err(e, vec![])))
    };
    match strategy {
        OverlayStrategy::Classic => {
            classic_mount(&m.source, target, "overlay", parsed.flags, Some(&data))
                .map_err(|e| mount_err(e, vec![]))
        }
        OverlayStrategy::NewApi => {
            fs_context_overlay(parsed, target).map_err(|(e, log)| mount_err(e, log))
        }
        OverlayStrategy::Relative => relative(),
        OverlayStrategy::Auto => match fs_context_overlay(parsed, target) {
            Ok(()) => Ok(()),
            // No new mount API (ENOSYS), or a kernel before 6.8 that has no `lowerdir+`.
            Err((e, log))
                if e.raw_os_error() == Some(libc::ENOSYS)
                    || (e.raw_os_error() == Some(libc::EINVAL)
                        && log.iter().any(|l| l.contains("lowerdir+"))) =>
            {
                tracing::debug!(?log, "overlay: falling back to relative lower paths");
                relative()
            }
            Err((e, log)) => Err(mount_err(e, log)),
        },
    }
}

fn lowerdirs(data: &[String]) -> Option<(usize, Vec<&str>)> {
    data.iter()
        .position(|o| o.starts_with("lowerdir="))
        .map(|i| (i, data[i]["lowerdir=".len()..].split(':').collect()))
}

/// The longest common directory of `dirs`, with a trailing slash.
fn common_dir(dirs: &[&str]) -> Option<String> {
    let first = dirs.first()?;
    let mut len = first.len();
    for d in &dirs[1..] {
        len = len.min(
            first
                .bytes()
                .zip(d.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let prefix = &first[..len];
    let cut = prefix.rfind('/')?;
    if cut == 0 {
        return None;
    }
    Some(first[..=cut].to_string())
}

/// Mounts the overlay from a child whose working directory is the lower dirs' common parent.
/// The outer result is a bad description; the inner one the mount itself.
fn relative_overlay(
    parsed: &Parsed,
    target: &Path,
    invalid: &dyn Fn(String) -> MountError,
) -> Result<io::Result<()>, MountError> {
    let (idx, lowers) =
        lowerdirs(&parsed.data).ok_or_else(|| invalid("overlay without lowerdir".into()))?;
    let common = common_dir(&lowers)
        .ok_or_else(|| invalid("lower directories share no parent directory".into()))?;
    let mut data = parsed.data.clone();
    data[idx] = format!(
        "lowerdir={}",
        lowers
            .iter()
            .map(|l| &l[common.len()..])
            .collect::<Vec<_>>()
            .join(":")
    );
    let data = data.join(",");
    if data.len() > MOUNT_DATA_MAX {
        return Err(invalid(format!(
            "overlay options are {} bytes even with relative lower paths, more than one page",
            data.len()
        )));
    }
    let target = if target.is_absolute() {
        target.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(target))
            .map_err(|e| invalid(format!("current directory: {e}")))?
    };
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| invalid("a path contains a NUL byte".into()));
    let (c_dir, c_target, c_data) = (
        cstr(common.as_bytes())?,
        cstr(target.as_os_str().as_bytes())?,
        cstr(data.as_bytes())?,
    );
    let c_type = cstr(b"overlay")?;
    let flags = parsed.flags.bits() as libc::c_ulong;
    // SAFETY: fork in a possibly multi-threaded process: the child only makes the raw system
    // calls chdir, mount and _exit, which are async-signal-safe, on memory prepared before the
    // fork; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Ok(Err(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the forked child; all pointers are to CStrings alive in this address space.
        unsafe {
            if libc::chdir(c_dir.as_ptr()) != 0 {
                libc::_exit(*libc::__errno_location());
            }
            if libc::mount(
                c_type.as_ptr(),
                c_target.as_ptr(),
                c_type.as_ptr(),
                flags,
                c_data.as_ptr().cast(),
            ) != 0
            {
                libc::_exit(*libc::__errno_location());
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Ok(Err(e));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(Ok(()))
    } else if libc::WIFEXITED(status) {
        Ok(Err(io::Error::from_raw_os_error(libc::WEXITSTATUS(status))))
    } else {
        Ok(Err(io::Error::other("the mount helper process was killed")))
    }
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
const MOUNT_ATTR_NOATIME: libc::c_uint = 0x10;
const MOUNT_ATTR_NODIRATIME: libc::c_uint = 0x80;

/// Reads the messages the kernel left on a filesystem context.
fn drain_log(fd: &OwnedFd) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: reading into a stack buffer of the given length from an fd we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(
            String::from_utf8_lossy(&buf[..n as usize])
                .trim()
                .to_string(),
        );
    }
    out
}

fn fsconfig(
    fd: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&OsStr>,
) -> Result<(), (io::Error, Vec<String>)> {
    let bad = |what: &str| {
        (
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} contains a NUL byte"),
            ),
            vec![],
        )
    };
    let key = key
        .map(|k| CString::new(k).map_err(|_| bad(k)))
        .transpose()?;
    let value = value
        .map(|v| CString::new(v.as_bytes()).map_err(|_| bad("a value")))
        .transpose()?;
    // SAFETY: fsconfig on a filesystem context fd we own, with NUL-terminated strings (or null
    // pointers where the command takes none) that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            cmd,
            key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        let mut log = drain_log(fd);
        if let Some(k) = key {
            log.insert(0, format!("while setting {}", k.to_string_lossy()));
        }
        return Err((e, log));
    }
    Ok(())
}

/// Mounts an overlay through a filesystem context: each lower directory is its own
/// `lowerdir+` parameter, so there is no limit on their number or length but the kernel's
/// stack depth.
fn fs_context_overlay(parsed: &Parsed, target: &Path) -> Result<(), (io::Error, Vec<String>)> {
    let last = || (io::Error::last_os_error(), Vec::new());
    // SAFETY: fsopen with a static NUL-terminated name; the returned fd is checked and owned.
    let raw = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if raw < 0 {
        return Err(last());
    }
    // SAFETY: `raw` is a fresh fd returned by fsopen that nothing else owns.
    let fsfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    for opt in &parsed.data {
        match opt.split_once('=') {
            Some(("lowerdir", dirs)) => {
                for d in dirs.split(':') {
                    fsconfig(
                        &fsfd,
                        FSCONFIG_SET_STRING,
                        Some("lowerdir+"),
                        Some(OsStr::new(d)),
                    )?;
                }
            }
            Some((k, v)) => fsconfig(&fsfd, FSCONFIG_SET_STRING, Some(k), Some(OsStr::new(v)))?,
            None => fsconfig(&fsfd, FSCONFIG_SET_FLAG, Some(opt), None)?,
        }
    }
    fsconfig(&fsfd, FSCONFIG_CMD_CREATE, None, None)?;
    let mut attrs = 0;
    for (flag, attr) in [
        (MountFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MountFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MountFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MountFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MountFlags::MS_NOATIME, MOUNT_ATTR_NOATIME),
        (MountFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ] {
        if parsed.flags.contains(flag) {
            attrs |= attr;
        }
    }
    // SAFETY: fsmount on the created context we own; the result is checked and owned.
    let raw = unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err((e, drain_log(&fsfd)));
    }
    // SAFETY: `raw` is a fresh mount fd returned by fsmount that nothing else owns.
    let mfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let c_target = CString::new(target.as_os_str().as_bytes()).map_err(|_| {
        (
            io::Error::new(io::ErrorKind::InvalidInput, "target contains a NUL byte"),
            vec![],
        )
    })?;
    // SAFETY: move_mount of the detached mount fd we own onto a NUL-terminated target path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mfd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(last());
    }
    Ok(())
}

/// Unmounts `target`, retrying for a while if it is busy.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    let mut tries = 0;
    loop {
        match nix::mount::umount2(target, MntFlags::empty()).map_err(io::Error::from) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                return Err(MountError::Unmount {
                    target: target.to_path_buf(),
                    error,
                })
            }
        }
    }
}

/// Unmounts everything stacked on `target` (until it is no longer a mount point).
pub fn unmount_all(target: &Path) -> Result<(), MountError> {
    loop {
        match unmount(target) {
            Ok(()) => continue,
            Err(MountError::Unmount { error, .. })
                if error.raw_os_error() == Some(libc::EINVAL) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let p = parse_options(&[
            "ro".into(),
            "rbind".into(),
            "index=off".into(),
            "rprivate".into(),
            "rw".into(),
        ]);
        assert!(p.flags.contains(MountFlags::MS_BIND | MountFlags::MS_REC));
        assert!(
            !p.flags.contains(MountFlags::MS_RDONLY),
            "a later rw clears ro"
        );
        assert_eq!(p.propagation, MountFlags::MS_PRIVATE | MountFlags::MS_REC);
        assert_eq!(p.data, vec!["index=off".to_string()]);
    }

    #[test]
    fn common_parent_of_lowers() {
        assert_eq!(
            common_dir(&["/r/l/AB", "/r/l/AC"]).as_deref(),
            Some("/r/l/")
        );
        assert_eq!(common_dir(&["/r/l/AB"]).as_deref(), Some("/r/l/"));
        assert_eq!(common_dir(&["/a/x", "/b/y"]), None);
    }
}
