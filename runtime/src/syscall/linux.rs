//! The real [`Syscall`] implementation: thin wrappers over nix and libc.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::{CapSets, SysResult, Syscall, SyscallError};

/// Makes the real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn prctl(
    op: &'static str,
    option: libc::c_int,
    arg2: libc::c_ulong,
    arg3: libc::c_ulong,
) -> SysResult {
    // SAFETY: prctl with integer arguments only; the options used here read no memory.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc < 0 {
        Err(SyscallError::new(op, Errno::last()))
    } else {
        Ok(())
    }
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        nix::mount::mount(source, target, fstype, flags, data)
            .map_err(|e| SyscallError::at("mount", target, e))
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult {
        nix::mount::umount2(target, flags).map_err(|e| SyscallError::at("umount2", target, e))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult {
        nix::unistd::pivot_root(new_root, put_old)
            .map_err(|e| SyscallError::at("pivot_root", new_root, e))
    }

    fn chroot(&self, path: &Path) -> SysResult {
        nix::unistd::chroot(path).map_err(|e| SyscallError::at("chroot", path, e))
    }

    fn chdir(&self, path: &Path) -> SysResult {
        nix::unistd::chdir(path).map_err(|e| SyscallError::at("chdir", path, e))
    }

    fn mknod(&self, path: &Path, kind: SFlag, mode: u32, dev: u64) -> SysResult {
        nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(mode), dev)
            .map_err(|e| SyscallError::at("mknod", path, e))
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> SysResult {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| SyscallError::at("lchown", path, e))
    }

    fn sethostname(&self, name: &str) -> SysResult {
        nix::unistd::sethostname(name).map_err(|e| SyscallError::new("sethostname", e))
    }

    fn setdomainname(&self, name: &str) -> SysResult {
        // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        if rc < 0 {
            Err(SyscallError::new("setdomainname", Errno::last()))
        } else {
            Ok(())
        }
    }

    fn setns(&self, path: &Path, nstype: CloneFlags) -> SysResult {
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| SyscallError::at("open namespace", path, e))?;
        nix::sched::setns(fd.as_fd(), nstype).map_err(|e| SyscallError::at("setns", path, e))
    }

    fn unshare(&self, flags: CloneFlags) -> SysResult {
        nix::sched::unshare(flags).map_err(|e| SyscallError::new("unshare", e))
    }

    fn loopback_up(&self) -> SysResult {
        use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
        let sock = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| SyscallError::new("socket", e))?;
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        // SAFETY: a valid socket and a valid, writable ifreq naming the interface.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
            return Err(SyscallError::new("SIOCGIFFLAGS lo", Errno::last()));
        }
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: a valid socket and a valid ifreq with the name and the new flags.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
            return Err(SyscallError::new("SIOCSIFFLAGS lo", Errno::last()));
        }
        Ok(())
    }

    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> SysResult {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `lim` is a valid rlimit that lives across the call; the kernel only reads it.
        let rc = unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &lim) };
        if rc < 0 {
            Err(SyscallError::new("setrlimit", Errno::last()))
        } else {
            Ok(())
        }
    }

    fn setgroups(&self, gids: &[u32]) -> SysResult {
        // SAFETY: the pointer and length describe `gids`, which outlives the call.
        let rc = unsafe { libc::setgroups(gids.len(), gids.as_ptr()) };
        if rc < 0 {
            Err(SyscallError::new("setgroups", Errno::last()))
        } else {
            Ok(())
        }
    }

    fn setgid(&self, gid: u32) -> SysResult {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(|e| SyscallError::new("setresgid", e))
    }

    fn setuid(&self, uid: u32) -> SysResult {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(|e| SyscallError::new("setresuid", e))
    }

    fn set_keep_caps(&self, keep: bool) -> SysResult {
        prctl(
            "prctl(PR_SET_KEEPCAPS)",
            libc::PR_SET_KEEPCAPS,
            keep.into(),
            0,
        )
    }

    fn drop_bounding_cap(&self, cap: u8) -> SysResult {
        prctl(
            "prctl(PR_CAPBSET_DROP)",
            libc::PR_CAPBSET_DROP,
            cap.into(),
            0,
        )
    }

    fn capset(&self, sets: CapSets) -> SysResult {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let mut header = Header {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let split = |v: u64| (v as u32, (v >> 32) as u32);
        let (e0, e1) = split(sets.effective);
        let (p0, p1) = split(sets.permitted);
        let (i0, i1) = split(sets.inheritable);
        let data = [
            Data {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            Data {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: header and data are the v3 capset structures (one header, two data words),
        // both live across the call and the kernel only reads them (and writes header.version
        // on a version mismatch, which `header` is mutable for).
        let rc =
            unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
        if rc < 0 {
            Err(SyscallError::new("capset", Errno::last()))
        } else {
            Ok(())
        }
    }

    fn raise_ambient_cap(&self, cap: u8) -> SysResult {
        prctl(
            "prctl(PR_CAP_AMBIENT_RAISE)",
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap.into(),
        )
    }

    fn set_no_new_privs(&self) -> SysResult {
        prctl(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::PR_SET_NO_NEW_PRIVS,
            1,
            0,
        )
    }
}
