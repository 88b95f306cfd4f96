//! End to end on the aufs plugin: `stratad --storage-driver aufs` loads an image and runs
//! containers on strata-aufs' FUSE unions, each with its own writable layer.
//!
//! Needs root and the built binaries (stratad, strata, strata-aufs, the runtime).

use anyhow::{ensure, Result};
use strata_tests::engine::{Engine, BUSYBOX};

fn check(r: Result<()>) {
    if let Err(e) = r {
        panic!("{e:?}");
    }
}

#[test]
fn aufs_engine_runs_containers() {
    let e = Engine::start(&["--storage-driver", "aufs"]).unwrap_or_else(|e| panic!("{e:?}"));
    e.load_busybox().unwrap_or_else(|err| panic!("{err:?}"));
    check((|| {
        let out = e.ok(&[
            "run",
            "--rm",
            BUSYBOX,
            "sh",
            "-c",
            "echo written > /x && cat /x && rm /bin/ls && test ! -e /bin/ls && echo removed",
        ])?;
        ensure!(out == "written\nremoved\n", "output {out:?}");
        // The image's layer is untouched: the next container has /bin/ls and no /x.
        let out = e.ok(&[
            "run",
            "--rm",
            BUSYBOX,
            "sh",
            "-c",
            "test -e /bin/ls && test ! -e /x && echo clean",
        ])?;
        ensure!(out == "clean\n", "output {out:?}");
        let info = e.ok(&["info"])?;
        ensure!(
            info.contains("aufs"),
            "strata info names the driver:\n{info}"
        );
        Ok(())
    })());
}
