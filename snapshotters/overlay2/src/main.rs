//! `strata-overlay2`: the overlay2 snapshotter plugin.

use std::process::ExitCode;

use strata_overlay2::{Overlay2, OPTIONS};
use strata_snapshotter::plugin;

fn main() -> ExitCode {
    plugin::main("overlay2", OPTIONS, |root, opts| {
        Ok(Overlay2::open(root, opts)?)
    })
}
