//! Containers: records in sled, a root filesystem from the storage driver, a spec, a monitor
//! process running it with `strata-runtime`, and the lifecycle verbs.
//!
//! Each container has a directory `<root>/containers/<id>/` holding the OCI bundle
//! (`config.json`, `rootfs/` where the snapshot is mounted while it runs), its json-lines log,
//! and what its monitor records (`exit.json`, `monitor.log`). Its root filesystem is the
//! active snapshot `strata/container/<id>` on the image's top layer.

pub mod attach;
pub mod copy;
pub mod diff;
pub mod etc;
pub mod exec;
pub mod health;
pub mod inspect;
pub mod logconf;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod pool;
pub mod ports;
pub mod proxy;
pub mod record;
pub mod restart;
pub mod spare;
pub mod spec;
pub mod stats;
pub mod top;
pub mod user;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strata_proto::snapshots::{MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest};
use tokio::sync::{watch, Mutex};

use crate::events::Events;
use crate::storage::Storage;
use crate::volume::Volumes;
use record::{Record, RecordError, Records, Settings, State, Status};
use spec::ImageDefaults;

/// What a container's image resolved to.
#[derive(Debug, Clone, Default)]
pub struct ResolvedImage {
    /// sha256:… of its config.
    pub id: String,
    /// The reference as the user gave it (normalized).
    pub reference: String,
    /// Its config's defaults.
    pub defaults: ImageDefaults,
    /// The chain id of its top layer ("" for no layers), which the current driver may not
    /// have yet (see [`ContainerError::LayersMissing`]).
    pub chain: String,
}

/// Container failures, each mapping to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("invalid signal {0:?}: use a name like TERM or SIGKILL, or a number")]
    InvalidSignal(String),
    #[error("{0}")]
    RestartPolicy(String),
    #[error("container {name} is {status}: {hint}")]
    State {
        name: String,
        status: &'static str,
        hint: &'static str,
    },
    #[error("storage: {0}")]
    Storage(String),
    /// The image's layers are not (all) in the storage driver: unpack them and create again.
    #[error("storage: the image's layers are not unpacked: {0}")]
    LayersMissing(String),
    #[error("start container {name}: {message}")]
    Start { name: String, message: String },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(String),
    #[error(transparent)]
    Top(#[from] top::TopError),
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error(transparent)]
    Mount(#[from] crate::volume::mounts::MountError),
    #[error(transparent)]
    Etc(#[from] etc::EtcError),
}

impl From<ContainerError> for tonic::Status {
    fn from(e: ContainerError) -> Self {
        e.to_status()
    }
}

/// The metadata key of a start's failure status that names the exit code `strata run` gives
/// for it, as Docker's: 127 when the command is not there, 126 when it cannot be run.
pub const EXIT_CODE_KEY: &str = "strata-exit-code";

/// The exit code of a failure to run a container's command (from the runtime's message), if
/// the command was the problem: 127 for a missing program, 126 for one that cannot be run.
pub fn command_failure_code(message: &str) -> Option<i32> {
    if message.contains("executable file not found") {
        Some(127)
    } else if message.contains("exec: ") && message.contains("permission denied") {
        Some(126)
    } else {
        None
    }
}

impl ContainerError {
    /// The gRPC status for this error.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        if let ContainerError::Volume(v) = self {
            return v.to_status();
        }
        if let ContainerError::Start { message, .. } = self {
            if let Some(code) = command_failure_code(message) {
                let mut st = tonic::Status::failed_precondition(self.to_string());
                if let Ok(v) = code.to_string().parse() {
                    st.metadata_mut().insert(EXIT_CODE_KEY, v);
                }
                return st;
            }
        }
        let code = match self {
            ContainerError::Record(RecordError::NotFound(_)) => Code::NotFound,
            ContainerError::Record(RecordError::NameInUse { .. }) => Code::AlreadyExists,
            ContainerError::Record(RecordError::Ambiguous { .. }) => Code::InvalidArgument,
            ContainerError::Spec(_)
            | ContainerError::InvalidName(_)
            | ContainerError::InvalidSignal(_)
            | ContainerError::RestartPolicy(_)
            | ContainerError::Mount(_)
            | ContainerError::Etc(_) => Code::InvalidArgument,
            ContainerError::State { .. } => Code::FailedPrecondition,
            ContainerError::Top(top::TopError::BadPid(_)) => Code::Internal,
            ContainerError::Top(_) => Code::InvalidArgument,
            ContainerError::Copy(c) => c.code(),
            ContainerError::Storage(m) if m.starts_with("storage driver unavailable") => {
                Code::Unavailable
            }
            _ => Code::Internal,
        };
        tonic::Status::new(code, self.to_string())
    }
}

type Result<T, E = ContainerError> = std::result::Result<T, E>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn storage_err(storage: &Storage, what: &str, s: tonic::Status) -> ContainerError {
    ContainerError::Storage(
        crate::storage::unavailable(storage, &s)
            .unwrap_or_else(|| format!("{what}: {}", s.message())),
    )
}

