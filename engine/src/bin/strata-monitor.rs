//! `strata-monitor`: watches one container for the engine (see `strata_engine::container::monitor`).

use std::path::PathBuf;

use clap::Parser;
use strata_engine::container::monitor::{self, MonitorArgs};

#[derive(Debug, Parser)]
#[command(about = "Runs and watches one container for stratad (not for direct use)")]
struct Args {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    runtime_root: PathBuf,
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    state_dir: PathBuf,
    /// The container has a terminal: receive its pty master.
    #[arg(long)]
    tty: bool,
    /// Keep the container's stdin open for attached clients.
    #[arg(long)]
    stdin: bool,
    /// Fd 4 is a client attached before the container starts.
    #[arg(long)]
    attached: bool,
    /// The terminal's first size, ROWSxCOLS.
    #[arg(long, value_parser = parse_size)]
    console_size: Option<(u16, u16)>,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid size {s:?}: expected ROWSxCOLS");
    let (r, c) = s.split_once('x').ok_or_else(bad)?;
    Ok((r.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?))
}

fn main() {
    let a = Args::parse();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.state_dir.join("monitor.log"));
    if let Ok(f) = log {
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .init();
    }
    // SAFETY: first thing in this process; stratad passes the status pipe as fd 3.
    let status = unsafe { monitor::status_fd() };
    // SAFETY: likewise, with --attached stratad passes the client's socket as fd 4.
    let attached = a.attached.then(|| unsafe { monitor::attach_fd() });
    let code = monitor::run(
        &MonitorArgs {
            id: a.id,
            bundle: a.bundle,
            runtime_root: a.runtime_root,
            log: a.log,
            state_dir: a.state_dir,
            tty: a.tty,
            stdin: a.stdin,
            console_size: a.console_size,
        },
        status,
        attached,
    );
    std::process::exit(code);
}
