//! `strata-devmapper`: the devicemapper snapshotter plugin.

use std::process::ExitCode;

use strata_devmapper::{Devmapper, OPTIONS};
use strata_snapshotter::plugin;

fn main() -> ExitCode {
    plugin::main("devicemapper", OPTIONS, |root, opts| {
        Ok(Devmapper::open(root, opts)?)
    })
}