/// The snapshot key of a container's root filesystem.
pub fn snapshot_key(id: &str) -> String {
    format!("strata/container/{id}")
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn generated_name(id: &str) -> String {
    const LEFT: [&str; 16] = [
        "brave", "calm", "eager", "fervent", "gallant", "happy", "jolly", "keen", "lucid",
        "modest", "nifty", "quirky", "serene", "sharp", "vibrant", "zealous",
    ];
    const RIGHT: [&str; 16] = [
        "babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "knuth", "lovelace",
        "meitner", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak",
    ];
    let b = hex::decode(&id[..4]).unwrap_or_default();
    let (l, r) = (
        b.first().copied().unwrap_or(0) as usize % 16,
        b.get(1).copied().unwrap_or(0) as usize % 16,
    );
    format!("{}_{}_{}", LEFT[l], RIGHT[r], &id[4..8])
}

/// The engine's containers.
#[derive(Debug)]
pub struct Containers {
    records: Records,
    storage: Storage,
    dir: PathBuf,
    runtime_root: PathBuf,
    monitor: PathBuf,
    watchers: std::sync::Mutex<HashMap<String, watch::Sender<State>>>,
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    events: Arc<Events>,
    /// Restart-policy bookkeeping of the containers the engine has run (see restart.rs).
    restarts: std::sync::Mutex<HashMap<String, Restarts>>,
    volumes: Arc<Volumes>,
    spares: spare::Spares,
    /// Held for each container while its monitor process lives, which may be a little after
    /// the container's exit is recorded: a new start waits for it.
    monitors: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Containers made ahead of time (see pool.rs).
    pool: pool::Pool,
    /// Containers taken from the pool and not yet started: their monitors hold them created.
    held: std::sync::Mutex<HashMap<String, pool::Held>>,
}

/// What the engine keeps in memory about a container's restarts.
#[derive(Debug, Default)]
struct Restarts {
    /// When its current run started (unknown for runs started by an earlier engine).
    started: Option<std::time::Instant>,
    backoff: restart::Backoff,
    /// Cancels the pending restart, if one is pending.
    pending: Option<Arc<tokio::sync::Notify>>,
}

impl Containers {
    /// The containers under `root/containers`, run with state under `run_root/runtime`.
    pub fn open(
        db: &sled::Db,
        storage: Storage,
        root: &Path,
        run_root: &Path,
        events: Arc<Events>,
    ) -> Result<Arc<Self>> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("strata-monitor")));
        let on_path = || {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join("strata-monitor"))
                .find(|p| p.is_file())
        };
        let monitor = beside
            .filter(|p| p.is_file())
            .or_else(on_path)
            .ok_or_else(|| {
                ContainerError::Runtime(
                    "strata-monitor is not installed next to stratad or on PATH".into(),
                )
            })?;
        let records = Records::open(db)?;
        let volumes = Volumes::open(db, root, events.clone(), records.clone())?;
        Ok(Arc::new(Containers {
            records,
            storage,
            dir,
            runtime_root: run_root.join("runtime"),
            monitor: monitor.clone(),
            watchers: Default::default(),
            locks: Default::default(),
            events,
            restarts: Default::default(),
            volumes,
            spares: spare::Spares::new(monitor.clone()),
            monitors: Default::default(),
            pool: Default::default(),
            held: Default::default(),
        }))
    }

    /// The engine's event stream.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// The engine's volumes.
    pub fn volumes(&self) -> &Arc<Volumes> {
        &self.volumes
    }

    /// Emits a container event with Docker's attributes (name, image, labels).
    pub fn emit(&self, rec: &Record, action: &str) {
        self.emit_with(rec, action, []);
    }

    /// Emits a container event with more attributes (exitCode of die, signal of kill, …).
    pub fn emit_with<'a>(
        &self,
        rec: &'a Record,
        action: &str,
        extra: impl IntoIterator<Item = (&'a str, String)>,
    ) {
        let labels = rec.settings.labels.iter().map(|l| match l.split_once('=') {
            Some((k, v)) => (k, v.to_string()),
            None => (l.as_str(), String::new()),
        });
        let attrs = [("name", rec.name.clone()), ("image", rec.image_ref.clone())];
        self.events.emit(
            "container",
            action,
            &rec.id,
            attrs.into_iter().chain(labels).chain(extra),
        );
    }

    /// The records (for listing and image-use checks).
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// A container's directory (its bundle).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Its json-lines log.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.bundle(id).join(format!("{id}-json.log"))
    }

    fn lock(&self, id: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn notify(&self, rec: &Record) {
        let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w
            .entry(rec.id.clone())
            .or_insert_with(|| watch::channel(rec.state.clone()).0);
        tx.send_replace(rec.state.clone());
    }

    /// Subscribes to a container's state changes.
    pub fn subscribe(&self, rec: &Record) -> watch::Receiver<State> {
        let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(rec.id.clone())
            .or_insert_with(|| watch::channel(rec.state.clone()).0)
            .subscribe()
    }

    /// The mounts of a container's root filesystem, from the storage driver.
    async fn rootfs_mounts(&self, rec: &Record) -> Result<Vec<strata_proto::types::Mount>> {
        let req = MountsRequest {
            key: rec.snapshot.clone(),
            ..Default::default()
        };
        match self.storage.snapshots().mounts(req).await {
            Ok(r) => Ok(r.into_inner().mounts),
            Err(e) => Err(storage_err(
                &self.storage,
                "mounts of the root filesystem",
                e,
            )),
        }
    }

    /// Finds a container by name or id (prefix).
    pub fn resolve(&self, query: &str) -> Result<Record> {
        Ok(self.records.resolve(query)?)
    }

    /// Creates a container; nothing is left behind if it fails.
    pub async fn create(
        self: &Arc<Self>,
        image: &ResolvedImage,
        name: &str,
        s: Settings,
    ) -> Result<Record> {
        if !name.is_empty() && !valid_name(name) {
            return Err(ContainerError::InvalidName(name.to_string()));
        }
        // Refuse bad flags before anything is made, and resolve what comes from the image.
        let args = spec::command(&image.defaults, &s)?;
        let mut s = s;
        s.env = spec::environment(&image.defaults, &s)?;
        if s.working_dir.is_empty() {
            s.working_dir = image.defaults.working_dir.clone();
        }
        if s.user.is_empty() {
            s.user = image.defaults.user.clone();
        }
        s.image_volumes = image.defaults.volumes.clone();
        s.image_healthcheck = image.defaults.healthcheck.clone();
        s.image_exposed = image.defaults.exposed.clone();
        if s.stop_signal.is_empty() {
            s.stop_signal = image.defaults.stop_signal.clone();
        }
        spec::check_options(&s)?;
        let (entrypoint, cmd) = spec::entrypoint_and_cmd(&image.defaults, &s);
        (s.config_entrypoint, s.config_cmd) = (Some(entrypoint), Some(cmd));
        spec::capabilities(&s)?;
        let planned_mounts = self.plan_mounts(&mut s, &image.defaults.volumes)?;
        let policy =
            restart::Policy::parse(&s.restart_policy).map_err(ContainerError::RestartPolicy)?;
        if s.auto_remove && policy.restarts() {
            return Err(ContainerError::RestartPolicy(format!(
                "conflicting options: --restart {} and --rm (a container removed when it exits cannot be restarted)",
                s.restart_policy
            )));
        }
        let id = hex::encode(rand::random::<[u8; 32]>());
        let name = if name.is_empty() {
            generated_name(&id)
        } else {
            name.to_string()
        };
        if let Ok(other) = self.records.resolve(&name) {
            if other.name == name {
                return Err(RecordError::NameInUse { name, id: other.id }.into());
            }
        }
        let rec = Record {
            id: id.clone(),
            name,
            image_id: image.id.clone(),
            image_ref: image.reference.clone(),
            path: args[0].clone(),
            args: args[1..].to_vec(),
            created: strata_runtime::state::now_rfc3339(),
            snapshot: snapshot_key(&id),
            driver: self.storage.driver().to_string(),
            settings: s,
            state: State::default(),
        };
        // A container made ahead of time for the same image and settings, if the warm pool
        // has one (see pool.rs); the next one is made for the create after this.
        let warm = pool::key(&rec, &planned_mounts);
        if let Some(key) = &warm {
            if let Some(claimed) = self.claim_warm(key, &rec).await? {
                self.want_warm(key, &rec, &image.chain);
                return Ok(claimed);
            }
        }
        let bundle = self.bundle(&id);
        std::fs::create_dir_all(bundle.join("rootfs")).map_err(io("create directory", &bundle))?;
        let made = async {
            self.prepare_rootfs(&rec, &image.chain).await?;
            let recorded = match self.make_mounts(&rec, planned_mounts).await {
                Ok(volumes) => self
                    .records
                    .insert(&rec)
                    .map(|()| self.keep_created(&rec))
                    .map_err(|e| {
                        self.unmake_mounts(&rec.id, &volumes);
                        ContainerError::from(e)
                    }),
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                let _ = self
                    .storage
                    .snapshots()
                    .remove(RemoveSnapshotRequest {
                        key: rec.snapshot.clone(),
                        ..Default::default()
                    })
                    .await;
                return Err(e);
            }
            Ok(())
        }
        .await;
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&bundle);
            return Err(e);
        }
        self.notify(&rec);
        self.emit(&rec, "create");
        if let Some(key) = &warm {
            self.want_warm(key, &rec, &image.chain);
        }
        Ok(rec)
    }

    /// Creates the log of the container of `rec` in its directory (which exists) and prepares
    /// its snapshot on the image's top layer `chain`.
    async fn prepare_rootfs(&self, rec: &Record, chain: &str) -> Result<()> {
        let bundle = self.bundle(&rec.id);
        std::fs::File::create(self.log_path(&rec.id)).map_err(io("create log", &bundle))?;
        let req = PrepareSnapshotRequest {
            key: rec.snapshot.clone(),
            parent: chain.to_string(),
            ..Default::default()
        };
        self.storage
            .snapshots()
            .prepare(req)
            .await
            .map_err(|e| match e.code() {
                tonic::Code::NotFound if !chain.is_empty() => {
                    ContainerError::LayersMissing(e.message().to_string())
                }
                _ => storage_err(&self.storage, "prepare the root filesystem", e),
            })?;
        Ok(())
    }

    /// Mounts the root filesystem, writes the spec and starts the monitor.
    pub async fn start(self: &Arc<Self>, query: &str) -> Result<Record> {
        let rec = self.resolve(query)?;
        let lock = self.lock(&rec.id);
        let g = lock.lock().await;
        let mut rec = self
            .records
            .get(&rec.id)?
            .ok_or_else(|| RecordError::NotFound(query.into()))?;
        match rec.state.status {
            Status::Created | Status::Exited => {}
            Status::Running | Status::Paused => {
                return Err(ContainerError::State {
                    name: rec.name,
                    status: "running",
                    hint: "it is already started",
                })
            }
            Status::Restarting => {
                return Err(ContainerError::State {
                    name: rec.name,
                    status: "restarting",
                    hint: "its restart policy starts it again; stop it first",
                })
            }
            Status::Dead => {
                return Err(ContainerError::State {
                    name: rec.name,
                    status: "dead",
                    hint: "remove it",
                })
            }
        }
        // A start by hand forgets the restarts and the stop by hand before it.
        rec.state.restart_count = 0;
        rec.state.manually_stopped = false;
        self.restarts_of(&rec.id, |r| r.backoff = restart::Backoff::default());
        let (id, auto_remove) = (rec.id.clone(), rec.settings.auto_remove);
        let started = self.run(rec).await;
        if started.is_err() && auto_remove {
            // As Docker: an `--rm` container that could not start is removed.
            drop(g);
            if let Err(e) = self.remove(&id, true).await {
                tracing::warn!(%e, id, "removing an --rm container that did not start failed");
            }
        }
        started
    }

    /// Starts the container of `rec` (whose lock the caller holds) and watches its monitor.
    async fn run(self: &Arc<Self>, mut rec: Record) -> Result<Record> {
        let bundle = self.bundle(&rec.id);
        let rootfs = bundle.join("rootfs");
        let mut held = self.take_held(&rec.id);
        if let Some(mut h) = held.take() {
            if h.monitor_alive() {
                held = Some(h);
            } else {
                // Its monitor died while holding it: start it as any created container.
                tracing::warn!(
                    id = rec.id,
                    "the monitor holding a container made ahead of time died"
                );
                self.release_held(&rec.id, h).await;
                self.kill_orphan(&rec.id).await;
            }
        }
        let started = match held {
            // Made ahead of time: its monitor holds it, created, until told to start it.
            Some(held) => self.release_to_start(&rec, held).await,
            None => {
                let mounts = self.rootfs_mounts(&rec).await?;
                self.launch(&rec, &mounts, &bundle, &rootfs).await
            }
        };
        match started {
            Ok(Launched {
                pid,
                child,
                status,
                slot,
            }) => {
                rec.state = State {
                    status: Status::Running,
                    pid,
                    monitor_pid: child.id().unwrap_or(0) as i32,
                    ports: if publishes(&rec.settings) {
                        std::fs::read(monitor::ports_file(&bundle))
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    health: health::effective(&rec.settings).map(|_| health::Health {
                        status: "starting".into(),
                        ..Default::default()
                    }),
                    started_at: strata_runtime::state::now_rfc3339(),
                    restart_count: rec.state.restart_count,
                    manually_stopped: rec.state.manually_stopped,
                    ..State::default()
                };
                self.records.update(&rec)?;
                self.restarts_of(&rec.id, |r| r.started = Some(std::time::Instant::now()));
                self.notify(&rec);
                self.emit(&rec, "start");
                self.watch_health(&rec.id, &rec.state.started_at);
                let me = self.clone();
                let id = rec.id.clone();
                // The slot is held until the monitor is done with the container: it closes the
                // status pipe after deleting the runtime's state and cgroups, or it ends.
                let slot = Arc::new(std::sync::Mutex::new(Some(slot)));
                let release = move |slot: &std::sync::Mutex<Option<_>>| {
                    slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                };
                let on_exit = slot.clone();
                tokio::spawn(async move {
                    let mut child = child;
                    let _ = child.wait().await;
                    release(&on_exit);
                });
                tokio::spawn(async move {
                    // The monitor says `exit` once the exit is recorded, before it cleans up
                    // after the container; or the pipe ends with the monitor.
                    let mut status = status;
                    let mut line = String::new();
                    let exit = tokio::io::AsyncBufReadExt::read_line(&mut status, &mut line);
                    tokio::pin!(exit);
                    // The next start's monitor is made once this container has run a while,
                    // or has ended and been dealt with: not on the way of a short run's exit.
                    tokio::select! {
                        _ = &mut exit => {}
                        _ = tokio::time::sleep(spare::REFILL_AFTER) => {
                            me.spares.refill();
                            let _ = exit.await;
                        }
                    }
                    tokio::spawn(async move {
                        let mut rest = Vec::new();
                        let _ = tokio::io::AsyncReadExt::read_to_end(&mut status, &mut rest).await;
                        release(&slot);
                    });
                    me.exited(&id).await;
                    me.spares.refill();
                });
                Ok(rec)
            }
            Err(e) => {
                self.spares.refill();
                if let Err(ue) = strata_snapshotter::mount::unmount_all(&rootfs) {
                    tracing::warn!(%ue, "unmounting after a failed start");
                }
                self.release_mounts(&rec.id);
                rec.state.error = e.to_string();
                let _ = self.records.update(&rec);
                Err(e)
            }
        }
    }

    async fn launch(
        &self,
        rec: &Record,
        mounts: &[strata_proto::types::Mount],
        bundle: &Path,
        rootfs: &Path,
    ) -> Result<Launched> {
        let start_err = |message: String| ContainerError::Start {
            name: rec.name.clone(),
            message,
        };
        self.write_bundle(rec, mounts, bundle, rootfs)?;
        let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| start_err(format!("pipe: {e}")))?;
        let slot = self.take_monitor_slot(rec).await?;
        // A client attached before the start (`run -it`, `start -a`) sees all of the output.
        let pre = attach::take_preattached(&rec.id);
        let args = self.monitor_args(rec, bundle, pre.as_ref().and_then(|p| p.size));
        let attached = pre.as_ref().map(|p| p.conn.as_raw_fd());
        let child = match self.spares.start(&args, &status_w, attached) {
            Some(child) => child,
            None => {
                let mut line = args.to_command_line();
                if attached.is_some() {
                    line.push("--attached".into());
                }
                spare::spawn_monitor(&self.monitor, &line, status_w.as_raw_fd(), attached)
                    .map_err(|e| start_err(format!("run {}: {e}", self.monitor.display())))?
            }
        };
        drop(status_w);
        drop(pre);
        let status = status_pipe(status_r).map_err(start_err)?;
        Launched::when_started(status, child, slot)
            .await
            .map_err(start_err)
    }

    /// What the monitor of the container of `rec` is given.
    fn monitor_args(
        &self,
        rec: &Record,
        bundle: &Path,
        console_size: Option<(u16, u16)>,
    ) -> monitor::MonitorArgs {
        monitor::MonitorArgs {
            id: rec.id.clone(),
            bundle: bundle.to_path_buf(),
            runtime_root: self.runtime_root.clone(),
            log: self.log_path(&rec.id),
            state_dir: bundle.to_path_buf(),
            tty: rec.settings.tty,
            stdin: rec.settings.open_stdin,
            console_size,
            // Validated at create; in the host's network, ports are not published (Docker
            // discards them with a warning).
            ports: if rec.settings.network_mode == "host" {
                Vec::new()
            } else {
                ports::effective(&rec.settings)
            },
            logging: logconf::parse(&rec.settings.log_driver, &rec.settings.log_opts)
                .unwrap_or_default(),
        }
    }

    /// The container's monitor slot, once the monitor of its previous run (which may still be
    /// cleaning up after it) has let it go.
    async fn take_monitor_slot(&self, rec: &Record) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        let slot = self.monitor_slot(&rec.id);
        tokio::time::timeout(MONITOR_EXIT_WAIT, slot.lock_owned())
            .await
            .map_err(|_| ContainerError::Start {
                name: rec.name.clone(),
                message: format!(
                    "the monitor of its previous run has not finished after {MONITOR_EXIT_WAIT:?}"
                ),
            })
    }

    /// Mounts the root filesystem of the container of `rec` and writes its spec: all of a
    /// start that comes before its monitor.
    fn write_bundle(
        &self,
        rec: &Record,
        mounts: &[strata_proto::types::Mount],
        bundle: &Path,
        rootfs: &Path,
    ) -> Result<()> {
        let start_err = |message: String| ContainerError::Start {
            name: rec.name.clone(),
            message,
        };
        strata_snapshotter::mount::unmount_all(rootfs).map_err(|e| start_err(e.to_string()))?;
        strata_snapshotter::mount::mount_all(mounts, rootfs)
            .map_err(|e| start_err(e.to_string()))?;
        // The process, environment, working dir and user were resolved against the image at
        // create; the spec is built from the record alone.
        let user = user::resolve(&rec.settings.user, rootfs)
            .and_then(|u| user::add_groups(u, &rec.settings.group_add, rootfs))
            .map_err(start_err)?;
        if !rec.settings.working_dir.is_empty() {
            // Docker makes a missing working directory.
            make_dir_in(rootfs, &rec.settings.working_dir, user.uid, user.gid)
                .map_err(start_err)?;
        }
        let defaults = ImageDefaults {
            entrypoint: std::iter::once(rec.path.clone())
                .chain(rec.args.iter().cloned())
                .collect(),
            ..Default::default()
        };
        let mut settings = rec.settings.clone();
        settings.cmd.clear();
        settings.entrypoint = None;
        if settings.tty && !settings.env.iter().any(|e| e.starts_with("TERM=")) {
            // As Docker: a terminal comes with a TERM.
            settings.env.push("TERM=xterm".into());
        }
        let inputs = spec::SpecInputs {
            id: &rec.id,
            rootfs: &rootfs.to_string_lossy(),
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
            cgroups_path: format!("/strata/{}", rec.id),
            prepared: self.prepare_mounts(rec)?,
        };
        let spec = spec::build(&defaults, &settings, &inputs)?;
        let config = bundle.join("config.json");
        std::fs::write(
            &config,
            serde_json::to_vec_pretty(&spec).unwrap_or_default(),
        )
        .map_err(io("write", &config))?;
        let _ = std::fs::remove_file(monitor::exit_file(bundle));
        if publishes(&rec.settings) {
            let _ = std::fs::remove_file(monitor::ports_file(bundle));
        }
        Ok(())
    }

    /// Called when a container's monitor exits: records the exit, cleans up and applies the
    /// restart policy.
    async fn exited(self: &Arc<Self>, id: &str) {
        self.exited_as(id, false).await
    }

    /// `while_down`: the exit happened while the engine was not running (found at its start).
    async fn exited_as(self: &Arc<Self>, id: &str, while_down: bool) {
        let lock = self.lock(id);
        let g = lock.lock().await;
        let Ok(Some(mut rec)) = self.records.get(id) else {
            return;
        };
        if !matches!(rec.state.status, Status::Running | Status::Paused) {
            return;
        }
        let bundle = self.bundle(id);
        match monitor::read_exit(&bundle) {
            Some(x) => {
                rec.state.exit_code = x.exit_code;
                rec.state.oom_killed = x.oom_killed;
                rec.state.finished_at = x.finished_at;
            }
            None => {
                // Nothing owns the container's processes and output any more: they are
                // killed, as containerd does when a shim dies.
                let killed = self.kill_orphan(id).await;
                rec.state.exit_code = if killed { 137 } else { 255 };
                rec.state.error = if killed {
                    "the container's monitor died; its processes were killed".into()
                } else {
                    "the container's monitor died before recording its exit".into()
                };
                rec.state.finished_at = strata_runtime::state::now_rfc3339();
            }
        }
        if let Err(e) = strata_snapshotter::mount::unmount_all(&bundle.join("rootfs")) {
            tracing::warn!(%e, id, "unmounting the root filesystem failed");
        }
        self.release_mounts(id);
        let again = self.restarts_after(&rec, while_down);
        rec.state.status = if again.is_some() {
            rec.state.restart_count += 1;
            Status::Restarting
        } else {
            Status::Exited
        };
        rec.state.pid = 0;
        rec.state.monitor_pid = 0;
        rec.state.ports.clear();
        // An `--rm` container's record is removed (and that flushed) in a moment.
        let recorded = if rec.settings.auto_remove && again.is_none() {
            self.records.update_unflushed(&rec)
        } else {
            self.records.update(&rec)
        };
        if let Err(e) = recorded {
            tracing::error!(%e, id, "recording a container's exit failed");
        }
        self.notify(&rec);
        if rec.state.oom_killed {
            self.emit(&rec, "oom");
        }
        self.emit_with(&rec, "die", [("exitCode", rec.state.exit_code.to_string())]);
        if let Some(delay) = again {
            self.schedule_restart(id, delay);
        }
        drop(g);
        if rec.settings.auto_remove {
            if let Err(e) = self.remove(id, true).await {
                tracing::error!(%e, id, "removing an exited --rm container failed");
            }
        }
    }

    /// Kills the processes of a container whose monitor died and deletes its runtime state;
    /// false if it had none.
    async fn kill_orphan(&self, id: &str) -> bool {
        let (root, id) = (self.runtime_root.clone(), id.to_string());
        let done = tokio::task::spawn_blocking(move || {
            let c = strata_runtime::Container::load(&root, &id).ok()?;
            if let Err(e) = c.delete(true) {
                tracing::error!(%e, id, "killing the processes of a container without a monitor failed");
            }
            Some(())
        })
        .await;
        matches!(done, Ok(Some(())))
    }

    /// Sends a signal to the container's processes (a paused one is thawed after SIGTERM or
    /// SIGKILL, so that it can act on it).
    pub fn signal(&self, rec: &Record, sig: nix::sys::signal::Signal, all: bool) -> Result<()> {
        let mut c = strata_runtime::Container::load(&self.runtime_root, &rec.id)
            .map_err(|e| ContainerError::Runtime(e.to_string()))?;
        c.kill(sig, all)
            .map_err(|e| ContainerError::Runtime(e.to_string()))?;
        let ending = matches!(
            sig,
            nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGTERM
        );
        if ending && rec.state.status == Status::Paused {
            // Frozen processes act on the signal only once thawed.
            c.resume()
                .map_err(|e| ContainerError::Runtime(e.to_string()))?;
        }
        Ok(())
    }

    /// Waits (at most `timeout`, if given) until the container is not running; returns its state.
    pub async fn wait_stopped(&self, rec: &Record, timeout: Option<Duration>) -> Option<State> {
        let mut rx = self.subscribe(rec);
        let fut = async {
            loop {
                let st = rx.borrow_and_update().clone();
                if !matches!(st.status, Status::Running | Status::Paused) {
                    return st;
                }
                if rx.changed().await.is_err() {
                    return st;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.ok(),
            None => Some(fut.await),
        }
    }

    /// Waits for the container's next exit (a created container: after it has run).
    pub async fn wait_exit(&self, rec: &Record) -> State {
        let mut rx = self.subscribe(rec);
        let mut seen_start = !matches!(rx.borrow().status, Status::Created);
        loop {
            let st = rx.borrow_and_update().clone();
            if matches!(st.status, Status::Running | Status::Paused) {
                seen_start = true;
            } else if seen_start || !st.started_at.is_empty() && st.status != Status::Created {
                return st;
            }
            if rx.changed().await.is_err() {
                return st;
            }
        }
    }

    /// Waits until the container has exited and been removed; returns its last state.
    pub async fn wait_removed(&self, rec: &Record) -> State {
        let exited = self.wait_exit(rec).await;
        let mut rx = self.subscribe(rec);
        loop {
            let st = rx.borrow_and_update().clone();
            if st.status == Status::Dead || self.records.get(&rec.id).ok().flatten().is_none() {
                return if st.status == Status::Dead {
                    st
                } else {
                    exited
                };
            }
            if rx.changed().await.is_err() {
                return exited;
            }
        }
    }

    /// Freezes (`pause`) or thaws a running container's processes.
    pub async fn set_paused(&self, query: &str, pause: bool) -> Result<Record> {
        let rec = self.resolve(query)?;
        let lock = self.lock(&rec.id);
        let _g = lock.lock().await;
        let mut rec = self
            .records
            .get(&rec.id)?
            .ok_or_else(|| RecordError::NotFound(query.into()))?;
        let (want, hint) = if pause {
            (Status::Running, "only a running container can be paused")
        } else {
            (Status::Paused, "only a paused container can be unpaused")
        };
        if rec.state.status != want {
            return Err(ContainerError::State {
                name: rec.name,
                status: rec.state.status.as_str(),
                hint,
            });
        }
        let mut c = strata_runtime::Container::load(&self.runtime_root, &rec.id)
            .map_err(|e| ContainerError::Runtime(e.to_string()))?;
        if pause { c.pause() } else { c.resume() }
            .map_err(|e| ContainerError::Runtime(e.to_string()))?;
        rec.state.status = if pause {
            Status::Paused
        } else {
            Status::Running
        };
        self.records.update(&rec)?;
        self.notify(&rec);
        self.emit(&rec, if pause { "pause" } else { "unpause" });
        Ok(rec)
    }

    /// Gives a container another name.
    pub async fn rename(&self, query: &str, new_name: &str) -> Result<()> {
        if !valid_name(new_name) {
            return Err(ContainerError::InvalidName(new_name.to_string()));
        }
        let rec = self.resolve(query)?;
        let lock = self.lock(&rec.id);
        let _g = lock.lock().await;
        let mut rec = self
            .records
            .get(&rec.id)?
            .ok_or_else(|| RecordError::NotFound(query.into()))?;
        self.records.rename(&rec, new_name)?;
        let old = std::mem::replace(&mut rec.name, new_name.to_string());
        self.emit_with(&rec, "rename", [("oldName", old)]);
        Ok(())
    }

    /// Marks a container as stopped or killed by hand, so that its restart policy does not
    /// start it again, and cancels a pending restart (the container is then exited). Returns
    /// the record as it was.
    async fn stopped_by_hand(&self, id: &str) -> Result<Record> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let rec = self
            .records
            .get(id)?
            .ok_or_else(|| RecordError::NotFound(id.into()))?;
        if !matches!(
            rec.state.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            return Ok(rec);
        }
        let mut now = rec.clone();
        now.state.manually_stopped = true;
        if rec.state.status == Status::Restarting {
            self.cancel_restart(id);
            now.state.status = Status::Exited;
        }
        self.records.update(&now)?;
        self.notify(&now);
        Ok(rec)
    }

    /// Whether the container's process has ended (its runtime state is gone or stopped).
    fn ended(&self, id: &str) -> bool {
        match strata_runtime::Container::load(&self.runtime_root, id) {
            Ok(mut c) => c.status() == strata_runtime::state::Status::Stopped,
            Err(_) => true,
        }
    }

    /// Sends `sig` and emits Docker's kill event.
    fn signal_event(&self, rec: &Record, sig: nix::sys::signal::Signal, all: bool) -> Result<()> {
        self.signal(rec, sig, all)?;
        self.emit_with(rec, "kill", [("signal", (sig as i32).to_string())]);
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `timeout`. Its restart policy does not start it again.
    pub async fn stop(&self, query: &str, timeout: Option<Duration>) -> Result<()> {
        let rec = self.resolve(query)?;
        let rec = self.stopped_by_hand(&rec.id).await?;
        // As Docker: the container's stop signal (`--stop-signal`, else the image's) and its
        // stop timeout unless the caller names one.
        let timeout = timeout.unwrap_or_else(|| {
            Duration::from_secs(rec.settings.stop_timeout.map_or(10, |t| t.max(0) as u64))
        });
        let first = strata_runtime::parse_signal(&rec.settings.stop_signal)
            .unwrap_or(nix::sys::signal::Signal::SIGTERM);
        match rec.state.status {
            Status::Running | Status::Paused => {}
            Status::Restarting => {
                self.emit(&rec, "stop");
                return Ok(());
            }
            _ => return Ok(()),
        }
        if let Err(e) = self.signal_event(&rec, first, false) {
            tracing::debug!(%e, signal = %first, "the stop signal failed");
        }
        if self.wait_stopped(&rec, Some(timeout)).await.is_none() {
            tracing::info!(
                id = rec.id,
                "container did not stop after {timeout:?}; sending SIGKILL"
            );
            let _ = self.signal_event(&rec, nix::sys::signal::Signal::SIGKILL, true);
            self.wait_stopped(&rec, None).await;
        }
        self.emit(&rec, "stop");
        Ok(())
    }

    /// Sends `signal` (a name or number; default KILL). As in Docker, a container killed by
    /// hand is not started again by its restart policy; killing one that waits to be
    /// restarted cancels the restart.
    pub async fn kill(&self, query: &str, signal: &str) -> Result<()> {
        let rec = self.resolve(query)?;
        let sig = if signal.is_empty() {
            Some(nix::sys::signal::Signal::SIGKILL)
        } else {
            strata_runtime::parse_signal(signal)
        };
        let sig = sig.ok_or_else(|| ContainerError::InvalidSignal(signal.to_string()))?;
        if !matches!(
            rec.state.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            return Err(ContainerError::State {
                name: rec.name,
                status: rec.state.status.as_str(),
                hint: "it is not running",
            });
        }
        let rec = self.stopped_by_hand(&rec.id).await?;
        match rec.state.status {
            Status::Running | Status::Paused => match self.signal_event(&rec, sig, false) {
                // It ended meanwhile (its exit is being recorded): as Docker, a KILL of a
                // process that is already dead did what was asked.
                Err(_) if self.ended(&rec.id) && sig == nix::sys::signal::Signal::SIGKILL => Ok(()),
                Err(_) if self.ended(&rec.id) => Err(ContainerError::State {
                    name: rec.name,
                    status: "exited",
                    hint: "it is not running",
                }),
                r => r,
            },
            Status::Restarting => Ok(()),
            _ => Err(ContainerError::State {
                name: rec.name,
                status: rec.state.status.as_str(),
                hint: "it is not running",
            }),
        }
    }

    /// Removes a container, its snapshot and its files; a running one only with `force`. A
    /// `--rm` container's anonymous volumes go with it.
    pub async fn remove(&self, query: &str, force: bool) -> Result<()> {
        self.remove_with(query, force, false).await
    }

    /// [`Containers::remove`]; with `volumes` (`rm -v`) the anonymous volumes go too.
    pub async fn remove_with(&self, query: &str, force: bool, volumes: bool) -> Result<()> {
        let rec = self.resolve(query)?;
        if matches!(
            rec.state.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            if !force {
                return Err(ContainerError::State {
                    name: rec.name,
                    status: rec.state.status.as_str(),
                    hint: "stop it first, or remove it with -f",
                });
            }
            let rec = self.stopped_by_hand(&rec.id).await?;
            if rec.state.status != Status::Restarting {
                let _ = self.signal_event(&rec, nix::sys::signal::Signal::SIGKILL, true);
                self.wait_stopped(&rec, Some(Duration::from_secs(30))).await;
            }
        }
        let lock = self.lock(&rec.id);
        let _g = lock.lock().await;
        let Some(rec) = self.records.get(&rec.id)? else {
            return Ok(());
        };
        if let Some(held) = self.take_held(&rec.id) {
            self.release_held(&rec.id, held).await;
        }
        let bundle = self.bundle(&rec.id);
        if let Err(e) = strata_snapshotter::mount::unmount_all(&bundle.join("rootfs")) {
            tracing::warn!(%e, "unmounting before remove");
        }
        match self
            .storage
            .snapshots()
            .remove(RemoveSnapshotRequest {
                key: rec.snapshot.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(storage_err(&self.storage, "remove the root filesystem", s)),
        }
        // Its monitor may still be deleting the runtime's state and cgroups (it reports the exit
        // first): once removed, nothing of the container is left.
        let slot = self.monitor_slot(&rec.id);
        if tokio::time::timeout(MONITOR_EXIT_WAIT, slot.lock())
            .await
            .is_err()
        {
            tracing::warn!(
                id = rec.id,
                "removing a container whose monitor has not finished"
            );
        }
        self.records.remove(&rec)?;
        self.forget_mounts(&rec.id, volumes || rec.settings.auto_remove);
        self.discard_dir(&bundle);
        let mut dead = rec.clone();
        dead.state.status = Status::Dead;
        self.notify(&dead);
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        self.monitors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        self.forget_restarts(&rec.id);
        self.emit(&rec, "destroy");
        Ok(())
    }
}

/// Makes `path` (absolute, inside the container) under `rootfs`, never following a symlink:
/// an existing component that is not a directory is refused.
fn make_dir_in(rootfs: &Path, path: &str, uid: u32, gid: u32) -> std::result::Result<(), String> {
    let mut at = rootfs.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            std::path::Component::Normal(n) => at.push(n),
            std::path::Component::RootDir | std::path::Component::CurDir => continue,
            _ => {
                return Err(format!(
                    "working directory {path:?} must not contain \"..\""
                ))
            }
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            // Resolved by the container's own chdir, inside its root.
            Ok(m) if m.file_type().is_symlink() => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "working directory {path:?}: {} is not a directory",
                    at.display()
                ))
            }
            Err(_) => {
                std::fs::create_dir(&at)
                    .map_err(|e| format!("create working directory {path:?}: {e}"))?;
                let _ = std::os::unix::fs::chown(&at, Some(uid), Some(gid));
            }
        }
    }
    Ok(())
}

