//! The image subsystem: references, layer application, image metadata, archives and unpacking.
//!
//! - [`reference`]: Docker-style references (`busybox` → `docker.io/library/busybox:latest`).
//! - [`apply`]: applying a layer tar to a directory, mount-aware and safely.

pub mod apply;
pub mod reference;
