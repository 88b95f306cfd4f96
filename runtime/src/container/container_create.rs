//! `create`: everything up to the container process waiting for `start`.

use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::spawn::{kill_and_reap, run_init};
use super::{Container, ContainerError, Result};
use crate::cgroups::Cgroup;
use crate::init::{InitConfig, InitKind};
use crate::namespaces::{NamespaceError, Namespaces};
use crate::state::{
    now_rfc3339, process_start_time, ContainerState, StateError, Status, EXEC_FIFO,
};

/// Options of `create` that are not in the spec.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Write the container process's pid here.
    pub pid_file: Option<PathBuf>,
    /// Send the pty master here when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (see [`crate::rootfs`]).
    pub no_pivot: bool,
    /// Pass descriptors 3..3+N to the container process.
    pub preserve_fds: i32,
    /// Descriptors (stdin, stdout, stderr) for the process; `None` inherits the caller's.
    /// They must stay open until the call returns.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// On a hybrid host, leave the container's joining of the unified hierarchy to the caller,
    /// who calls [`crate::cgroups::Cgroup::join_unified`] (on [`Container::cgroup`]) after
    /// [`Container::start`]: that write takes a kernel lock whose first taking costs an RCU
    /// grace period, which then need not delay the start. Ignored when the spec sets hugetlb
    /// limits (the unified hierarchy may hold them).
    pub defer_hybrid_unified: bool,
}

/// Undoes a half-done create when dropped, unless disarmed.
struct CreateGuard {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            kill_and_reap(pid);
        }
        if let Some(cg) = &self.cgroup {
            for pid in cg.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "cleanup after failed create: cgroup left behind");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cleanup after failed create: state left behind");
        }
    }
}

/// The state directory root, made if needed.
pub(crate) fn ensure_root(root: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(|source| ContainerError::Io {
            op: "create state root",
            path: root.to_path_buf(),
            source,
        })
}

fn check(spec: &Spec, ns: &Namespaces, opts: &CreateOptions) -> Result<()> {
    if !ns.creates(LinuxNamespaceType::Mount) {
        return Err(ContainerError::Unsupported(
            "a container needs a new mount namespace".into(),
        ));
    }
    let linux = spec.linux().as_ref();
    if ns.creates(LinuxNamespaceType::User)
        && (linux
            .and_then(|l| l.uid_mappings().as_ref())
            .is_none_or(|m| m.is_empty())
            || linux
                .and_then(|l| l.gid_mappings().as_ref())
                .is_none_or(|m| m.is_empty()))
    {
        return Err(NamespaceError::NoMappings.into());
    }
    if linux
        .and_then(|l| l.mount_label().as_ref())
        .is_some_and(|l| !l.is_empty())
    {
        return Err(ContainerError::Unsupported(
            "selinux mount labels are not supported by strata-runtime".into(),
        ));
    }
    if linux.is_some_and(|l| {
        l.intel_rdt().is_some()
            || l.personality().is_some()
            || l.memory_policy().is_some()
            || l.time_offsets().is_some()
            || l.net_devices().is_some()
    }) {
        return Err(ContainerError::Unsupported(
            "linux.intelRdt, personality, memoryPolicy, timeOffsets and netDevices are not supported by strata-runtime".into(),
        ));
    }
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    match (terminal, &opts.console_socket) {
        (true, None) => Err(ContainerError::Unsupported(
            "process.terminal is set: a --console-socket is required".into(),
        )),
        (false, Some(_)) => Err(ContainerError::Unsupported(
            "a console socket was given but process.terminal is not set".into(),
        )),
        _ => Ok(()),
    }
}

