//! `strata-aufs`: the aufs snapshotter plugin; `strata-aufs fuse ...` is one of the FUSE
//! servers it starts (see `strata_aufs::fuse_main`).

use std::process::ExitCode;

use strata_aufs::{Aufs, OPTIONS};
use strata_snapshotter::plugin;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "fuse") {
        return strata_aufs::fuse_main::main(&args[2..]);
    }
    plugin::main("aufs", OPTIONS, |root, opts| Ok(Aufs::open(root, opts)?))
}
