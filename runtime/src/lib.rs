//! placeholder
pub mod cgroups;
pub mod namespaces;
pub mod spec;
pub mod syscall;
