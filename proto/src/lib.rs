//! Strata's gRPC APIs, generated from the `.proto` files in `proto/`.
//!
//! - [`snapshots`]: containerd's `containerd.services.snapshots.v1.Snapshots` service and its
//!   messages, written by hand to be wire-compatible with containerd 1.6 and later, so containerd
//!   can load a Strata plugin as a proxy snapshotter and Strata can drive any proxy snapshotter.
//! - [`types`]: containerd's `containerd.types.Mount`.
//! - [`storage`]: `strata.storage.v1.Driver`, what the containerd API has no room for (status
//!   rows, capabilities).
//! - [`engine`]: `strata.engine.v1`, the engine API `strata` uses to drive `stratad`.
//!
//! ```
//! use strata_proto::snapshots::{Kind, PrepareSnapshotRequest};
//! let req = PrepareSnapshotRequest { key: "k".into(), ..Default::default() };
//! assert_eq!(req.key, "k");
//! assert_eq!(Kind::Committed as i32, 3);
//! ```

/// The generated code, in modules named after the protobuf packages (so that cross-package
/// references resolve).
pub mod gen {
    /// `containerd.*`
    pub mod containerd {
        /// `containerd.types`
        pub mod types {
            tonic::include_proto!("containerd.types");
        }
        /// `containerd.services`
        pub mod services {
            /// `containerd.services.snapshots`
            pub mod snapshots {
                /// `containerd.services.snapshots.v1`
                pub mod v1 {
                    tonic::include_proto!("containerd.services.snapshots.v1");
                }
            }
        }
    }
    /// `strata.*`
    pub mod strata {
        /// `strata.engine`
        pub mod engine {
            /// `strata.engine.v1`
            pub mod v1 {
                tonic::include_proto!("strata.engine.v1");
            }
        }
        /// `strata.storage`
        pub mod storage {
            /// `strata.storage.v1`
            pub mod v1 {
                tonic::include_proto!("strata.storage.v1");
            }
        }
    }
}

/// `containerd.services.snapshots.v1`: the snapshots service.
pub use gen::containerd::services::snapshots::v1 as snapshots;
/// `containerd.types`: the Mount message.
pub use gen::containerd::types;
/// `strata.engine.v1`: the engine API.
pub use gen::strata::engine::v1 as engine;
/// `strata.storage.v1`: the storage driver service.
pub use gen::strata::storage::v1 as storage;

/// The full gRPC service name of the snapshots service, as containerd's proxy client calls it.
pub const SNAPSHOTS_SERVICE: &str = "containerd.services.snapshots.v1.Snapshots";
/// The full gRPC service name of the storage driver service.
pub const DRIVER_SERVICE: &str = "strata.storage.v1.Driver";
