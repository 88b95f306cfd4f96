//! Support for the tests that drive real peers (containerd): an image archive builder and a
//! containerd process guard.

pub mod containerd;
pub mod image;
