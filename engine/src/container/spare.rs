//! A monitor started ahead of time. Starting a container is on the path of every `strata run`;
//! the monitor process's own start (fork of the engine, exec, loading) is not work the
//! container needs, so the engine keeps one `strata-monitor --spare` waiting and hands it the
//! next container over a socket (see [`super::monitor::send_job`]). A new spare is started in
//! the background after each use, once the container has run for [`REFILL_AFTER`] or has
//! ended (so that a short run's exit does not share the CPU with it). A spare whose engine goes
//! away exits.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::monitor::{self, MonitorArgs};

/// How long a container runs before the spare it used is replaced (sooner if it ends).
pub const REFILL_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// A waiting monitor: the process and the engine's end of its job socket.
#[derive(Debug)]
pub(super) struct Spare {
    pub(super) child: tokio::process::Child,
    pub(super) sock: OwnedFd,
}

/// Starts `strata-monitor --spare` with a job socket as its stdin (blocking; in a runtime).
pub(super) fn spawn_spare(monitor: &PathBuf) -> std::io::Result<Spare> {
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )?;
    // Its job socket is its stdin: with no code to run between fork and exec, the spawn is a
    // posix_spawn (vfork), which does not copy the engine's page tables and stall its other
    // threads as a fork does.
    let mut cmd = std::process::Command::new(monitor);
    cmd.arg("--spare")
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = tokio::process::Command::from(cmd).spawn()?;
    Ok(Spare { child, sock: ours })
}

/// The engine's spare monitor (at most one).
#[derive(Debug)]
pub struct Spares {
    monitor: PathBuf,
    slot: Arc<Mutex<Option<Spare>>>,
}

/// Starts `monitor` with `args`, `status` as its fd 3 and `attached` (if any) as its fd 4.
pub fn spawn_monitor(
    monitor: &PathBuf,
    args: &[std::ffi::OsString],
    status: RawFd,
    attached: Option<RawFd>,
) -> std::io::Result<tokio::process::Child> {
    let mut cmd = std::process::Command::new(monitor);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only dup2 (async-signal-safe) runs, on descriptors that
    // are open in the parent for the whole spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(status, monitor::STATUS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(a) = attached {
                if libc::dup2(a, monitor::ATTACH_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd).spawn()
}

impl Spares {
    /// No spare yet; [`Spares::refill`] starts one.
    pub fn new(monitor: PathBuf) -> Self {
        Spares {
            monitor,
            slot: Default::default(),
        }
    }

    /// Starts a spare in the background if there is none.
    pub fn refill(&self) {
        if self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return;
        }
        let (monitor, slot) = (self.monitor.clone(), self.slot.clone());
        tokio::task::spawn_blocking(move || {
            let made = spawn_spare(&monitor);
            match made {
                Ok(s) => {
                    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                    // Another refill may have won; the extra spare exits when its socket
                    // closes here.
                    if slot.is_none() {
                        *slot = Some(s);
                    }
                }
                Err(e) => tracing::warn!(%e, "starting a spare container monitor failed"),
            }
        });
    }

    /// Hands `args` to the spare, if there is a live one; returns its process. The caller
    /// starts a monitor of its own when this returns `None`.
    pub fn start(
        &self,
        args: &MonitorArgs,
        status: &impl AsRawFd,
        attached: Option<RawFd>,
    ) -> Option<tokio::process::Child> {
        let mut spare = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        if !matches!(spare.child.try_wait(), Ok(None)) {
            return None;
        }
        match monitor::send_job(&spare.sock, args, status, attached, false) {
            Ok(()) => Some(spare.child),
            Err(e) => {
                tracing::warn!(%e, "the spare container monitor did not take its job");
                let _ = spare.child.start_kill();
                None
            }
        }
    }
}
