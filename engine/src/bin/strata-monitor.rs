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
    let code = monitor::run(
        &MonitorArgs {
            id: a.id,
            bundle: a.bundle,
            runtime_root: a.runtime_root,
            log: a.log,
            state_dir: a.state_dir,
        },
        status,
    );
    std::process::exit(code);
}
