//! A container and its lifecycle verbs, one file per verb.

mod container_create;
mod container_delete;
mod container_exec;
mod container_kill;
pub use container_kill::parse_signal;
mod container_pause;
mod container_start;
mod container_update;
mod spawn;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub use container_create::CreateOptions;
pub use container_exec::ExecOptions;

use crate::cgroups::CgroupError;
use crate::channel::ChannelError;
use crate::hooks::HookError;
use crate::namespaces::NamespaceError;
use crate::spec::SpecError;
use crate::state::{process_start_time, ContainerState, StateError, Status, EXEC_FIFO};
use crate::tty::TtyError;

/// Errors of the lifecycle verbs.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Tty(#[from] TtyError),
    /// The container's setup failed inside the container (the message comes from there).
    #[error("container init failed: {0}")]
    Init(String),
    /// File work failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{op}: {errno}")]
    Sys {
        op: &'static str,
        errno: nix::errno::Errno,
    },
    /// The verb is not allowed in the container's status.
    #[error("cannot {op} container {id}: it is {status}")]
    BadStatus {
        op: &'static str,
        id: String,
        status: Status,
    },
    /// The exit status is only known to the container's parent.
    #[error(
        "container {0} was not started by this process; its exit status is not available here"
    )]
    NotChild(String),
    /// Some option that is not supported.
    #[error("{0}")]
    Unsupported(String),
}

/// Shorthand.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The shell-style code: the exit code, or 128 + signal.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the cgroup saw an OOM kill.
    pub oom_killed: bool,
}

/// A container under a state root.
#[derive(Debug)]
pub struct Container {
    root: PathBuf,
    state: ContainerState,
    /// Whether this process is the parent of the container's first process.
    child: bool,
}

impl Container {
    /// Loads the container `id` from `root` and refreshes its status from the system.
    pub fn load(root: &Path, id: &str) -> Result<Self> {
        crate::spec::validate_id(id)?;
        let state = ContainerState::load(root, id)?;
        let mut c = Container {
            root: root.to_path_buf(),
            state,
            child: false,
        };
        c.refresh();
        Ok(c)
    }

    /// Every container under `root`, in id order (damaged entries are skipped with a warning).
    pub fn list(root: &Path) -> Result<Vec<Container>> {
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ContainerError::Io {
                    op: "read",
                    path: root.to_path_buf(),
                    source,
                })
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            match Container::load(root, &id) {
                Ok(c) => out.push(c),
                Err(e) => tracing::warn!(id, error = %e, "skipping container"),
            }
        }
        Ok(out)
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The host pid of the container's first process.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// The container's directory under the root.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.state.id)
    }

    /// The state, with the status refreshed.
    pub fn state(&mut self) -> &ContainerState {
        self.refresh();
        &self.state
    }

    /// The current status.
    pub fn status(&mut self) -> Status {
        self.refresh();
        self.state.status
    }

    fn alive(&self) -> bool {
        self.state.pid > 0 && process_start_time(self.state.pid) == Some(self.state.pid_start)
    }

    fn refresh(&mut self) {
        if self.state.status == Status::Creating && self.state.pid == 0 {
            return;
        }
        self.state.status = if !self.alive() {
            Status::Stopped
        } else if self.dir().join(EXEC_FIFO).exists() {
            Status::Created
        } else if self
            .state
            .cgroup
            .as_ref()
            .is_some_and(|c| c.is_frozen().unwrap_or(false))
        {
            Status::Paused
        } else {
            Status::Running
        };
    }

    /// Takes the container's lock (an exclusive flock on its state directory), so that verbs
    /// from separate processes on one container do not interleave. Released on drop.
    pub(crate) fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let dir = self.dir();
        let f = std::fs::File::open(&dir).map_err(|source| ContainerError::Io {
            op: "open",
            path: dir.clone(),
            source,
        })?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
            ContainerError::Sys {
                op: "flock state directory",
                errno,
            }
        })
    }

    fn save(&self) -> Result<()> {
        Ok(self.state.save(&self.dir())?)
    }

    fn bad_status(&self, op: &'static str) -> ContainerError {
        ContainerError::BadStatus {
            op,
            id: self.state.id.clone(),
            status: self.state.status,
        }
    }

    /// The processes in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        match &self.state.cgroup {
            Some(cg) => Ok(cg.pids()?),
            None => Ok(if self.alive() {
                vec![self.state.pid]
            } else {
                Vec::new()
            }),
        }
    }

    /// The container's cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&crate::cgroups::Cgroup> {
        self.state.cgroup.as_ref()
    }

    /// Waits for the container's first process to exit and reports how. Only the process that
    /// created the container (its parent) can do this.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if !self.child {
            return Err(ContainerError::NotChild(self.state.id.clone()));
        }
        let mut status = wait_pid(self.state.pid)?;
        if let Some(cg) = &self.state.cgroup {
            status.oom_killed = cg.oom_kills().unwrap_or(0) > 0;
        }
        self.refresh();
        Ok(status)
    }
}

impl Container {
    /// Like [`Container::wait`], without blocking: `None` while the process runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if !self.child {
            return Err(ContainerError::NotChild(self.state.id.clone()));
        }
        let status = match waitpid(
            Pid::from_raw(self.state.pid),
            Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, code)) => ExitStatus {
                code,
                signal: None,
                oom_killed: false,
            },
            Ok(WaitStatus::Signaled(_, sig, _)) => ExitStatus {
                code: 128 + sig as i32,
                signal: Some(sig as i32),
                oom_killed: false,
            },
            Ok(_) => return Ok(None),
            Err(errno) => {
                return Err(ContainerError::Sys {
                    op: "waitpid",
                    errno,
                })
            }
        };
        let oom_killed = self
            .state
            .cgroup
            .as_ref()
            .is_some_and(|cg| cg.oom_kills().unwrap_or(0) > 0);
        self.refresh();
        Ok(Some(ExitStatus {
            oom_killed,
            ..status
        }))
    }
}

/// Waits for a child process and turns its end into an [`ExitStatus`].
pub fn wait_pid(pid: i32) -> Result<ExitStatus> {
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Ok(ExitStatus {
                    code,
                    signal: None,
                    oom_killed: false,
                })
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(ExitStatus {
                    code: 128 + sig as i32,
                    signal: Some(sig as i32),
                    oom_killed: false,
                })
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => {
                return Err(ContainerError::Sys {
                    op: "waitpid",
                    errno,
                })
            }
        }
    }
}

/// Waits (polling, up to `timeout`) until `pid` is gone or a zombie.
pub(crate) fn wait_gone(pid: i32, start: u64, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut delay = Duration::from_micros(100);
    while process_start_time(pid) == Some(start) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
    true
}
