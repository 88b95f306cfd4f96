//! Support for the tests that drive real containerd: a containerd process guard.

pub mod containerd;
