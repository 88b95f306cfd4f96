//! `strata-monitor`: watches one container for the engine (see `strata_engine::container::monitor`).

use std::path::PathBuf;

use clap::Parser;
use strata_engine::container::monitor::{self, MonitorArgs};

#[derive(Debug, Parser)]
#[command(about = "Runs and watches one container for stratad (not for direct use)")]
struct Args {
    /// Start ahead of time and wait on stdin (a socket) for the engine to send the container.
    #[arg(long, conflicts_with_all = ["id", "attached", "tty", "stdin"])]
    spare: bool,
    #[arg(long, required_unless_present = "spare")]
    id: Option<String>,
    #[arg(long, required_unless_present = "spare")]
    bundle: Option<PathBuf>,
    #[arg(long, required_unless_present = "spare")]
    runtime_root: Option<PathBuf>,
    #[arg(long, required_unless_present = "spare")]
    log: Option<PathBuf>,
    #[arg(long, required_unless_present = "spare")]
    state_dir: Option<PathBuf>,
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
    /// Host ports to publish, as JSON (a list of port bindings).
    #[arg(long, value_parser = parse_ports)]
    ports: Option<Ports>,
    /// How the output is logged, as JSON (driver none, rotation size and files).
    #[arg(long, value_parser = parse_logging)]
    logging: Option<Logging>,
}

/// `--ports`' value.
#[derive(Debug, Clone)]
struct Ports(Vec<strata_engine::container::ports::PortBinding>);

/// `--logging`' value.
#[derive(Debug, Clone)]
struct Logging(strata_engine::container::logconf::LogConfig);

fn parse_logging(s: &str) -> Result<Logging, String> {
    serde_json::from_str(s)
        .map(Logging)
        .map_err(|e| format!("invalid logging {s:?}: {e}"))
}

fn parse_ports(s: &str) -> Result<Ports, String> {
    serde_json::from_str(s)
        .map(Ports)
        .map_err(|e| format!("invalid ports {s:?}: {e}"))
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid size {s:?}: expected ROWSxCOLS");
    let (r, c) = s.split_once('x').ok_or_else(bad)?;
    Ok((r.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?))
}

fn init_log(state_dir: &std::path::Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("monitor.log"));
    if let Ok(f) = log {
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .init();
    }
}

fn main() {
    let a = Args::parse();
    if a.spare {
        // SAFETY: a spare's stdin is its job socket, which nothing else in this process owns.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(0) };
        let job = monitor::receive_job(&sock);
        // A held container waits for the engine's `go` on the socket: keep it, off fd 0
        // (close-on-exec, so the container does not inherit it).
        let hold = match &job {
            Ok(Some(r)) if r.hold => match sock.try_clone() {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("strata-monitor: keeping the job socket: {e}");
                    std::process::exit(1);
                }
            },
            _ => None,
        };
        drop(sock);
        // Descriptor 0 is free now: /dev/null takes it, or the next file opened would.
        if let Ok(null) = std::fs::File::open("/dev/null") {
            // SAFETY: dup2 onto the standard input of this single-threaded process.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) };
        }
        let code = match job {
            Ok(Some(monitor::Received {
                args,
                status,
                attached,
                ..
            })) => {
                init_log(&args.state_dir);
                // Its command line does not name the container; its working directory does, so
                // that a restarted engine recognizes it (the engine's paths are absolute).
                if let Err(e) = std::env::set_current_dir(&args.state_dir) {
                    tracing::warn!(%e, "entering the container's directory failed");
                }
                monitor::run(&args, status, attached, hold)
            }
            // The engine stopped before it needed this monitor.
            Ok(None) => 0,
            Err(e) => {
                eprintln!("strata-monitor: receiving the container from stratad: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let (Some(id), Some(bundle), Some(runtime_root), Some(log), Some(state_dir)) =
        (a.id, a.bundle, a.runtime_root, a.log, a.state_dir)
    else {
        eprintln!(
            "strata-monitor: --id, --bundle, --runtime-root, --log and --state-dir are required"
        );
        std::process::exit(2);
    };
    init_log(&state_dir);
    // SAFETY: first thing in this process that opens descriptors past the log; stratad passes
    // the status pipe as fd 3.
    let fd3 = unsafe { monitor::status_fd() };
    // SAFETY: likewise, with --attached stratad passes the client's socket as fd 4.
    let attached = a.attached.then(|| unsafe { monitor::attach_fd() });
    let code = monitor::run(
        &MonitorArgs {
            id,
            bundle,
            runtime_root,
            log,
            state_dir,
            tty: a.tty,
            stdin: a.stdin,
            console_size: a.console_size,
            ports: a.ports.map(|p| p.0).unwrap_or_default(),
            logging: a.logging.map(|l| l.0).unwrap_or_default(),
        },
        fd3,
        attached,
        None,
    );
    std::process::exit(code);
}