/// A descriptor that becomes readable when process `pid` exits (pidfd_open(2)).
fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

impl Containers {
    /// Where removed containers' directories go until they are deleted.
    fn trash(&self) -> PathBuf {
        self.dir.with_file_name("trash")
    }

    /// Takes a removed container's directory out of `containers/` at once (a rename) and
    /// deletes it in the background; what a crash leaves in the trash goes at the next start.
    fn discard_dir(&self, bundle: &Path) {
        let trash = self.trash();
        let Some(name) = bundle.file_name() else {
            return;
        };
        // Never delete through a root filesystem that could not be unmounted.
        let dev = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.dev()).ok();
        let rootfs = bundle.join("rootfs");
        if dev(&rootfs).is_some() && dev(&rootfs) != dev(bundle) {
            tracing::warn!(dir = %bundle.display(), "keeping a removed container's directory: its root filesystem is still mounted");
            return;
        }
        let gone = trash.join(name);
        let moved = std::fs::create_dir_all(&trash).and_then(|_| std::fs::rename(bundle, &gone));
        let target = match moved {
            Ok(()) => gone,
            Err(e) => {
                tracing::debug!(%e, "moving a container directory to the trash failed; deleting it in place");
                bundle.to_path_buf()
            }
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&target) {
                tracing::warn!(%e, dir = %target.display(), "removing the container directory failed");
            }
        });
    }

    /// Empties the trash (at the engine's start).
    fn empty_trash(&self) {
        let trash = self.trash();
        if trash.exists() {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = std::fs::remove_dir_all(&trash) {
                    tracing::warn!(%e, dir = %trash.display(), "emptying the container trash failed");
                }
            });
        }
    }
}

