//! The engine's storage: the snapshotter plugin it starts and supervises (or an
//! already-running snapshotter it is given), and the gRPC clients to it.
//!
//! The plugin runs as `strata-<driver> --root <root>/storage/<driver> --address
//! <run-root>/plugins/<driver>.sock [--storage-opt …]`, found next to `stratad` or on `PATH`.
//! The engine waits for its gRPC health, and if it dies, restarts it with a growing back-off;
//! meanwhile every storage call fails with "storage driver unavailable".
//!
//! Driver selection when none is configured (DESIGN §4): the driver whose state already exists
//! under `<root>/storage`; else the first that starts, in the order overlay2, devicemapper (only
//! when a pool is configured), aufs. A root with state for two drivers must name one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::snapshots::snapshots_client::SnapshotsClient;
use strata_proto::storage::driver_client::DriverClient;
use strata_proto::storage::{CapabilitiesRequest, CapabilitiesResponse, StatusRequest};
use tokio::process::{Child, Command};
use tokio::sync::{watch, Mutex};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::StorageConfig;

/// The drivers Strata has plugins for, in the order they are tried.
pub const DRIVERS: [&str; 3] = ["overlay2", "devicemapper", "aufs"];

/// How long a plugin may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why storage is not available.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No plugin binary for the driver.
    #[error(
        "the {driver} storage plugin (strata-{driver}) is not installed next to stratad or on PATH"
    )]
    NotInstalled {
        /// The driver.
        driver: String,
    },
    /// The plugin did not start.
    #[error("the {driver} storage plugin did not start: {reason}")]
    Start {
        /// The driver.
        driver: String,
        /// What it said, or what went wrong.
        reason: String,
    },
    /// State of several drivers under the root.
    #[error(
        "{root} holds state for the {a} and {b} storage drivers: choose one with --storage-driver"
    )]
    Ambiguous {
        /// The storage root.
        root: String,
        /// One driver.
        a: String,
        /// Another.
        b: String,
    },
    /// No driver works here.
    #[error("no storage driver works on this host: {0}")]
    NoneWorks(String),
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The binary of a driver's plugin (devicemapper's is `strata-devmapper`).
fn plugin_name(driver: &str) -> String {
    match driver {
        "devicemapper" => "strata-devmapper".into(),
        d => format!("strata-{d}"),
    }
}

/// Finds a plugin binary next to this executable, else on PATH.
pub fn find_plugin(driver: &str) -> Option<PathBuf> {
    let name = plugin_name(driver);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(&name)));
    beside.filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(&name))
            .find(|p| p.is_file())
    })
}

/// Connects lazily to a unix socket; tonic reconnects when the plugin comes back.
pub fn unix_channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    // The URI is required by the API but never used: the connector dials the socket.
    Endpoint::from_static("http://[::]:50051").connect_with_connector_lazy(tower::service_fn(
        move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        },
    ))
}

/// A running plugin process and how to restart it.
#[derive(Debug)]
struct Plugin {
    driver: String,
    binary: PathBuf,
    root: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    options: Vec<String>,
    log_level: String,
}

