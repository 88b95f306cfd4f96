//! `delete`: remove a stopped (or, forced, any) container: processes, cgroup, state.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{wait_gone, Container, ContainerError, Result};
use crate::state::Status;

impl Container {
    /// Deletes the container. A created container is killed first; a running or paused one
    /// only with `force`. Runs the poststop hooks (failures are logged).
    pub fn delete(mut self, force: bool) -> Result<()> {
        let _lock = self.lock()?;
        self.refresh();
        match self.state.status {
            Status::Stopped => {}
            Status::Created | Status::Creating => self.kill_all_and_wait()?,
            Status::Running | Status::Paused if force => self.kill_all_and_wait()?,
            Status::Running | Status::Paused => return Err(self.bad_status("delete")),
        }
        if let Some(cg) = &self.state.cgroup {
            // Stray processes (exec'd ones, daemons) would keep the cgroup busy.
            for pid in cg.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            if cg.is_frozen().unwrap_or(false) {
                cg.thaw()?;
            }
            cg.destroy()?;
        }
        let doc = self.state.oci_json().to_string();
        crate::hooks::run_hooks_warn(
            "poststop",
            self.state
                .hooks
                .as_ref()
                .and_then(|h| h.poststop().as_ref()),
            &doc,
        );
        let dir = self.dir();
        std::fs::remove_dir_all(&dir).map_err(|source| ContainerError::Io {
            op: "remove",
            path: dir,
            source,
        })?;
        Ok(())
    }

    fn kill_all_and_wait(&mut self) -> Result<()> {
        self.kill(Signal::SIGKILL, true)?;
        if self.alive() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.state.pid), Signal::SIGKILL);
        }
        if self.child {
            let _ = super::wait_pid(self.state.pid);
        } else if !wait_gone(
            self.state.pid,
            self.state.pid_start,
            Duration::from_secs(10),
        ) {
            return Err(ContainerError::Init(format!(
                "process {} did not die after SIGKILL",
                self.state.pid
            )));
        }
        Ok(())
    }
}
