//! Forking the container's processes and the runtime's half of the sync protocol.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::LinuxIdMapping;

use super::{ContainerError, Result};
use crate::channel::{Channel, ChannelError, Msg};
use crate::init::InitConfig;
use crate::syscall::LinuxSyscall;

/// Forks stage 1 and answers the children until the container process is ready.
/// `hooks` runs the runtime-side hooks when the children ask (create only) and returns the
/// state document; `init_pid` receives the container process's pid as soon as it is known, so
/// that the caller can clean it up on failure.
pub(crate) fn run_init(
    cfg: &InitConfig,
    parent: Channel,
    child: Channel,
    maps: (&[LinuxIdMapping], &[LinuxIdMapping]),
    hooks: &mut dyn FnMut(i32) -> Result<String>,
    init_pid: &mut Option<i32>,
) -> Result<()> {
    // SAFETY: the child only runs `stage1`, which never returns into the caller's code: it
    // sets up namespaces, execs or `_exit`s. glibc's fork resets the allocator's locks in the
    // child, so allocating there is sound even when the runtime is multi-threaded; the library
    // documents that callers must not hold other locks the child would need (it takes none of
    // the caller's).
    let stage1 = match unsafe { fork() } {
        Ok(ForkResult::Child) => crate::init::stage1(&LinuxSyscall, cfg, &child),
        Ok(ForkResult::Parent { child }) => child,
        Err(errno) => return Err(ContainerError::Sys { op: "fork", errno }),
    };
    drop(child);
    let mut stage1_done = false;
    let result = (|| -> Result<()> {
        loop {
            match parent.recv() {
                Ok(Msg::MapIds { pid }) => {
                    crate::namespaces::write_id_maps(pid, maps.0, maps.1)?;
                    parent.send(&Msg::MapsDone)?;
                }
                Ok(Msg::Pid { pid }) => {
                    *init_pid = Some(pid);
                    let _ = waitpid(stage1, Some(WaitPidFlag::__WALL));
                    stage1_done = true;
                    parent.send(&Msg::Go)?;
                }
                Ok(Msg::RunHooks) => {
                    let pid = init_pid.ok_or(ContainerError::Init(
                        "hooks asked for before the pid was known".into(),
                    ))?;
                    let state = hooks(pid)?;
                    parent.send(&Msg::HooksDone { state })?;
                }
                Ok(Msg::Ready) => return Ok(()),
                Ok(Msg::Error { message }) => return Err(ContainerError::Init(message)),
                Ok(other) => {
                    return Err(ChannelError::Unexpected {
                        expected: "a child message",
                        got: other,
                    }
                    .into())
                }
                Err(ChannelError::Closed) => {
                    return Err(ContainerError::Init(
                        "the container's init process exited before it was ready".into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
    })();
    if !stage1_done {
        if result.is_err() {
            let _ = kill(stage1, Signal::SIGKILL);
        }
        let _ = waitpid(stage1, Some(WaitPidFlag::__WALL));
    }
    result
}

/// Kills and reaps a process that the runtime started (used on failed creates).
pub(crate) fn kill_and_reap(pid: i32) {
    let p = Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGKILL);
    let _ = waitpid(p, Some(WaitPidFlag::__WALL));
}
