//! `strata`: the command line of the Strata container engine, with the verbs a Docker user
//! knows. Each subcommand lives in `commands/<verb>.rs`.

mod client;
mod commands;
mod format;
mod table;
mod tty;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "The Strata container engine",
    disable_help_subcommand = true
)]
struct Cli {
    /// The engine's API socket.
    #[arg(
        long,
        global = true,
        env = "STRATA_ADDRESS",
        default_value = "/run/strata/strata.sock"
    )]
    address: PathBuf,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(commands::run(cli.command, &cli.address)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(f) => {
            eprintln!("strata: {}", f.message);
            ExitCode::from(f.code.clamp(1, 255) as u8)
        }
    }
}
