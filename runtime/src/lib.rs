//! placeholder
pub mod cgroups;
pub mod channel;
pub mod hooks;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod state;
pub mod tty;
pub mod spec;
pub mod syscall;
