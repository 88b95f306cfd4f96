//! The narrow layer between the runtime's logic and the kernel.
//!
//! Everything privileged that the rootfs, namespace and process code does goes through
//! [`Syscall`]: [`LinuxSyscall`] makes the real calls, `RecordingSyscall` (tests only)
//! records them so that the order and arguments of mounts, `pivot_root`, capability changes
//! and so on are unit-tested without root. This is youki's pattern; the trait stays small on
//! purpose, plain file I/O that needs no privilege is done with `std::fs` by the callers.

#[cfg(test)]
mod fake;
mod linux;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[cfg(test)]
pub use fake::{Call, RecordingSyscall};
pub use linux::LinuxSyscall;

/// A failed system call: which call, on which path (if any), and the errno.
#[derive(Debug, thiserror::Error)]
#[error("{op}{} failed: {errno}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
pub struct SyscallError {
    /// The call, e.g. `mount` or `pivot_root`.
    pub op: &'static str,
    /// The path the call acted on, when it has one.
    pub path: Option<PathBuf>,
    /// What the kernel said.
    pub errno: Errno,
}

impl SyscallError {
    /// An error for `op` on `path`.
    pub fn at(op: &'static str, path: &Path, errno: Errno) -> Self {
        Self {
            op,
            path: Some(path.to_path_buf()),
            errno,
        }
    }

    /// An error for `op`, which acts on no path.
    pub fn new(op: &'static str, errno: Errno) -> Self {
        Self {
            op,
            path: None,
            errno,
        }
    }
}

/// Shorthand for results of this module.
pub type SysResult<T = ()> = Result<T, SyscallError>;

/// The five capability sets of a thread, as bit masks (bit N = capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
}

/// The privileged operations the runtime needs, one method per kernel call.
pub trait Syscall {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult;
    /// umount2(2).
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult;
    /// chroot(2).
    fn chroot(&self, path: &Path) -> SysResult;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> SysResult;
    /// mknod(2); `kind` is `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    fn mknod(&self, path: &Path, kind: nix::sys::stat::SFlag, mode: u32, dev: u64) -> SysResult;
    /// lchown(2).
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> SysResult;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> SysResult;
    /// setdomainname(2).
    fn setdomainname(&self, name: &str) -> SysResult;
    /// setns(2) on the namespace file at `path`.
    fn setns(&self, path: &Path, nstype: CloneFlags) -> SysResult;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> SysResult;
    /// Sets the loopback interface up in the caller's network namespace (SIOCSIFFLAGS), as a
    /// new namespace has it down; the kernel then gives it 127.0.0.1 and ::1.
    fn loopback_up(&self) -> SysResult;
    /// setrlimit(2); `resource` is a `RLIMIT_*` number.
    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> SysResult;
    /// setgroups(2).
    fn setgroups(&self, gids: &[u32]) -> SysResult;
    /// setresgid(2) with all three ids equal.
    fn setgid(&self, gid: u32) -> SysResult;
    /// setresuid(2) with all three ids equal.
    fn setuid(&self, uid: u32) -> SysResult;
    /// prctl(PR_SET_KEEPCAPS).
    fn set_keep_caps(&self, keep: bool) -> SysResult;
    /// prctl(PR_CAPBSET_DROP) for one capability.
    fn drop_bounding_cap(&self, cap: u8) -> SysResult;
    /// capset(2) for this thread.
    fn capset(&self, sets: CapSets) -> SysResult;
    /// prctl(PR_CAP_AMBIENT_RAISE) for one capability.
    fn raise_ambient_cap(&self, cap: u8) -> SysResult;
    /// prctl(PR_SET_NO_NEW_PRIVS, 1).
    fn set_no_new_privs(&self) -> SysResult;
}
