//! strata-runtime: the Strata OCI runtime, as a library and as a runc-compatible binary.
//!
//! It turns an OCI bundle (a `config.json` and a root filesystem) into a process in new or
//! joined namespaces, limited by a cgroup (v1, v2 or hybrid hosts, detected at run time), with
//! the spec's mounts, devices, masked and read-only paths, capabilities, rlimits, seccomp
//! filter, user and hooks.
//!
//! The main types are [`Container`] (the lifecycle verbs: [`Container::create`],
//! [`Container::start`], [`Container::state`], [`Container::kill`], [`Container::exec`],
//! [`Container::pause`], [`Container::resume`], [`Container::update`], [`Container::wait`],
//! [`Container::delete`], and [`Container::load`] from another process), [`CreateOptions`]
//! and [`ExecOptions`] (pid file, console socket, the process's stdio descriptors, preserved
//! descriptors), [`ContainerState`] with its [`Status`], and [`ExitStatus`] (code, signal,
//! OOM kill). [`cgroups::Cgroup::watch_oom`] reports OOM kills as they happen, and
//! [`spec::docker_default_spec`] / [`spec::docker_default_capabilities`] give Docker's
//! defaults. State lives in a root directory (the binary's default is `/run/strata-runtime`,
//! like runc's `/run/runc`), one directory per container with a JSON state file, so that
//! separate processes (a CLI call per verb, as containerd's shim makes them) can drive one
//! container.
//!
//! ```no_run
//! use std::path::Path;
//! use strata_runtime::{Container, CreateOptions};
//! # fn main() -> Result<(), strata_runtime::ContainerError> {
//! let root = Path::new("/run/strata-runtime");
//! let mut c = Container::create(root, "web", Path::new("/bundles/web"), &CreateOptions::default())?;
//! c.start()?;
//! let status = c.wait()?; // this process is the container's parent
//! println!("exited with {} (oom killed: {})", status.code, status.oom_killed);
//! c.delete(false)?;
//! # Ok(()) }
//! ```
//!
//! How it works: `create` forks; the child joins the cgroup and namespaces, unshares new ones
//! and clones the container process (pid 1 of a new pid namespace) as the caller's child. That
//! process builds the rootfs, pivots into it, becomes the spec's user and blocks on a fifo in
//! the state directory until `start` opens it (runc's `exec.fifo`), then execs. All privileged
//! calls go through the [`syscall::Syscall`] trait, so the logic is unit-tested with a
//! recording fake.
//!
//! Callers must be able to fork safely: the library forks the calling process, and the child
//! allocates memory. With glibc that is sound from a multi-threaded process too, as long as
//! no other locks the child needs are held; the engine calls it from a per-container monitor.

pub mod cgroups;
pub mod channel;
mod container;
pub mod hooks;
pub mod init;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod syscall;
pub mod tini;
pub mod tty;

pub use container::parse_signal;
pub use container::{wait_pid, Container, ContainerError, CreateOptions, ExecOptions, ExitStatus};
pub use state::{ContainerState, Status};
