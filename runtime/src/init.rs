//! The container side of create and exec: the code that runs in the forked children.
//!
//! Two stages, like runc's nsexec: stage 1 (forked from the runtime) joins the cgroup and the
//! namespaces to join, unshares the user namespace (the runtime writes its id maps) and then
//! the others, and clones stage 2 with `CLONE_PARENT`, so that stage 2 is the runtime's child
//! (the runtime can wait for it) and, in a new pid namespace, its pid 1. Stage 2 builds the
//! rootfs, sets up the process and, for create, blocks on the exec fifo until `start`.
//! Errors are sent back over the sync channel as text, and the child exits.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cgroups::{Cgroup, CgroupError};
use crate::channel::{Channel, ChannelError, Msg};
use crate::hooks::HookError;
use crate::namespaces::Namespaces;
use crate::process::ProcessError;
use crate::rootfs::{RootfsConfig, RootfsError};
use crate::seccomp::SeccompError;
use crate::syscall::{Syscall, SyscallError};
use crate::tty::TtyError;

/// What failed inside the container's setup.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Tty(#[from] TtyError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op}: {errno}")]
    Sys {
        op: &'static str,
        errno: nix::errno::Errno,
    },
}

/// Whether the children build a new container or join a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    /// `create`: rootfs, hostname, sysctls, exec fifo.
    Create,
    /// `exec`: only the process.
    Exec,
}

/// Everything the children need; they get it by the copy fork makes.
#[derive(Debug)]
pub struct InitConfig<'a> {
    pub kind: InitKind,
    pub id: &'a str,
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub namespaces: &'a Namespaces,
    pub cgroup: Option<&'a Cgroup>,
    /// The console socket, when the process gets a terminal.
    pub console: Option<RawFd>,
    /// An `O_PATH` descriptor of the exec fifo (create only).
    pub fifo: Option<RawFd>,
    /// The runtime's end, which the children close.
    pub parent_end: RawFd,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Descriptors 3..3+N stay open in the process (`LISTEN_FDS` style).
    pub preserve_fds: i32,
    /// Descriptors to become the process's stdin, stdout and stderr (else inherited).
    pub stdio: Option<[RawFd; 3]>,
    /// Leave the unified hierarchy of a hybrid host to the caller (see
    /// [`crate::CreateOptions::defer_hybrid_unified`]).
    pub defer_unified: bool,
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process without running the parent's atexit handlers or
    // destructors, which belong to the runtime, not to this forked copy.
    unsafe { libc::_exit(code) }
}

/// Stage 1; never returns.
pub fn stage1(sys: &dyn Syscall, cfg: &InitConfig, ch: &Channel) -> ! {
    // SAFETY: closing our copy of the runtime's end of the socket pair; nothing in this
    // process uses that descriptor (its owner lives in the runtime process).
    unsafe { libc::close(cfg.parent_end) };
    match stage1_inner(sys, cfg, ch) {
        Ok(()) => exit_now(0),
        Err(e) => {
            let _ = ch.send(&Msg::Error {
                message: e.to_string(),
            });
            exit_now(1)
        }
    }
}

fn write_proc(path: &str, value: &str) -> Result<(), InitError> {
    std::fs::write(path, value).map_err(|source| InitError::Io {
        op: "write",
        path: path.into(),
        source,
    })
}

fn stage1_inner(sys: &dyn Syscall, cfg: &InitConfig, ch: &Channel) -> Result<(), InitError> {
    reset_signals()?;
    if let Some(stdio) = cfg.stdio {
        set_stdio(stdio)?;
    }
    if let Some(cg) = cfg.cgroup {
        cg.add_self(!cfg.defer_unified)?;
    }
    if let Some(adj) = cfg.process.oom_score_adj() {
        write_proc("/proc/self/oom_score_adj", &adj.to_string())?;
    }
    cfg.namespaces.join_all(sys)?;
    let joined_user = cfg
        .namespaces
        .join
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::User);
    if cfg.namespaces.creates(LinuxNamespaceType::User) {
        sys.unshare(CloneFlags::CLONE_NEWUSER)?;
        ch.send(&Msg::MapIds {
            pid: nix::unistd::getpid().as_raw(),
        })?;
        ch.expect("MapsDone", |m| *m == Msg::MapsDone)?;
    }
    if joined_user || cfg.namespaces.creates(LinuxNamespaceType::User) {
        sys.setgid(0)?;
        sys.setuid(0)?;
    }
    let flags = cfg.namespaces.unshare_flags();
    if !flags.is_empty() {
        sys.unshare(flags)?;
    }
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        // As runc and crun do: a container with a network namespace of its own has `lo`.
        sys.loopback_up()?;
    }
    // SAFETY: a raw clone with no new stack behaves like fork: the child runs on a copy of
    // this stack. This process is single-threaded (a fresh fork), so no lock held by another
    // thread is copied. CLONE_PARENT makes the child the runtime's child, not ours.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        p if p < 0 => Err(InitError::Sys {
            op: "clone",
            errno: nix::errno::Errno::last(),
        }),
        0 => stage2(sys, cfg, ch),
        p => {
            ch.send(&Msg::Pid { pid: p as i32 })?;
            Ok(())
        }
    }
}

