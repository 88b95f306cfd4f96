//! `start`: release the created container's process by opening its exec fifo.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::{Container, ContainerError, Result};
use crate::state::{Status, EXEC_FIFO};

impl Container {
    /// Starts a created container: its process execs the user's program. Runs the poststart
    /// hooks afterwards (their failures are logged, as the spec says).
    pub fn start(&mut self) -> Result<()> {
        let _lock = self.lock()?;
        self.refresh();
        if self.state.status != Status::Created {
            return Err(self.bad_status("start"));
        }
        let path = self.dir().join(EXEC_FIFO);
        // Non-blocking open: a reader needs no writer. Then wait for the byte, watching the
        // process so that a dead init cannot hang us.
        let fd = open(
            &path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| ContainerError::Sys {
            op: "open exec.fifo",
            errno,
        })?;
        loop {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(0) => {}
                Ok(_) => {
                    let mut buf = [0u8; 1];
                    match nix::unistd::read(&fd, &mut buf) {
                        Ok(1) => break,
                        Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                        Err(errno) => {
                            return Err(ContainerError::Sys {
                                op: "read exec.fifo",
                                errno,
                            })
                        }
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => {
                    return Err(ContainerError::Sys {
                        op: "poll exec.fifo",
                        errno,
                    })
                }
            }
            if !self.alive() {
                return Err(ContainerError::Init(
                    "the container process exited before start".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::remove_file(&path).map_err(|source| ContainerError::Io {
            op: "remove",
            path,
            source,
        })?;
        self.state.status = Status::Running;
        self.save()?;
        let doc = self.state.oci_json().to_string();
        let hooks = self.state.hooks.clone();
        crate::hooks::run_hooks_warn(
            "poststart",
            hooks.as_ref().and_then(|h| h.poststart().as_ref()),
            &doc,
        );
        Ok(())
    }
}
