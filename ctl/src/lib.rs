//! The `strata` command line lives here. It is built on the engine API; this crate has no
//! public items yet.