impl Container {
    /// Creates container `id` from the bundle: on success its process waits for [`start`].
    /// On any failure nothing is left behind: no process, cgroup, mount or state directory.
    ///
    /// The caller must be free to `fork` (see [`crate`] docs); the container's process is the
    /// caller's child, so [`Container::wait`] works on the returned value.
    ///
    /// [`start`]: Container::start
    pub fn create(root: &Path, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<Container> {
        crate::spec::validate_id(id)?;
        let bundle = std::fs::canonicalize(bundle).map_err(|source| ContainerError::Io {
            op: "open bundle",
            path: bundle.to_path_buf(),
            source,
        })?;
        let spec = crate::spec::load(&bundle)?;
        crate::spec::validate(&spec)?;
        let rootfs = crate::spec::rootfs(&spec, &bundle)?;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or(crate::spec::SpecError::Missing("no linux section"))?;
        let ns = Namespaces::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
        check(&spec, &ns, opts)?;
        let process = spec
            .process()
            .as_ref()
            .ok_or(crate::spec::SpecError::Missing("no process"))?;

        ensure_root(root)?;
        let dir = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()).into())
            }
            Err(source) => {
                return Err(ContainerError::Io {
                    op: "create state dir",
                    path: dir,
                    source,
                })
            }
        }
        let mut guard = CreateGuard {
            dir: dir.clone(),
            cgroup: None,
            pid: None,
            armed: true,
        };

        let mut cg = Cgroup::plan(linux.cgroups_path().as_deref(), id)?;
        let made = cg.create();
        guard.cgroup = Some(cg.clone());
        made?;
        let mut state = ContainerState {
            oci_version: spec.version().clone(),
            id: id.to_string(),
            status: Status::Creating,
            pid: 0,
            pid_start: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            created: now_rfc3339(),
            cgroup: Some(cg.clone()),
            namespaces: ns.clone(),
            hooks: spec.hooks().clone(),
            terminal: process.terminal() == Some(true),
        };
        // Saved while creating too: if this process dies halfway, `delete --force` still finds
        // the container's cgroup and removes it.
        state.save(&dir)?;
        if let Some(res) = linux.resources() {
            cg.apply(res)?;
        }

        let fifo_path = dir.join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622)).map_err(|errno| {
            ContainerError::Sys {
                op: "mkfifo exec.fifo",
                errno,
            }
        })?;
        // mkfifo applies the umask; the container process may be another uid by the time it
        // opens the fifo for writing (runc uses 0622 too).
        std::fs::set_permissions(
            &fifo_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o622),
        )
        .map_err(|source| ContainerError::Io {
            op: "chmod",
            path: fifo_path.clone(),
            source,
        })?;
        let fifo =
            open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| {
                ContainerError::Sys {
                    op: "open exec.fifo",
                    errno,
                }
            })?;
        let console = opts
            .console_socket
            .as_deref()
            .map(crate::tty::connect)
            .transpose()?;

        let (parent, child) = crate::channel::pair()?;
        let cfg = InitConfig {
            kind: InitKind::Create,
            id,
            spec: &spec,
            process,
            rootfs: &rootfs,
            bundle: &bundle,
            namespaces: &ns,
            cgroup: Some(&cg),
            console: console.as_ref().map(|c| c.as_raw_fd()),
            fifo: Some(fifo.as_raw_fd()),
            parent_end: parent.fd().as_raw_fd(),
            no_pivot: opts.no_pivot,
            preserve_fds: opts.preserve_fds,
            stdio: opts.stdio,
            defer_unified: opts.defer_hybrid_unified
                && spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.resources().as_ref())
                    .and_then(|r| r.hugepage_limits().as_ref())
                    .is_none_or(|h| h.is_empty()),
        };
        let empty = Vec::new();
        let maps = (
            linux.uid_mappings().as_ref().unwrap_or(&empty).as_slice(),
            linux.gid_mappings().as_ref().unwrap_or(&empty).as_slice(),
        );
        let hooks = spec.hooks().clone();
        let mut run_hooks = |pid: i32| -> Result<String> {
            let doc = serde_json::json!({
                "ociVersion": spec.version(), "id": id, "status": "creating", "pid": pid,
                "bundle": bundle, "annotations": spec.annotations().clone().unwrap_or_default(),
            })
            .to_string();
            let h = hooks.as_ref();
            crate::hooks::run_hooks("prestart", h.and_then(|h| h.prestart().as_ref()), &doc)?;
            crate::hooks::run_hooks(
                "createRuntime",
                h.and_then(|h| h.create_runtime().as_ref()),
                &doc,
            )?;
            Ok(doc)
        };
        let mut init_pid = None;
        let res = run_init(&cfg, parent, child, maps, &mut run_hooks, &mut init_pid);
        guard.pid = init_pid;
        res?;
        let pid = init_pid.ok_or(ContainerError::Init("no pid was reported".into()))?;
        drop(fifo);
        drop(console);

        state.pid = pid;
        state.pid_start = process_start_time(pid).ok_or(ContainerError::Init(
            "the container process died right after setup".into(),
        ))?;
        state.status = Status::Created;
        state.save(&dir)?;
        if let Some(pf) = &opts.pid_file {
            write_pid_file(pf, pid)?;
        }
        guard.armed = false;
        Ok(Container {
            root: root.to_path_buf(),
            state,
            child: true,
        })
    }
}

/// Writes a pid file atomically, as runc does (containerd reads it right away).
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("strata-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|source| ContainerError::Io {
        op: "write pid file",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ContainerError::Io {
        op: "write pid file",
        path: path.to_path_buf(),
        source,
    })
}