/// The copy of a new container's record in its directory (see `Records::insert`).
const CREATED: &str = "create.json";

/// How long a start waits for the monitor of the container's previous run to finish.
const MONITOR_EXIT_WAIT: Duration = Duration::from_secs(10);

/// A started container: its first process, its monitor, the monitor's status pipe and the
/// slot held while the monitor is busy with the container.
struct Launched {
    pid: i32,
    child: tokio::process::Child,
    /// Where `exit` follows the first line.
    status: StatusPipe,
    slot: tokio::sync::OwnedMutexGuard<()>,
}

impl Launched {
    /// Waits for the monitor's `ok <pid>` on `status`.
    async fn when_started(
        mut status: StatusPipe,
        child: tokio::process::Child,
        slot: tokio::sync::OwnedMutexGuard<()>,
    ) -> std::result::Result<Launched, String> {
        let pid = read_started(&mut status, "ok ").await?;
        Ok(Launched {
            pid,
            child,
            status,
            slot,
        })
    }
}

/// The engine's end of a monitor's status pipe.
type StatusPipe = tokio::io::BufReader<tokio::net::unix::pipe::Receiver>;

/// Reads the monitor's status pipe `fd` (in the current runtime).
fn status_pipe(fd: OwnedFd) -> std::result::Result<StatusPipe, String> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
        .map(tokio::io::BufReader::new)
        .map_err(|e| format!("status pipe: {e}"))
}

