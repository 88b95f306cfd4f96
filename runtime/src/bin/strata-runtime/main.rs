//! `strata-runtime`: the OCI runtime command line (runc's verbs and flags).

mod cli;
mod commands;
mod console;
mod logging;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;

use cli::{Cli, LogFormat};

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let file = match &cli.log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    let layer = logging::LogrusLayer::new(file, cli.log_format == LogFormat::Json, level);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("strata-runtime: {e:#}");
        return ExitCode::from(1);
    }
    let result = if cli.systemd_cgroup {
        Err(anyhow::anyhow!("--systemd-cgroup is not supported: strata-runtime manages cgroupfs directly; drop the flag"))
    } else {
        commands::run(&cli)
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = format!("{e:#}");
            if cli.log.is_some() {
                tracing::error!("{msg}");
            }
            eprintln!("strata-runtime: {msg}");
            ExitCode::from(1)
        }
    }
}
