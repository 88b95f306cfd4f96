//! The `main` every plugin shares:
//!
//! `strata-<driver> --root DIR --address SOCKET [--storage-opt KEY=VALUE]... [--log-level L]`
//!
//! It refuses unknown or malformed options at start (naming the option), opens the metadata
//! store under the root, serves the snapshots, driver and health services on a unix socket of
//! mode 0600, and on SIGTERM or SIGINT stops accepting, finishes what is in flight, flushes the
//! metadata and exits 0.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use strata_proto::snapshots::snapshots_server::SnapshotsServer;
use strata_proto::storage::driver_server::DriverServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::core::Core;
use crate::error::{Error, IoContext};
use crate::metastore::MetaStore;
use crate::options::{OptionError, StorageOpts};
use crate::service::{DriverService, SnapshotService};
use crate::snapshotter::Snapshotter;

/// How long calls in flight may take to finish after SIGTERM.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The command line of a plugin.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "A Strata snapshotter plugin: serves containerd's snapshots API on a unix socket"
)]
pub struct Args {
    /// Directory for the driver's storage and metadata.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Unix socket to serve on (created with mode 0600).
    #[arg(long, value_name = "SOCKET")]
    pub address: PathBuf,
    /// A driver option, e.g. overlay2.size=10G (repeatable).
    #[arg(long = "storage-opt", value_name = "KEY=VALUE")]
    pub storage_opt: Vec<String>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

/// Why a plugin could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A storage option is wrong.
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The driver or the store failed to open.
    #[error(transparent)]
    Core(#[from] Error),
    /// The socket could not be served.
    #[error("{0}")]
    Socket(String),
}

/// Runs a plugin: parses the command line, opens the driver with `open` (which takes the
/// options it knows from the [`StorageOpts`]; `known` lists them for the error message), and
/// serves until SIGTERM.
pub fn main<D, F>(driver: &'static str, known: &[&str], open: F) -> ExitCode
where
    D: Snapshotter,
    F: FnOnce(&Path, &mut StorageOpts) -> Result<D, StartError>,
{
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},sled=warn,h2=warn,tower=warn",
        args.log_level
    ));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(driver, known, args, open) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-{driver}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run<D, F>(driver: &'static str, known: &[&str], args: Args, open: F) -> Result<(), StartError>
where
    D: Snapshotter,
    F: FnOnce(&Path, &mut StorageOpts) -> Result<D, StartError>,
{
    let mut opts = StorageOpts::parse(&args.storage_opt)?;
    // Drivers make directories with the modes they mean (0755 for a snapshot's root).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    fs::create_dir_all(&args.root).ctx("create root directory", &args.root)?;
    fs::set_permissions(&args.root, fs::Permissions::from_mode(0o711)).ctx("chmod", &args.root)?;
    let root = fs::canonicalize(&args.root).ctx("resolve", &args.root)?;
    let d = open(&root, &mut opts)?;
    opts.finish(driver, known)?;
    let meta = MetaStore::open(&root.join("metadata.db"))?;
    let core = Arc::new(Core::new(meta, Arc::new(d)));
    tracing::info!(root = %root.display(), address = %args.address.display(), snapshots = core.meta().len(), "starting strata-{driver}");
    // One thread: every call is a few microseconds of work (changes are journaled, not
    // flushed), so cross-thread wake-ups would cost more than they save; walks of whole trees
    // go to the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("strata-{driver}"))
        .build()
        .map_err(|e| StartError::Socket(format!("start the async runtime: {e}")))?;
    rt.block_on(serve(core.clone(), &args.address))?;
    core.sync()?;
    tracing::info!("strata-{driver} stopped");
    Ok(())
}

/// Binds `address`, replacing a stale socket but never a live one or another kind of file.
fn bind(address: &Path) -> Result<UnixListener, StartError> {
    if let Some(dir) = address.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).ctx("create socket directory", dir)?;
    }
    match fs::symlink_metadata(address) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(address).is_ok() {
                return Err(StartError::Socket(format!(
                    "another process is already serving on {}",
                    address.display()
                )));
            }
            fs::remove_file(address).ctx("remove stale socket", address)?;
        }
        Ok(_) => {
            return Err(StartError::Socket(format!(
                "refusing to replace {}: it exists and is not a socket",
                address.display()
            )))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(address).ctx("bind", address)?;
    fs::set_permissions(address, fs::Permissions::from_mode(0o600)).ctx("chmod", address)?;
    Ok(listener)
}

async fn serve<D: Snapshotter>(core: Arc<Core<D>>, address: &Path) -> Result<(), StartError> {
    let listener = bind(address)?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SnapshotsServer<SnapshotService<D>>>()
        .await;
    health_reporter
        .set_serving::<DriverServer<DriverService<D>>>()
        .await;
    // Set when a stop signal arrives; in-flight calls then get GRACE to finish.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let shutdown = async move {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!("SIGINT: stopping"),
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(%e, "cannot watch for SIGTERM; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
        signalled.notify_one();
    };
    let server = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(SnapshotsServer::new(SnapshotService::new(core.clone())))
        .add_service(DriverServer::new(DriverService::new(core)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown);
    // A client that keeps a stream open (or a connection idle) must not hold the plugin up:
    // after the grace period it stops anyway. Every change is already safe in the journal.
    let result = tokio::select! {
        r = server => r,
        _ = async { stopping.notified().await; tokio::time::sleep(GRACE).await } => {
            tracing::warn!("calls still in flight after {GRACE:?}; stopping anyway");
            Ok(())
        }
    };
    if let Err(e) = fs::remove_file(address) {
        tracing::warn!(%e, address = %address.display(), "removing the socket failed");
    }
    result.map_err(|e| StartError::Socket(format!("serve on {}: {e}", address.display())))
}
