//! What the runtime remembers about a container: `<root>/<id>/state.json`, written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::Hooks;

use crate::cgroups::Cgroup;
use crate::namespaces::Namespaces;

/// The file name of the state in a container's directory.
pub const STATE_FILE: &str = "state.json";
/// The fifo the created container waits on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

/// What can go wrong with the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No such container.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A container with that id exists.
    #[error("container {0} already exists")]
    Exists(String),
    /// File work failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state file is damaged.
    #[error("state file {} is damaged: {source}", .path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A container's status, as in the OCI runtime spec (plus `paused`, as runc reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// The user's program runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The persisted state of one container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerState {
    /// OCI spec version of the bundle.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Last known status (refreshed from the process on every load).
    pub status: Status,
    /// Host pid of the container's first process (0 before it exists).
    pub pid: i32,
    /// That process's start time (field 22 of `/proc/<pid>/stat`), so a reused pid is noticed.
    pub pid_start: u64,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The absolute rootfs.
    pub rootfs: PathBuf,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The cgroup plan (directories made, to remove on delete).
    pub cgroup: Option<Cgroup>,
    /// The namespaces, for `exec`.
    pub namespaces: Namespaces,
    /// The hooks still to run (poststart, poststop).
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Whether a process uses a terminal.
    #[serde(default)]
    pub terminal: bool,
}

impl ContainerState {
    /// The state document of the OCI runtime spec (what `state` prints), with runc's extras.
    pub fn oci_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "pid": if self.status == Status::Stopped { 0 } else { self.pid },
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
            "owner": "",
        })
    }

    /// Writes the state atomically (temp file then rename).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(self).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, data).map_err(|source| StateError::Io {
            op: "write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| StateError::Io {
            op: "rename",
            path,
            source,
        })
    }

    /// Reads the state of `id` under `root`.
    pub fn load(root: &Path, id: &str) -> Result<Self, StateError> {
        let path = root.join(id).join(STATE_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(source) => {
                return Err(StateError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { path, source })
    }
}

/// What Strata reads of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead) …
    pub state: char,
    pub ppid: i32,
    /// Clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Neither a zombie nor dead.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// The state, parent and start time of a process, or `None` if it does not exist.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The start time of a process (clock ticks since boot), or `None` if it does not exist or
/// is a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).filter(ProcStat::alive).map(|s| s.start_time)
}

/// Now, in RFC 3339 with nanoseconds (what Go's time parser, i.e. containerd, reads).
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats a Unix time as RFC 3339 in UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_709_210_096, 5), "2024-02-29T12:34:56.000000005Z");
    }

    #[test]
    fn own_stat_names_our_parent() {
        let s = proc_stat(std::process::id() as i32).unwrap();
        assert!(s.alive(), "{s:?}");
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert!(proc_stat(i32::MAX).is_none());
    }

    #[test]
    fn own_start_time_is_known() {
        assert!(process_start_time(std::process::id() as i32).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }

    #[test]
    fn save_and_load() {
        let tmp = tempfile::tempdir().unwrap();
        let s = ContainerState {
            oci_version: "1.0.2".into(),
            id: "c1".into(),
            status: Status::Created,
            pid: 42,
            pid_start: 7,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            annotations: HashMap::new(),
            created: now_rfc3339(),
            cgroup: None,
            namespaces: Namespaces::default(),
            hooks: None,
            terminal: false,
        };
        std::fs::create_dir(tmp.path().join("c1")).unwrap();
        s.save(&tmp.path().join("c1")).unwrap();
        let l = ContainerState::load(tmp.path(), "c1").unwrap();
        assert_eq!(l.pid, 42);
        assert_eq!(l.oci_json()["status"], "created");
        assert!(matches!(
            ContainerState::load(tmp.path(), "nope"),
            Err(StateError::NotFound(_))
        ));
    }
}
