//! End-to-end tests that drive Strata's built binaries as a user (or containerd) would.
//!
//! The heart of this crate is the driver-agnostic snapshotter conformance suite: every case of
//! containerd's snapshotter test suite (shared/SNAPSHOTS-API.md §3), the error paths of §1.4,
//! crash recovery at the plugins' failpoints, and concurrent clients. It talks to a plugin only
//! over its gRPC socket and mounts what the plugin returns, so the overlay2, devicemapper and aufs
//! plugins all run the same code; a driver only describes itself with a [`PluginSpec`].
//!
//! - [`harness`]: find a plugin binary, start it in a [`Sandbox`] (temp root, short socket path),
//!   wait until it is healthy, connect, and tear everything down on drop.
//! - [`client`]: a thin wrapper over the snapshots client with one method per RPC and error-code
//!   assertions, and [`Harness`], a plugin plus its sandbox.
//! - [`mounts`]: [`MountGuard`], which unmounts on drop.
//! - [`fstest`]: apply changes to a directory and compare two trees deeply.
//! - [`conformance`], [`errors`], [`crash`], [`concurrency`]: the cases. Each is an
//!   `async fn(PluginSpec) -> anyhow::Result<()>` that starts its own plugin process, so cases run
//!   in parallel.
//! - [`plugin`]: the process contract every Strata plugin shares (socket mode, refusing bad
//!   options, SIGTERM, the Driver service).
//! - [`layouts`]: how to count a driver's on-disk snapshot storage, for leak checks.
//! - [`xattr`]: extended attributes for the tree checks (the crate's only `unsafe`).
//! - [`uml`]: re-running a test inside User-Mode Linux, for kernels features the host lacks.
//!
//! A driver's test file runs every case as its own `#[test]`:
//!
//! ```no_run
//! use strata_tests::{conformance, harness::run_case, layouts, PluginSpec};
//!
//! fn spec() -> PluginSpec {
//!     PluginSpec::new("strata-overlay2", layouts::overlay2_storage_count)
//! }
//!
//! #[test]
//! fn overlay2_conformance_basic() {
//!     run_case(spec(), conformance::basic);
//! }
//! ```
//!
//! The tests need root (they really mount) and the plugin binaries built first
//! (`cargo build --workspace --bins`); a missing binary fails the test, it never skips.

pub mod client;
pub mod concurrency;
pub mod conformance;
pub mod crash;
pub mod engine;
pub mod errors;
pub mod fstest;
pub mod harness;
pub mod image;
pub mod layouts;
pub mod mounts;
pub mod plugin;
pub mod pty;
pub mod uml;

pub use client::{Harness, Snap};
pub use harness::{PluginProcess, PluginSpec, Sandbox};
pub use mounts::MountGuard;
