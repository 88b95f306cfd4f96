//! A recording [`Syscall`] for unit tests: it remembers every call and can be told to fail one.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::SFlag;

use super::{CapSets, SysResult, Syscall, SyscallError};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount {
        target: PathBuf,
        flags: MntFlags,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    Chroot(PathBuf),
    Chdir(PathBuf),
    Mknod {
        path: PathBuf,
        kind: SFlag,
        mode: u32,
        dev: u64,
    },
    Lchown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    Sethostname(String),
    Setdomainname(String),
    Setns {
        path: PathBuf,
        nstype: CloneFlags,
    },
    Unshare(CloneFlags),
    LoopbackUp,
    Setrlimit {
        resource: i32,
        soft: u64,
        hard: u64,
    },
    Setgroups(Vec<u32>),
    Setgid(u32),
    Setuid(u32),
    KeepCaps(bool),
    DropBounding(u8),
    Capset(CapSets),
    RaiseAmbient(u8),
    NoNewPrivs,
}

/// Records calls; `fail_op` makes the first call whose op name matches fail with `EPERM`.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: RefCell<Vec<Call>>,
    fail_op: Option<&'static str>,
}

impl RecordingSyscall {
    /// A fake that fails every call named `op` (e.g. `"pivot_root"`) with `EINVAL`.
    pub fn failing(op: &'static str) -> Self {
        Self {
            calls: RefCell::default(),
            fail_op: Some(op),
        }
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, op: &'static str, call: Call) -> SysResult {
        if self.fail_op == Some(op) {
            return Err(SyscallError::new(op, Errno::EINVAL));
        }
        self.calls.borrow_mut().push(call);
        Ok(())
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        self.record(
            "mount",
            Call::Mount {
                source: source.map(Path::to_path_buf),
                target: target.to_path_buf(),
                fstype: fstype.map(str::to_string),
                flags,
                data: data.map(str::to_string),
            },
        )
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult {
        self.record(
            "umount2",
            Call::Umount {
                target: target.to_path_buf(),
                flags,
            },
        )
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult {
        self.record(
            "pivot_root",
            Call::PivotRoot {
                new_root: new_root.to_path_buf(),
                put_old: put_old.to_path_buf(),
            },
        )
    }
    fn chroot(&self, path: &Path) -> SysResult {
        self.record("chroot", Call::Chroot(path.to_path_buf()))
    }
    fn chdir(&self, path: &Path) -> SysResult {
        self.record("chdir", Call::Chdir(path.to_path_buf()))
    }
    fn mknod(&self, path: &Path, kind: SFlag, mode: u32, dev: u64) -> SysResult {
        self.record(
            "mknod",
            Call::Mknod {
                path: path.to_path_buf(),
                kind,
                mode,
                dev,
            },
        )
    }
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> SysResult {
        self.record(
            "lchown",
            Call::Lchown {
                path: path.to_path_buf(),
                uid,
                gid,
            },
        )
    }
    fn sethostname(&self, name: &str) -> SysResult {
        self.record("sethostname", Call::Sethostname(name.to_string()))
    }
    fn setdomainname(&self, name: &str) -> SysResult {
        self.record("setdomainname", Call::Setdomainname(name.to_string()))
    }
    fn setns(&self, path: &Path, nstype: CloneFlags) -> SysResult {
        self.record(
            "setns",
            Call::Setns {
                path: path.to_path_buf(),
                nstype,
            },
        )
    }
    fn unshare(&self, flags: CloneFlags) -> SysResult {
        self.record("unshare", Call::Unshare(flags))
    }
    fn loopback_up(&self) -> SysResult {
        self.record("loopback_up", Call::LoopbackUp)
    }
    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> SysResult {
        self.record(
            "setrlimit",
            Call::Setrlimit {
                resource,
                soft,
                hard,
            },
        )
    }
    fn setgroups(&self, gids: &[u32]) -> SysResult {
        self.record("setgroups", Call::Setgroups(gids.to_vec()))
    }
    fn setgid(&self, gid: u32) -> SysResult {
        self.record("setresgid", Call::Setgid(gid))
    }
    fn setuid(&self, uid: u32) -> SysResult {
        self.record("setresuid", Call::Setuid(uid))
    }
    fn set_keep_caps(&self, keep: bool) -> SysResult {
        self.record("keepcaps", Call::KeepCaps(keep))
    }
    fn drop_bounding_cap(&self, cap: u8) -> SysResult {
        self.record("capbset_drop", Call::DropBounding(cap))
    }
    fn capset(&self, sets: CapSets) -> SysResult {
        self.record("capset", Call::Capset(sets))
    }
    fn raise_ambient_cap(&self, cap: u8) -> SysResult {
        self.record("ambient", Call::RaiseAmbient(cap))
    }
    fn set_no_new_privs(&self) -> SysResult {
        self.record("no_new_privs", Call::NoNewPrivs)
    }
}