impl Plugin {
    async fn spawn(&self) -> Result<Child, StorageError> {
        fn io<'a>(
            op: &'static str,
            path: &'a Path,
        ) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
            move |source| StorageError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        }
        if let Some(dir) = self.socket.parent() {
            std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io("open plugin log", &self.log))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--address")
            .arg(&self.socket)
            .arg("--log-level")
            .arg(&self.log_level);
        for o in &self.options {
            cmd.arg("--storage-opt").arg(o);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(false);
        cmd.spawn().map_err(|e| StorageError::Start {
            driver: self.driver.clone(),
            reason: format!("run {}: {e}", self.binary.display()),
        })
    }

    /// The last line the plugin wrote that names it (its start error), else the log's tail.
    fn last_error(&self, since: u64) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[(since as usize).min(text.len())..]).into_owned();
        let prefix = format!("{}:", plugin_name(&self.driver));
        text.lines()
            .rev()
            .find(|l| l.starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
            .or_else(|| text.lines().last().map(str::to_string))
            .unwrap_or_else(|| "it exited without saying why".into())
    }

    /// Stops a plugin that an earlier stratad left serving on this socket: a SIGKILLed stratad
    /// leaves its children running, and the new plugin could not take the driver's root while
    /// the old one holds it. Containers do not depend on the plugin process (their root
    /// filesystems stay mounted), so it is replaced rather than adopted.
    async fn stop_leftover(&self) {
        let Ok(conn) = std::os::unix::net::UnixStream::connect(&self.socket) else {
            return;
        };
        let cred = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials);
        drop(conn);
        let Ok(cred) = cred else { return };
        let pid = cred.pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains(&*self.socket.to_string_lossy()) {
            return;
        }
        tracing::warn!(
            pid,
            driver = self.driver,
            "a storage plugin left by an earlier stratad still serves; stopping it"
        );
        let gone = || strata_runtime::state::proc_stat(pid).is_none_or(|s| !s.alive());
        for (sig, wait) in [
            (nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15)),
            (nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            let deadline = Instant::now() + wait;
            while !gone() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if gone() {
                return;
            }
        }
    }

    /// Starts the plugin and waits until it is healthy.
    async fn start(&self, channel: &Channel) -> Result<Child, StorageError> {
        let since = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut child = self.spawn().await?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StorageError::Start {
                    driver: self.driver.clone(),
                    reason: format!("{} ({status})", self.last_error(since)),
                });
            }
            if self.socket.exists() {
                let req = tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                };
                if let Ok(r) = health.check(req).await {
                    if r.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                    {
                        return Ok(child);
                    }
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(StorageError::Start {
                    driver: self.driver.clone(),
                    reason: format!(
                        "not healthy after {START_TIMEOUT:?}; its log is {}",
                        self.log.display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The engine's connection to its storage.
#[derive(Debug, Clone)]
pub struct Storage {
    driver: String,
    channel: Channel,
    available: Arc<AtomicBool>,
    /// Tells the supervisor to stop the plugin.
    stop: Option<watch::Sender<bool>>,
    supervisor: Option<Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>>,
}

impl Storage {
    /// Starts (or connects to) the configured storage.
    pub async fn start(
        cfg: &StorageConfig,
        root: &Path,
        run_root: &Path,
        log_level: &str,
    ) -> Result<Storage, StorageError> {
        if let Some(address) = &cfg.address {
            let driver = cfg.driver.clone().unwrap_or_else(|| "external".into());
            let channel = unix_channel(address);
            return Ok(Storage {
                driver,
                channel,
                available: Arc::new(AtomicBool::new(true)),
                stop: None,
                supervisor: None,
            });
        }
        let storage_root = root.join("storage");
        let candidates: Vec<String> = match &cfg.driver {
            Some(d) => vec![d.clone()],
            None => {
                let existing: Vec<&str> = DRIVERS
                    .iter()
                    .copied()
                    .filter(|d| storage_root.join(d).is_dir())
                    .collect();
                match existing.as_slice() {
                    [a, b, ..] => {
                        return Err(StorageError::Ambiguous {
                            root: storage_root.display().to_string(),
                            a: a.to_string(),
                            b: b.to_string(),
                        })
                    }
                    [one] => vec![one.to_string()],
                    [] => {
                        let pool = cfg.options.iter().any(|o| {
                            o.starts_with("dm.thinpooldev=") || o.starts_with("dm.datadev=")
                        });
                        DRIVERS
                            .iter()
                            .filter(|d| **d != "devicemapper" || pool)
                            .map(|d| d.to_string())
                            .collect()
                    }
                }
            }
        };
        let mut failures = Vec::new();
        for driver in &candidates {
            match Self::start_plugin(driver, cfg, &storage_root, run_root, log_level).await {
                Ok(s) => return Ok(s),
                Err(e) if candidates.len() == 1 => return Err(e),
                Err(e) => {
                    tracing::info!(driver, %e, "storage driver does not work here; trying the next");
                    failures.push(e.to_string());
                }
            }
        }
        Err(StorageError::NoneWorks(failures.join("; ")))
    }

    async fn start_plugin(
        driver: &str,
        cfg: &StorageConfig,
        storage_root: &Path,
        run_root: &Path,
        log_level: &str,
    ) -> Result<Storage, StorageError> {
        let binary = find_plugin(driver).ok_or_else(|| StorageError::NotInstalled {
            driver: driver.into(),
        })?;
        let plugin = Plugin {
            driver: driver.to_string(),
            binary,
            root: storage_root.join(driver),
            socket: run_root.join("plugins").join(format!("{driver}.sock")),
            log: run_root.join("plugins").join(format!("{driver}.log")),
            options: cfg.options.clone(),
            log_level: log_level.to_string(),
        };
        let channel = unix_channel(&plugin.socket);
        plugin.stop_leftover().await;
        let child = plugin.start(&channel).await;
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                // A driver that failed to start leaves no state behind, so selection is not
                // fooled into choosing it next time.
                let _ = std::fs::remove_dir(&plugin.root);
                return Err(e);
            }
        };
        tracing::info!(driver, root = %plugin.root.display(), socket = %plugin.socket.display(), "storage plugin started");
        let available = Arc::new(AtomicBool::new(true));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            plugin,
            child,
            channel.clone(),
            available.clone(),
            stop_rx,
        ));
        Ok(Storage {
            driver: driver.to_string(),
            channel,
            available,
            stop: Some(stop_tx),
            supervisor: Some(Arc::new(Mutex::new(Some(task)))),
        })
    }

    /// The driver's name.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Whether the plugin is up (false while it is being restarted).
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// A snapshots client.
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    /// A driver client.
    pub fn driver_client(&self) -> DriverClient<Channel> {
        DriverClient::new(self.channel.clone())
    }

    /// The driver's status rows (empty for a snapshotter without Strata's driver API).
    pub async fn status(&self) -> Vec<(String, String)> {
        match self.driver_client().status(StatusRequest {}).await {
            Ok(r) => r
                .into_inner()
                .rows
                .into_iter()
                .map(|r| (r.key, r.value))
                .collect(),
            Err(e) => vec![("Status".into(), format!("unavailable: {}", e.message()))],
        }
    }

    /// The driver's capabilities; a snapshotter without Strata's driver API is assumed to
    /// want its layers applied through mounts.
    pub async fn capabilities(&self) -> CapabilitiesResponse {
        match self
            .driver_client()
            .capabilities(CapabilitiesRequest {})
            .await
        {
            Ok(r) => r.into_inner(),
            Err(_) => CapabilitiesResponse {
                driver: self.driver.clone(),
                ..Default::default()
            },
        }
    }

    /// Stops the plugin (SIGTERM, then SIGKILL after 10 s) and its supervisor.
    pub async fn shutdown(&self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(true);
        }
        if let Some(sup) = &self.supervisor {
            if let Some(task) = sup.lock().await.take() {
                let _ = task.await;
            }
        }
    }
}

/// Turns a failed storage call into the error a user sees.
pub fn unavailable(storage: &Storage, status: &tonic::Status) -> Option<String> {
    (!storage.is_available() || status.code() == tonic::Code::Unavailable).then(|| {
        format!(
            "storage driver unavailable ({}): {}",
            storage.driver(),
            status.message()
        )
    })
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn supervise(
    plugin: Plugin,
    mut child: Child,
    channel: Channel,
    available: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                terminate(&mut child).await;
                return;
            }
            status = child.wait() => {
                available.store(false, Ordering::Relaxed);
                tracing::error!(driver = plugin.driver, ?status, "storage plugin exited; restarting");
            }
        }
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            match plugin.start(&channel).await {
                Ok(c) => {
                    child = c;
                    available.store(true, Ordering::Relaxed);
                    tracing::info!(driver = plugin.driver, "storage plugin restarted");
                    backoff = Duration::from_millis(100);
                    break;
                }
                Err(e) => {
                    tracing::error!(driver = plugin.driver, %e, "restarting the storage plugin failed");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
