//! The Strata engine. The daemon `stratad` (images and containers in sled, a content store of
//! layer blobs, plugin supervision and the engine gRPC API) is built here; see the project's
//! open issues for its state. This crate has no public items yet.
