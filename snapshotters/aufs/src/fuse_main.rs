//! `strata-aufs fuse --root DIR --id ID [--read-only]`: one FUSE server, started by the plugin
//! (see [`crate::supervisor`]). It mounts the union of layer ID (its `diff/`, then the parents
//! listed in `layers/ID`) at `mnt/ID`, prints `ready` on stdout and serves until unmounted.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::fuse::{serve, union::Branches};
use crate::layout::Layout;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum FuseMainError {
    /// The command line is wrong.
    #[error("usage: strata-aufs fuse --root DIR --id ID [--read-only]: {0}")]
    Usage(String),
    /// The layer's branches could not be read.
    #[error("read the branches of layer {id} under {root}: {source}")]
    Branches {
        /// The layer.
        id: String,
        /// The plugin root.
        root: String,
        /// Why.
        source: std::io::Error,
    },
    /// Mounting or serving failed.
    #[error("serve the union at {mnt}: {source}")]
    Serve {
        /// The mountpoint.
        mnt: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the server with the arguments after `fuse`.
pub fn main(args: &[OsString]) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,fuser=error"))
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-aufs fuse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[OsString]) -> Result<(), FuseMainError> {
    let mut root = None;
    let mut id = None;
    let mut read_only = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--root") => root = it.next().map(PathBuf::from),
            Some("--id") => id = it.next().and_then(|s| s.to_str()).map(String::from),
            Some("--read-only") => read_only = true,
            _ => return Err(FuseMainError::Usage(format!("unknown argument {a:?}"))),
        }
    }
    let root = root.ok_or_else(|| FuseMainError::Usage("--root is required".into()))?;
    let id = id.ok_or_else(|| FuseMainError::Usage("--id is required".into()))?;
    // Modes and owners are set exactly as asked.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let layout = Layout::new(&root);
    let branches = layout
        .branches(&id)
        .map_err(|source| FuseMainError::Branches {
            id: id.clone(),
            root: root.display().to_string(),
            source,
        })?;
    let mnt = layout.mnt(&id);
    let branches = Branches::new(branches, !read_only);
    if !read_only {
        branches
            .clear_orphans()
            .map_err(|source| FuseMainError::Branches {
                id: id.clone(),
                root: root.display().to_string(),
                source,
            })?;
    }
    serve(branches, &mnt, || {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    })
    .map_err(|source| FuseMainError::Serve {
        mnt: mnt.display().to_string(),
        source,
    })
}