/// Whether a container publishes ports (its monitor then records them in `ports.json`): no
/// file to read or remove on the run path of one that does not.
fn publishes(s: &Settings) -> bool {
    !s.publish.is_empty() || s.publish_all
}

/// Reads the monitor's first line on its status pipe: `<prefix><pid>` (`ok ` once the
/// container runs, `created ` once a held one is created), or `error <message>`.
async fn read_started(status: &mut StatusPipe, prefix: &str) -> std::result::Result<i32, String> {
    let mut line = String::new();
    let _ = tokio::io::AsyncBufReadExt::read_line(status, &mut line).await;
    let line = line.trim_end();
    if let Some(Ok(pid)) = line.strip_prefix(prefix).map(|p| p.trim().parse::<i32>()) {
        return Ok(pid);
    }
    let msg = line.strip_prefix("error ").unwrap_or(line).trim();
    Err(if msg.is_empty() {
        "the monitor exited without starting the container".into()
    } else {
        msg.to_string()
    })
}

impl Containers {
    fn monitor_slot(&self, id: &str) -> Arc<Mutex<()>> {
        self.monitors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }
}

/// Whether `pid` is the monitor of container `id` (whose directory is `bundle`): a monitor
/// started for it names it on its command line; a spare that took it works in its directory.
fn is_monitor(pid: i32, id: &str, bundle: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline.contains("strata-monitor")
        && (cmdline.contains(id)
            || std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == bundle))
}