fn reset_signals() -> Result<(), InitError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL replaces no handler this code relies on.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
    SigSet::empty()
        .thread_set_mask()
        .map_err(|errno| InitError::Sys {
            op: "sigprocmask",
            errno,
        })
}

/// Stage 2: the container's process; never returns.
fn stage2(sys: &dyn Syscall, cfg: &InitConfig, ch: &Channel) -> ! {
    match stage2_inner(sys, cfg, ch) {
        Ok(never) => match never {},
        Err(e) => {
            // After `Ready` nobody listens any more: then the process's stderr is the only place.
            if ch
                .send(&Msg::Error {
                    message: e.to_string(),
                })
                .is_err()
            {
                let _ = writeln!(std::io::stderr(), "strata-runtime init: {e}");
            }
            exit_now(1)
        }
    }
}

fn stage2_inner(
    sys: &dyn Syscall,
    cfg: &InitConfig,
    ch: &Channel,
) -> Result<Infallible, InitError> {
    ch.expect("Go", |m| *m == Msg::Go)?;
    let create = cfg.kind == InitKind::Create;
    // Device nodes and mount points get exactly the modes asked for; the process's own umask
    // is set at the end.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let terminal = cfg.process.terminal() == Some(true);
    if create || terminal {
        nix::unistd::setsid().map_err(|errno| InitError::Sys {
            op: "setsid",
            errno,
        })?;
    }
    let new_mnt = cfg.namespaces.creates(LinuxNamespaceType::Mount);
    if create && new_mnt {
        let rcfg = RootfsConfig {
            spec: cfg.spec,
            rootfs: cfg.rootfs,
            bundle: cfg.bundle,
            cgroup: cfg.cgroup,
            new_cgroupns: cfg.namespaces.creates(LinuxNamespaceType::Cgroup),
            in_userns: cfg.namespaces.has(LinuxNamespaceType::User),
        };
        crate::rootfs::prepare(sys, &rcfg)?;
    }
    if create {
        ch.send(&Msg::RunHooks)?;
        let state = match ch.recv()? {
            Msg::HooksDone { state } => state,
            got => {
                return Err(ChannelError::Unexpected {
                    expected: "HooksDone",
                    got,
                }
                .into())
            }
        };
        let hooks = cfg.spec.hooks().as_ref();
        crate::hooks::run_hooks(
            "createContainer",
            hooks.and_then(|h| h.create_container().as_ref()),
            &state,
        )?;
        if new_mnt {
            crate::rootfs::pivot(sys, cfg.rootfs, cfg.no_pivot)?;
        }
        if let Some(h) = cfg.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            sys.sethostname(h)?;
        }
        if let Some(d) = cfg.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            sys.setdomainname(d)?;
        }
        let mut sysctls: Vec<_> = cfg
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.sysctl().clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        sysctls.sort();
        for (k, v) in sysctls {
            write_proc(&format!("/proc/sys/{}", k.replace('.', "/")), &v)?;
        }
        if new_mnt {
            crate::rootfs::finish(sys, cfg.spec)?;
        }
    }
    if terminal {
        let sock = cfg.console.ok_or_else(|| InitError::Sys {
            op: "terminal without a console socket",
            errno: nix::errno::Errno::EINVAL,
        })?;
        let size = cfg
            .process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::tty::setup_console(sock, size)?;
        // SAFETY: the console socket's descriptor is only used above; the runtime owns the
        // original, this is the child's copy.
        unsafe { libc::close(sock) };
    }
    crate::process::set_rlimits(sys, cfg.process)?;
    sys.chdir(cfg.process.cwd())?;
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    let env = crate::process::effective_env(cfg.process, passwd.as_deref());
    let args = cfg.process.args().clone().unwrap_or_default();
    let exe = crate::process::find_executable(&args[0], &env, cfg.process.cwd())?;
    let c_exe = CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|_| ProcessError::Nul(exe.display().to_string()))?;
    let c_args = crate::process::c_strings(&args)?;
    let c_env = crate::process::c_strings(&env)?;
    let seccomp = match cfg.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::build(s)?),
        None => None,
    };
    let nnp = cfg.process.no_new_privileges() == Some(true);
    if let (Some(f), false) = (&seccomp, nnp) {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it.
        crate::seccomp::load(f)?;
    }
    let init = crate::tini::wanted(cfg.spec);
    let held_mask = if init {
        crate::tini::name(&args);
        let held = crate::tini::hold_signals();
        Some(held.map_err(|errno| InitError::Sys {
            op: "sigprocmask",
            errno,
        })?)
    } else {
        None
    };
    // A user namespace made here has setgroups allowed (the runtime writes the maps as root).
    crate::process::set_identity(
        sys,
        cfg.process,
        crate::process::capabilities::last_cap(),
        true,
    )?;
    let umask = cfg.process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    ch.send(&Msg::Ready)?;
    if let Some(fifo) = cfg.fifo {
        wait_for_start(fifo)?;
        let state =
            serde_json::json!({"ociVersion": cfg.spec.version(), "id": cfg.id, "status": "running",
            "pid": nix::unistd::getpid().as_raw(), "bundle": cfg.bundle})
            .to_string();
        let hooks = cfg.spec.hooks().as_ref();
        crate::hooks::run_hooks(
            "startContainer",
            hooks.and_then(|h| h.start_container().as_ref()),
            &state,
        )?;
    }
    if let (Some(f), true) = (&seccomp, nnp) {
        crate::seccomp::load(f)?;
    }
    close_on_exec_from(3 + cfg.preserve_fds)?;
    reset_sigpipe();
    if let Some(mask) = &held_mask {
        // Stays here as the container's pid 1 in the parent; the child goes on to exec.
        crate::tini::fork_process(mask).map_err(|errno| InitError::Sys { op: "fork", errno })?;
    }
    let err = nix::unistd::execve(&c_exe, &c_args, &c_env).unwrap_err();
    Err(InitError::Sys {
        op: "execve",
        errno: err,
    })
}

