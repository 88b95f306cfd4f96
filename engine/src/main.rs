//! `stratad`: the Strata engine daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use strata_engine::config::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(version, about = "The Strata container engine")]
struct Args {
    /// Settings file (default: /etc/strata/config.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where images, containers and storage live [default: /var/lib/strata].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Where sockets and run-time state live [default: /run/strata].
    #[arg(long, value_name = "DIR")]
    run_root: Option<PathBuf>,
    /// The API socket [default: <run-root>/strata.sock].
    #[arg(long, value_name = "SOCKET")]
    address: Option<PathBuf>,
    /// overlay2, devicemapper or aufs [default: as DESIGN §4 chooses].
    #[arg(long, value_name = "NAME")]
    storage_driver: Option<String>,
    /// A storage driver option (repeatable).
    #[arg(long = "storage-opt", value_name = "KEY=VALUE")]
    storage_opt: Vec<String>,
    /// error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Keep up to N containers made ahead of time, for creates like the last ones [default: 0].
    #[arg(long, value_name = "N")]
    warm_pool: Option<usize>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let overrides = Overrides {
        root: a.root,
        run_root: a.run_root,
        address: a.address,
        log_level: a.log_level,
        storage_driver: a.storage_driver,
        storage_opts: a.storage_opt,
        warm_pool: a.warm_pool,
    };
    let config = match Config::load(a.config.as_deref(), overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stratad: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},sled=warn,h2=warn,tower=warn,hyper=warn",
        config.log_level
    ));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stratad: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(strata_engine::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stratad: {e:#}");
            ExitCode::FAILURE
        }
    }
}
