//! `kill`: send a signal to the container's process, or to every process of its cgroup.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Container, ContainerError, Result};
use crate::state::Status;

/// Parses a signal as runc does: a number, `KILL`, or `SIGKILL`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}

impl Container {
    /// Signals the container's first process, or with `all` every process in its cgroup.
    pub fn kill(&mut self, sig: Signal, all: bool) -> Result<()> {
        self.refresh();
        if self.state.status == Status::Stopped && !all {
            return Err(self.bad_status("kill"));
        }
        let pids = if all {
            self.pids()?
        } else {
            vec![self.state.pid]
        };
        let paused = self.state.status == Status::Paused;
        for pid in pids {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(errno) => return Err(ContainerError::Sys { op: "kill", errno }),
            }
        }
        // A frozen process only gets its signal when thawed.
        if paused && sig == Signal::SIGKILL {
            if let Some(cg) = &self.state.cgroup {
                cg.thaw()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("KILL"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("BOGUS"), None);
        assert_eq!(parse_signal("999"), None);
    }
}
