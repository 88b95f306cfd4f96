//! What the engine keeps about a container, in sled: the `containers` tree (id → JSON record)
//! and the `container-names` tree (name → id). A record and its name change together, in one
//! transaction, flushed before the call returns.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

/// A container's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Its process ended; its restart policy starts it again after a back-off.
    Restarting,
    /// Its process ended.
    Exited,
    /// Being removed, or failed to be.
    Dead,
}

impl Status {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// What `create` was asked for (the engine API's `ContainerConfig`, kept as given). Fields
/// added later read as their defaults from older records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub image: String,
    pub cmd: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cpuset_cpus: String,
    pub pids_limit: i64,
    pub binds: Vec<String>,
    pub read_only: bool,
    pub network_mode: String,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub auto_remove: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub mounts: Vec<String>,
    pub volumes_from: Vec<String>,
    pub tmpfs: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub restart_policy: String,
    pub labels: Vec<String>,
    /// The image's `VOLUME`s, as the config's `Volumes` shows them with the anonymous `-v`s.
    pub image_volumes: Vec<String>,
    /// The entrypoint and command in effect (the flags', else the image's), as the config's
    /// `Entrypoint` and `Cmd` show them; `None` in records from before they were kept.
    pub config_entrypoint: Option<Vec<String>>,
    pub config_cmd: Option<Vec<String>>,
    /// `--ulimit name=soft[:hard]`.
    pub ulimits: Vec<String>,
    /// Bytes of /dev/shm (0: Docker's 64 MiB).
    pub shm_size: i64,
    /// The signal `stop` sends first: the flag's, else the image's (at create); "" = SIGTERM.
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL (`None`: 10).
    pub stop_timeout: Option<i32>,
    /// `--sysctl name=value`.
    pub sysctls: Vec<String>,
    /// `--group-add`: group names or gids.
    pub group_add: Vec<String>,
    /// `--pid`, `--ipc`, `--uts`: "" or "host".
    pub pid_mode: String,
    pub ipc_mode: String,
    pub uts_mode: String,
    /// `--security-opt` as given (a seccomp profile as its JSON).
    pub security_opt: Vec<String>,
    /// Bytes of memory + swap (-1: unlimited swap; 0: no swap beyond the memory limit).
    pub memory_swap: i64,
    pub cpu_shares: i64,
    pub oom_kill_disable: bool,
    /// `--device /dev/host[:/dev/in-container[:rwm]]`.
    pub devices: Vec<String>,
    /// `-p/--publish [IP:][HOST:]CONTAINER[/tcp]` (see ports.rs).
    pub publish: Vec<String>,
    /// `--log-driver` ("" is json-file) and `--log-opt KEY=VALUE` (see logconf.rs).
    pub log_driver: String,
    pub log_opts: Vec<String>,
    /// `--health-cmd` (run with /bin/sh -c; "" for the image's), `--health-interval`,
    /// `--health-timeout`, `--health-start-period` (nanoseconds, 0 for the image's or Docker's
    /// default), `--health-retries` (0 for the same), `--no-healthcheck` (see health.rs).
    pub health_cmd: String,
    pub health_interval: i64,
    pub health_timeout: i64,
    pub health_start_period: i64,
    pub health_retries: i32,
    pub no_healthcheck: bool,
    /// The image's `HEALTHCHECK`, from the image at create.
    pub image_healthcheck: Option<super::health::HealthConfig>,
    /// `--init`: a minimal init is the container's pid 1 (strata_runtime::tini).
    pub init: bool,
    /// `--expose PORT[/proto]`, `-P/--publish-all` (see ports.rs), and the image's
    /// `ExposedPorts` (from the image at create).
    pub expose: Vec<String>,
    pub publish_all: bool,
    pub image_exposed: Vec<String>,
}

/// The run-time state. Fields added later read as their defaults from older records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub status: Status,
    /// The container's first process, while it runs.
    pub pid: i32,
    /// The monitor process that owns it.
    pub monitor_pid: i32,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// RFC 3339; empty when never started / not finished.
    pub started_at: String,
    pub finished_at: String,
    /// Why the last start failed, if it did.
    pub error: String,
    /// How many times its restart policy has started it since it was last started by hand.
    pub restart_count: u32,
    /// Stopped or killed by hand since it was last started by hand (Docker's
    /// `HasBeenManuallyStopped`): no restart policy starts it, and `unless-stopped` not even
    /// when the engine starts.
    pub manually_stopped: bool,
    /// The host ports its monitor bound for `-p`, while it runs.
    pub ports: Vec<super::ports::PortBinding>,
    /// Its health, when it has a health check and has been started.
    pub health: Option<super::health::Health>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            monitor_pid: 0,
            exit_code: 0,
            oom_killed: false,
            started_at: String::new(),
            finished_at: String::new(),
            error: String::new(),
            restart_count: 0,
            manually_stopped: false,
            ports: Vec::new(),
            health: None,
        }
    }
}

/// A container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// The image's id (sha256:…) and the reference it was asked by.
    pub image_id: String,
    pub image_ref: String,
    /// The process the container runs (entrypoint + cmd, resolved at create).
    pub path: String,
    pub args: Vec<String>,
    /// RFC 3339.
    pub created: String,
    /// The snapshot key of its root filesystem and the storage driver it lives in.
    pub snapshot: String,
    pub driver: String,
    pub settings: Settings,
    pub state: State,
}

/// Container metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("metadata store: {0}")]
    Db(#[from] sled::Error),
    #[error("metadata store: corrupt container record {id}: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse { name: String, id: String },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container reference {query:?} is ambiguous: it matches {a} and {b}")]
    Ambiguous { query: String, a: String, b: String },
}

