//! What the tools tests (engine_tools.rs, engine_cp.rs) share: `strata` fed on stdin.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Output, Stdio};

use anyhow::{Context, Result};
use strata_tests::engine::Engine;

/// Runs `strata` with `input` on its stdin.
pub fn strata_with_input(e: &Engine, args: &[&str], input: &[u8]) -> Result<Output> {
    let mut child = e
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run strata")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input)
        .context("write stdin")?;
    Ok(child.wait_with_output()?)
}
