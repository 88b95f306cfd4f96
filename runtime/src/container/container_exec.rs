//! `exec`: run another process in a running container's namespaces and cgroup.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::container_create::write_pid_file;
use super::spawn::{kill_and_reap, run_init};
use super::{Container, ContainerError, Result};
use crate::init::{InitConfig, InitKind};
use crate::namespaces::Namespaces;
use crate::state::Status;

/// Options of `exec` that are not in the process description.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Write the new process's pid here.
    pub pid_file: Option<PathBuf>,
    /// Send the pty master here when `terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Pass descriptors 3..3+N to the process.
    pub preserve_fds: i32,
    /// Descriptors (stdin, stdout, stderr) for the process; `None` inherits the caller's.
    /// They must stay open until the call returns.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

impl Container {
    /// Starts `process` inside the container and returns its host pid. The process is this
    /// process's child: wait for it with [`super::wait_pid`].
    pub fn exec(&mut self, process: &Process, opts: &ExecOptions) -> Result<i32> {
        self.refresh();
        if !matches!(self.state.status, Status::Running | Status::Created) {
            return Err(self.bad_status("exec in"));
        }
        crate::spec::validate_process(process)?;
        let terminal = process.terminal() == Some(true);
        if terminal != opts.console_socket.is_some() {
            return Err(ContainerError::Unsupported(
                "a terminal needs a --console-socket, and a console socket needs a terminal".into(),
            ));
        }
        let spec = crate::spec::load(&self.state.bundle)?;
        let ns = Namespaces::join_all_of(self.state.pid, &self.state.namespaces);
        let console = opts
            .console_socket
            .as_deref()
            .map(crate::tty::connect)
            .transpose()?;
        let (parent, child) = crate::channel::pair()?;
        let cfg = InitConfig {
            kind: InitKind::Exec,
            id: &self.state.id,
            spec: &spec,
            process,
            rootfs: &self.state.rootfs,
            bundle: &self.state.bundle,
            namespaces: &ns,
            cgroup: self.state.cgroup.as_ref(),
            console: console.as_ref().map(|c| c.as_raw_fd()),
            fifo: None,
            parent_end: parent.fd().as_raw_fd(),
            no_pivot: false,
            preserve_fds: opts.preserve_fds,
            stdio: opts.stdio,
            defer_unified: false,
        };
        debug_assert!(!ns.creates(LinuxNamespaceType::User));
        let mut no_hooks = |_pid: i32| -> Result<String> {
            Err(ContainerError::Init("exec has no create hooks".into()))
        };
        let mut pid = None;
        let res = run_init(&cfg, parent, child, (&[], &[]), &mut no_hooks, &mut pid);
        if let Err(e) = res {
            if let Some(p) = pid {
                kill_and_reap(p);
            }
            return Err(e);
        }
        let pid = pid.ok_or(ContainerError::Init("no pid was reported".into()))?;
        if let Some(pf) = &opts.pid_file {
            if let Err(e) = write_pid_file(pf, pid) {
                kill_and_reap(pid);
                return Err(e);
            }
        }
        Ok(pid)
    }
}