impl Containers {
    /// Finds every container again after the engine (re)starts: running ones whose monitor
    /// lives are watched again; ones that stopped meanwhile get the exit their monitor recorded
    /// and their restart policy; restarts that were pending are scheduled again; and stopped
    /// containers whose policy says so (`always`, `unless-stopped` not stopped by hand) start.
    pub async fn restore(self: &Arc<Self>) {
        let all = match self.records.all() {
            Ok(all) => all,
            Err(e) => {
                tracing::error!(%e, "reading the container records failed");
                return;
            }
        };
        for rec in all {
            self.notify(&rec);
            if matches!(rec.state.status, Status::Created | Status::Exited) {
                self.clean_stopped(&rec).await;
            }
            let policy = restart::Policy::parse(&rec.settings.restart_policy).unwrap_or_default();
            match rec.state.status {
                Status::Running | Status::Paused => self.watch_again(rec).await,
                Status::Restarting => self.schedule_restart(&rec.id, restart::FIRST_DELAY),
                Status::Exited if policy.at_engine_start(rec.state.manually_stopped) => {
                    tracing::info!(
                        id = rec.id,
                        policy = policy.name(),
                        "starting the container by its restart policy"
                    );
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.start(&rec.id).await {
                            tracing::error!(%e, id = rec.id, "starting the container by its restart policy failed");
                        }
                    });
                }
                _ => {}
            }
        }
        self.empty_trash();
        self.collect_orphans().await;
        // The first start after this one need not wait for a monitor process to start.
        self.spares.refill();
    }

    /// Keeps a copy of a new container's record in its directory until the record is on disk
    /// (see `Records::insert`); if that cannot be written, the record is flushed instead.
    fn keep_created(&self, rec: &Record) {
        let path = self.bundle(&rec.id).join(CREATED);
        let written = serde_json::to_vec(rec)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&path, b));
        if let Err(e) = written {
            tracing::warn!(%e, path = %path.display(), "keeping a new container's record failed; flushing it");
            if let Err(e) = self.records.flush() {
                tracing::error!(%e, id = rec.id, "flushing a new container's record failed");
            }
        }
    }

    /// A container whose record did not reach the disk before the engine died, from the copy
    /// in its directory, if its snapshot is there too.
    async fn recover_created(&self, id: &str) -> Option<Record> {
        let bytes = std::fs::read(self.bundle(id).join(CREATED)).ok()?;
        let rec: Record = serde_json::from_slice(&bytes).ok()?;
        if rec.id != id || rec.state.status != Status::Created {
            return None;
        }
        let stat = strata_proto::snapshots::StatSnapshotRequest {
            key: rec.snapshot.clone(),
            ..Default::default()
        };
        self.storage.snapshots().stat(stat).await.ok()?;
        match self
            .records
            .insert(&rec)
            .and_then(|()| self.records.flush())
        {
            Ok(()) => Some(rec),
            Err(e) => {
                tracing::warn!(%e, id, "recovering a created container failed");
                None
            }
        }
    }

    /// Recovers containers whose record was lost with the engine (see `recover_created`) and
    /// removes what is left of others: root filesystem snapshots and directories that no
    /// record names.
    async fn collect_orphans(&self) {
        let known: std::collections::HashSet<String> = match self.records.all() {
            Ok(all) => all.into_iter().map(|r| r.id).collect(),
            Err(_) => return,
        };
        let prefix = snapshot_key("");
        let mut orphans = Vec::new();
        match self
            .storage
            .snapshots()
            .list(strata_proto::snapshots::ListSnapshotsRequest::default())
            .await
        {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Ok(Some(batch)) = stream.message().await {
                    for info in batch.info {
                        if let Some(id) = info.name.strip_prefix(&prefix) {
                            if !known.contains(id) {
                                orphans.push(id.to_string());
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(%e, "listing snapshots to find orphans failed"),
        }
        if let Ok(dirs) = std::fs::read_dir(&self.dir) {
            for d in dirs.filter_map(|d| d.ok()) {
                let name = d.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) && !orphans.contains(&name) {
                    orphans.push(name);
                }
            }
        }
        for id in orphans {
            if let Some(rec) = self.recover_created(&id).await {
                tracing::info!(
                    id,
                    name = rec.name,
                    "recovered a created container whose record was lost with the engine"
                );
                self.notify(&rec);
                continue;
            }
            tracing::info!(id, "removing what a container lost in a crash left behind");
            let bundle = self.bundle(&id);
            if let Err(e) = strata_snapshotter::mount::unmount_all(&bundle.join("rootfs")) {
                tracing::warn!(%e, id, "unmounting an orphaned root filesystem failed");
            }
            match self
                .storage
                .snapshots()
                .remove(RemoveSnapshotRequest {
                    key: snapshot_key(&id),
                    ..Default::default()
                })
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => tracing::warn!(
                    id,
                    error = s.message(),
                    "removing an orphaned snapshot failed"
                ),
            }
            if bundle.exists() {
                self.discard_dir(&bundle);
            }
            // Its volumes are no longer in use (its anonymous ones go, as with `--rm`).
            if let Err(e) = self.volumes.detach(&id, true) {
                tracing::warn!(%e, id, "forgetting an orphaned container's volumes failed");
            }
        }
    }

    /// Undoes what an engine that died in the middle of a start or an exit may have left of a
    /// stopped container: its processes (a monitor never recorded as started) and its mount.
    async fn clean_stopped(&self, rec: &Record) {
        if self.runtime_root.join(&rec.id).exists() && self.kill_orphan(&rec.id).await {
            tracing::warn!(
                id = rec.id,
                "killed the processes of a container recorded as stopped"
            );
        }
        let rootfs = self.bundle(&rec.id).join("rootfs");
        if let Err(e) = strata_snapshotter::mount::unmount_all(&rootfs) {
            tracing::warn!(%e, id = rec.id, "unmounting a stopped container's root filesystem failed");
        }
    }

    /// Watches the monitor of a container that was running when the engine stopped, or
    /// records its exit if it has ended.
    async fn watch_again(self: &Arc<Self>, rec: Record) {
        let pid = rec.state.monitor_pid;
        let bundle = self.bundle(&rec.id);
        if !is_monitor(pid, &rec.id, &bundle) {
            return self.exited_as(&rec.id, true).await;
        }
        tracing::info!(
            id = rec.id,
            pid,
            "container still running; watching its monitor again"
        );
        self.watch_health(&rec.id, &rec.state.started_at);
        let me = self.clone();
        tokio::spawn(async move {
            // SAFETY: the AsyncFd owns the pidfd, which stays open and the same for its whole
            // life.
            let watched =
                pidfd(pid).and_then(|fd| Ok(unsafe { tokio::io::unix::AsyncFd::register(fd) }?));
            match watched {
                Ok(afd) => {
                    let _ = afd.readable().await;
                }
                Err(e) => {
                    // No pidfd (an old kernel): look now and then.
                    tracing::warn!(%e, id = rec.id, "cannot watch the monitor's pidfd; polling it");
                    while is_monitor(pid, &rec.id, &bundle) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            me.exited(&rec.id).await;
        });
    }
}