/// Makes `fds` the standard descriptors. They are first duplicated above 2, so that a source
/// that is itself 0, 1 or 2 is not overwritten before it is used.
fn set_stdio(fds: [RawFd; 3]) -> Result<(), InitError> {
    let mut copies = [0; 3];
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor number the caller vouched for; it
        // touches no memory.
        let c = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
        if c < 0 {
            return Err(InitError::Sys {
                op: "dup stdio",
                errno: nix::errno::Errno::last(),
            });
        }
        copies[i] = c;
    }
    for (target, c) in copies.iter().enumerate() {
        // SAFETY: dup2 onto the standard descriptors, which this forked process owns; the
        // copies are closed right after.
        let rc = unsafe { libc::dup2(*c, target as RawFd) };
        // SAFETY: closing the temporary copy made above, owned by nobody else.
        unsafe { libc::close(*c) };
        if rc < 0 {
            return Err(InitError::Sys {
                op: "dup2 stdio",
                errno: nix::errno::Errno::last(),
            });
        }
    }
    Ok(())
}

/// Opens the exec fifo for writing (blocks until `start` opens it for reading) and writes one
/// byte. Reopened through /proc/self/fd, which works after pivot_root and a uid change.
fn wait_for_start(fifo: RawFd) -> Result<(), InitError> {
    let path = format!("/proc/self/fd/{fifo}");
    let fd = nix::fcntl::open(
        Path::new(&path),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| InitError::Sys {
        op: "open exec fifo",
        errno,
    })?;
    nix::unistd::write(&fd, b"0").map_err(|errno| InitError::Sys {
        op: "write exec fifo",
        errno,
    })?;
    // SAFETY: the O_PATH fifo descriptor is the child's copy and is not used again.
    unsafe { libc::close(fifo) };
    Ok(())
}

fn reset_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: restoring the default SIGPIPE disposition (Rust's runtime ignores it) right
    // before execve; no handler of ours is replaced.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Marks every descriptor from `first` up close-on-exec.
fn close_on_exec_from(first: i32) -> Result<(), InitError> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|source| InitError::Io {
        op: "read",
        path: "/proc/self/fd".into(),
        source,
    })?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd >= first) {
        // SAFETY: F_SETFD on a descriptor number only changes its flag; a number that was the
        // read_dir handle and is closed by now just fails with EBADF, which is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}