/// The container records.
#[derive(Debug, Clone)]
pub struct Records {
    db: sled::Db,
    containers: sled::Tree,
    names: sled::Tree,
}

fn tx<T>(r: Result<T, TransactionError<RecordError>>) -> Result<T, RecordError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => RecordError::Db(e),
    })
}

fn encode(rec: &Record) -> Vec<u8> {
    // Serializing plain owned data to a Vec cannot fail.
    serde_json::to_vec(rec).unwrap_or_default()
}

impl Records {
    /// Opens the trees in the engine's db.
    pub fn open(db: &sled::Db) -> Result<Self, RecordError> {
        Ok(Records {
            containers: db.open_tree("containers")?,
            names: db.open_tree("container-names")?,
            db: db.clone(),
        })
    }

    fn decode(id: &str, v: &[u8]) -> Result<Record, RecordError> {
        serde_json::from_slice(v).map_err(|source| RecordError::Corrupt {
            id: id.to_string(),
            source,
        })
    }

    /// Adds a new container; fails if its name is taken. Not flushed before it returns: the
    /// record is on disk with sled's next background flush (within half a second) or the
    /// container's next flushed change (its start), whichever comes first; the engine keeps a
    /// copy in the container's directory meanwhile (`create.json`, one write(2): it survives
    /// a crash of the engine, not of the machine), from which a restarted engine recovers it.
    pub fn insert(&self, rec: &Record) -> Result<(), RecordError> {
        let bytes = encode(rec);
        tx((&self.containers, &self.names).transaction(|(c, n)| {
            if let Some(other) = n.get(rec.name.as_bytes())? {
                return Err(ConflictableTransactionError::Abort(
                    RecordError::NameInUse {
                        name: rec.name.clone(),
                        id: String::from_utf8_lossy(&other).into_owned(),
                    },
                ));
            }
            n.insert(rec.name.as_bytes(), rec.id.as_bytes())?;
            c.insert(rec.id.as_bytes(), bytes.as_slice())?;
            Ok(())
        }))?;
        Ok(())
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> Result<(), RecordError> {
        self.db.flush()?;
        Ok(())
    }

    /// Replaces a container's record (same id and name).
    pub fn update(&self, rec: &Record) -> Result<(), RecordError> {
        self.update_unflushed(rec)?;
        self.db.flush()?;
        Ok(())
    }

    /// Replaces a container's record without waiting for the disk: for a state that a change
    /// about to be flushed supersedes (an `--rm` container's exit, just before its removal),
    /// or that a restarted engine learns again (from the monitor's exit record).
    pub fn update_unflushed(&self, rec: &Record) -> Result<(), RecordError> {
        self.containers.insert(rec.id.as_bytes(), encode(rec))?;
        Ok(())
    }

    /// Renames a container.
    pub fn rename(&self, rec: &Record, new_name: &str) -> Result<(), RecordError> {
        let mut renamed = rec.clone();
        renamed.name = new_name.to_string();
        let bytes = encode(&renamed);
        tx((&self.containers, &self.names).transaction(|(c, n)| {
            if let Some(other) = n.get(new_name.as_bytes())? {
                return Err(ConflictableTransactionError::Abort(
                    RecordError::NameInUse {
                        name: new_name.to_string(),
                        id: String::from_utf8_lossy(&other).into_owned(),
                    },
                ));
            }
            n.remove(rec.name.as_bytes())?;
            n.insert(new_name.as_bytes(), rec.id.as_bytes())?;
            c.insert(rec.id.as_bytes(), bytes.as_slice())?;
            Ok(())
        }))?;
        self.db.flush()?;
        Ok(())
    }

    /// Deletes a container's record and name.
    pub fn remove(&self, rec: &Record) -> Result<(), RecordError> {
        tx((&self.containers, &self.names).transaction(|(c, n)| {
            c.remove(rec.id.as_bytes())?;
            n.remove(rec.name.as_bytes())?;
            Ok(())
        }))?;
        self.db.flush()?;
        Ok(())
    }

    /// The container with this id, if any.
    pub fn get(&self, id: &str) -> Result<Option<Record>, RecordError> {
        self.containers
            .get(id.as_bytes())?
            .map(|v| Self::decode(id, &v))
            .transpose()
    }

    /// Finds a container by name, full id or unique id prefix, as Docker does.
    pub fn resolve(&self, query: &str) -> Result<Record, RecordError> {
        let q = query.strip_prefix('/').unwrap_or(query);
        if let Some(id) = self.names.get(q.as_bytes())? {
            let id = String::from_utf8_lossy(&id).into_owned();
            return self
                .get(&id)?
                .ok_or(RecordError::NotFound(query.to_string()));
        }
        if q.is_empty() || !q.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RecordError::NotFound(query.to_string()));
        }
        let mut it = self.containers.scan_prefix(q.as_bytes());
        let first = it
            .next()
            .transpose()?
            .ok_or_else(|| RecordError::NotFound(query.to_string()))?;
        if let Some((second, _)) = it.next().transpose()? {
            return Err(RecordError::Ambiguous {
                query: query.to_string(),
                a: String::from_utf8_lossy(&first.0).into_owned(),
                b: String::from_utf8_lossy(&second).into_owned(),
            });
        }
        Self::decode(q, &first.1)
    }

    /// Every container.
    pub fn all(&self) -> Result<Vec<Record>, RecordError> {
        self.containers
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Self::decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }
}
