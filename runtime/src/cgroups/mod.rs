//! Control groups: v1, v2 and hybrid hosts, detected at run time.
//!
//! A [`Cgroup`] is planned from the spec's `linux.cgroupsPath` and the host's mounts, created
//! (directories made, v2 controllers enabled), given the spec's resources, joined by the
//! container's first process, and destroyed on delete. Its plan is kept in the state file so a
//! later `strata-runtime` process (kill, pause, delete) finds the same directories.
//!
//! Relative `cgroupsPath` values are taken relative to the runtime's own cgroup in each
//! hierarchy, as runc does; absolute ones relative to each hierarchy's root; without one the
//! container gets `/strata-runtime/<id>`.

mod bpf;
pub mod detect;
mod oom;
pub mod stats;
mod v1;
mod v2;

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

pub use detect::CgroupMode;
pub use oom::OomWatcher;

/// What can go wrong with cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The host has no cgroup hierarchy at all.
    #[error("no cgroup hierarchy is mounted on this host")]
    NoCgroups,
    /// Reading a host file failed.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Making a cgroup directory failed.
    #[error("cannot create cgroup {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing a value failed; usually a limit the host or kernel refuses.
    #[error("cannot set {} to {value:?}: {source}", .path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    /// Removing a cgroup directory failed.
    #[error("cannot remove cgroup {}: {source}", .path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A resource the host cannot honour (missing controller or interface file).
    #[error("{what} is not supported on this host ({reason})")]
    Unsupported { what: String, reason: String },
    /// A resource value that makes no sense.
    #[error("invalid resource: {0}")]
    Invalid(String),
    /// A kernel call (bpf for the v2 device filter, eventfd, inotify) failed.
    #[error("{op} failed: {errno}")]
    Kernel {
        op: &'static str,
        errno: nix::errno::Errno,
    },
    /// The freezer did not reach the wanted state.
    #[error("freezer of {} did not reach {state} in time", .path.display())]
    FreezeTimeout { path: PathBuf, state: &'static str },
}

type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// One directory of the container's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupDir {
    /// v1 controllers of the hierarchy (empty for the unified one).
    pub controllers: Vec<String>,
    /// Whether this is in the unified (cgroup2) hierarchy.
    pub unified: bool,
    /// The directory.
    pub dir: PathBuf,
    /// The directories this runtime made (parents first), removed again on destroy.
    #[serde(default)]
    pub created: Vec<PathBuf>,
}

/// The container's cgroup across the host's hierarchies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// The host's mode.
    pub mode: CgroupMode,
    /// The cgroup path (the same in every hierarchy).
    pub path: String,
    /// One directory per hierarchy.
    pub dirs: Vec<CgroupDir>,
}

/// Reads a file of a cgroup or of /proc.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` to `dir/file`; a missing file means the host cannot do it.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    use std::io::Write as _;
    let path = dir.join(file);
    tracing::debug!(path = %path.display(), value, "cgroup write");
    // No O_CREAT: a missing interface file is a missing feature, not something to create.
    let mut f = match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CgroupError::Unsupported {
                what: file.to_string(),
                reason: format!("{} does not exist", path.display()),
            })
        }
        Err(source) => {
            return Err(CgroupError::Write {
                path,
                value: value.to_string(),
                source,
            })
        }
    };
    f.write_all(value.as_bytes())
        .map_err(|source| CgroupError::Write {
            path,
            value: value.to_string(),
            source,
        })
}

/// The cgroup path for a spec: `cgroupsPath` resolved against `own` (this process's path in
/// the hierarchy) when relative, or the default for `id`.
pub fn resolve_path(cgroups_path: Option<&Path>, id: &str, own: &str) -> Result<String> {
    let p = match cgroups_path {
        None => format!("/strata-runtime/{id}"),
        Some(p) if p.is_absolute() => p.to_string_lossy().into_owned(),
        Some(p) => format!("{}/{}", own.trim_end_matches('/'), p.to_string_lossy()),
    };
    if p.split('/').any(|c| c == "..") {
        return Err(CgroupError::Invalid(format!(
            "cgroupsPath {p:?} must not contain '..'"
        )));
    }
    if p.contains(':') {
        return Err(CgroupError::Unsupported {
            what: format!("cgroupsPath {p:?}"),
            reason: "systemd slice:prefix:name paths need --systemd-cgroup, which strata-runtime does not support".into(),
        });
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(CgroupError::Invalid(
            "cgroupsPath must not be the root cgroup".into(),
        ));
    }
    Ok(trimmed.to_string())
}

impl Cgroup {
    /// Plans the container's cgroup on this host.
    pub fn plan(cgroups_path: Option<&Path>, id: &str) -> Result<Self> {
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let own = read(Path::new("/proc/self/cgroup"))?;
        Self::plan_from(
            &detect::parse_mountinfo(&mountinfo),
            &detect::parse_proc_cgroup(&own),
            cgroups_path,
            id,
        )
    }

    /// Plans from parsed host data (pure, for tests).
    pub fn plan_from(
        hierarchies: &[detect::Hierarchy],
        own: &[(Vec<String>, String)],
        cgroups_path: Option<&Path>,
        id: &str,
    ) -> Result<Self> {
        let mode = detect::mode_of(hierarchies).ok_or(CgroupError::NoCgroups)?;
        let mut dirs = Vec::new();
        let mut path_out = String::new();
        for h in hierarchies {
            if mode == CgroupMode::V1 && h.unified {
                continue;
            }
            if mode == CgroupMode::V2 && !h.unified {
                continue;
            }
            // Joining the same hierarchy twice (bind mounts of it) is pointless.
            if dirs
                .iter()
                .any(|d: &CgroupDir| d.unified == h.unified && d.controllers == h.controllers)
            {
                continue;
            }
            let own_path = own
                .iter()
                .find(|(c, _)| {
                    if h.unified {
                        c.is_empty()
                    } else {
                        c == &h.controllers
                    }
                })
                .map(|(_, p)| p.as_str())
                .unwrap_or("/");
            let path = resolve_path(cgroups_path, id, own_path)?;
            let rel = path
                .strip_prefix(h.root.trim_end_matches('/'))
                .unwrap_or(&path);
            let dir = h.mount.join(rel.trim_start_matches('/'));
            if path_out.is_empty() || !h.unified {
                path_out = path.clone();
            }
            dirs.push(CgroupDir {
                controllers: h.controllers.clone(),
                unified: h.unified,
                dir,
                created: Vec::new(),
            });
        }
        Ok(Cgroup {
            mode,
            path: path_out,
            dirs,
        })
    }

    /// The v1 directory holding `controller`, or the unified one on a v2 host.
    pub(crate) fn dir_for(&self, controller: &str) -> Option<&Path> {
        match self.mode {
            CgroupMode::V2 => self.dirs.first().map(|d| d.dir.as_path()),
            _ => self
                .dirs
                .iter()
                .find(|d| !d.unified && d.controllers.iter().any(|c| c == controller))
                .map(|d| d.dir.as_path()),
        }
    }

    /// The unified directory, if any.
    pub(crate) fn unified_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.unified)
            .map(|d| d.dir.as_path())
    }

    /// Makes the directories (remembering which ones it made) and readies them for tasks.
    pub fn create(&mut self) -> Result<()> {
        for d in &mut self.dirs {
            let mut missing = Vec::new();
            let mut p = d.dir.as_path();
            while !p.exists() {
                missing.push(p.to_path_buf());
                match p.parent() {
                    Some(parent) => p = parent,
                    None => break,
                }
            }
            for m in missing.into_iter().rev() {
                if d.unified {
                    v2::enable_controllers(m.parent().unwrap_or(Path::new("/")));
                }
                match std::fs::create_dir(&m) {
                    Ok(()) => d.created.push(m.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(CgroupError::Create { path: m, source }),
                }
                if d.controllers.iter().any(|c| c == "cpuset") {
                    v1::init_cpuset(&m)?;
                }
            }
        }
        Ok(())
    }

    /// Applies the spec's resources.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        match self.mode {
            CgroupMode::V2 => v2::apply(&self.dirs[0].dir, res),
            CgroupMode::V1 | CgroupMode::Hybrid => v1::apply(self, res),
        }
    }

    /// Moves process `pid` (0: the caller) into every directory.
    pub fn add_task(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            write(&d.dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling process into the cgroup; it must be single-threaded (a fresh fork).
    /// In a v1 hierarchy its one thread is written to `tasks`: moving a single thread needs
    /// none of the kernel's global threadgroup lock that a `cgroup.procs` write takes, and
    /// taking that lock when it is idle waits a whole RCU grace period (milliseconds). With
    /// `unified` false the unified hierarchy of a hybrid host is left for
    /// [`Cgroup::join_unified`].
    pub fn add_self(&self, unified: bool) -> Result<()> {
        for d in &self.dirs {
            if !d.unified {
                write(&d.dir, "tasks", "0")?;
            } else if unified || self.mode != CgroupMode::Hybrid {
                write(&d.dir, "cgroup.procs", "0")?;
            }
        }
        Ok(())
    }

    /// Moves `pid` into the unified hierarchy of a hybrid host (what `add_self(false)` left).
    pub fn join_unified(&self, pid: i32) -> Result<()> {
        if self.mode != CgroupMode::Hybrid {
            return Ok(());
        }
        for d in self.dirs.iter().filter(|d| d.unified) {
            write(&d.dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = self
            .dir_for("pids")
            .or_else(|| self.dir_for("freezer"))
            .or(self.dirs.first().map(|d| d.dir.as_path()));
        let Some(dir) = dir else {
            return Ok(Vec::new());
        };
        Ok(read(&dir.join("cgroup.procs"))?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    /// Freezes every process of the cgroup and waits until the kernel says they are.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let v2 = self.mode == CgroupMode::V2;
        let (dir, file, value) = if v2 {
            (
                self.dirs[0].dir.as_path(),
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
            )
        } else {
            let dir = self
                .dir_for("freezer")
                .ok_or_else(|| CgroupError::Unsupported {
                    what: "pause".into(),
                    reason: "no freezer hierarchy is mounted".into(),
                })?;
            (
                dir,
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            )
        };
        let done = |d: &Path| -> Result<bool> {
            if v2 {
                Ok(v2::is_frozen(d)? == frozen)
            } else {
                Ok(read(&d.join("freezer.state"))?.trim() == value)
            }
        };
        for _ in 0..1000 {
            write(dir, file, value)?;
            if done(dir)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(CgroupError::FreezeTimeout {
            path: dir.to_path_buf(),
            state: if frozen { "frozen" } else { "thawed" },
        })
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        match self.mode {
            CgroupMode::V2 => v2::is_frozen(&self.dirs[0].dir),
            _ => match self.dir_for("freezer") {
                Some(d) => Ok(read(&d.join("freezer.state"))?.trim() == "FROZEN"),
                None => Ok(false),
            },
        }
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> Result<u64> {
        let (dir, file) = match self.mode {
            CgroupMode::V2 => (self.dirs[0].dir.as_path(), "memory.events"),
            _ => match self.dir_for("memory") {
                Some(d) => (d, "memory.oom_control"),
                None => return Ok(0),
            },
        };
        let text = match std::fs::read_to_string(dir.join(file)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: dir.join(file),
                    source,
                })
            }
        };
        Ok(stat_value(&text, "oom_kill").unwrap_or(0))
    }

    /// CPU time used by the cgroup, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Result<u64> {
        match self.mode {
            CgroupMode::V2 => {
                let text = read(&self.dirs[0].dir.join("cpu.stat"))?;
                Ok(stat_value(&text, "usage_usec").unwrap_or(0) * 1000)
            }
            _ => {
                let dir = self
                    .dir_for("cpuacct")
                    .ok_or_else(|| CgroupError::Unsupported {
                        what: "cpu accounting".into(),
                        reason: "no cpuacct hierarchy".into(),
                    })?;
                read(&dir.join("cpuacct.usage"))?
                    .trim()
                    .parse()
                    .map_err(|_| CgroupError::Invalid("cpuacct.usage is not a number".into()))
            }
        }
    }

    /// Removes the container's own directory in every hierarchy (if this runtime made it).
    /// Parents made on the way (like `/strata-runtime`) are shared by other containers and
    /// stay, as with runc and crun. Processes must be gone; a busy directory is retried for a
    /// while (the kernel frees a dead cgroup lazily).
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for d in &self.dirs {
            if d.created.last() != Some(&d.dir) {
                continue;
            }
            if let Err(e) = remove_dir_retrying(&d.dir) {
                tracing::warn!(path = %d.dir.display(), error = %e, "cannot remove cgroup");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn remove_dir_retrying(dir: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(1);
    for _ in 0..14 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    std::fs::remove_dir(dir).map_err(|source| CgroupError::Remove {
        path: dir.to_path_buf(),
        source,
    })
}

/// The value of `key` in a "key value" per line file (memory.events, cpu.stat, oom_control).
pub(crate) fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The device rules every container gets after its own (runc's list): the standard character
/// devices, the pty devices, and mknod of anything (creating a node grants no access to it).
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(5), Some(1), "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(10), Some(200), "rwm"),
    ]
}

/// The spec's device rules followed by the defaults.
pub fn device_rules(res: &LinuxResources) -> Vec<LinuxDeviceCgroup> {
    let mut rules = res.devices().clone().unwrap_or_default();
    if !rules.is_empty() {
        rules.extend(default_device_rules());
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::detect::parse_mountinfo;
    use super::*;

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_plan_joins_v1_and_unified() {
        let own = vec![
            (vec!["cpu".to_string()], "/user".to_string()),
            (vec![], "/".to_string()),
        ];
        let cg = Cgroup::plan_from(&parse_mountinfo(HYBRID), &own, Some(Path::new("/a/b")), "x")
            .unwrap();
        assert_eq!(cg.mode, CgroupMode::Hybrid);
        assert_eq!(cg.dirs.len(), 3);
        assert_eq!(
            cg.dir_for("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/a/b"))
        );
        assert_eq!(
            cg.unified_dir(),
            Some(Path::new("/sys/fs/cgroup/unified/a/b"))
        );
        let rel =
            Cgroup::plan_from(&parse_mountinfo(HYBRID), &own, Some(Path::new("c")), "x").unwrap();
        assert_eq!(
            rel.dir_for("cpu"),
            Some(Path::new("/sys/fs/cgroup/cpu/user/c"))
        );
        assert_eq!(
            rel.dir_for("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/c"))
        );
    }

    #[test]
    fn default_and_bad_paths() {
        assert_eq!(resolve_path(None, "id", "/").unwrap(), "/strata-runtime/id");
        assert!(resolve_path(Some(Path::new("/a/../b")), "id", "/").is_err());
        assert!(resolve_path(Some(Path::new("system.slice:docker:abc")), "id", "/").is_err());
        assert!(resolve_path(Some(Path::new("/")), "id", "/").is_err());
    }

    #[test]
    fn create_and_destroy_in_a_fake_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().join("memory");
        std::fs::create_dir(&mount).unwrap();
        let h = vec![detect::Hierarchy {
            mount: mount.clone(),
            root: "/".into(),
            controllers: vec!["memory".into()],
            unified: false,
        }];
        let mut cg = Cgroup::plan_from(&h, &[], Some(Path::new("/p/q")), "x").unwrap();
        cg.create().unwrap();
        assert!(mount.join("p/q").is_dir());
        assert_eq!(cg.dirs[0].created, vec![mount.join("p"), mount.join("p/q")]);
        cg.destroy().unwrap();
        assert!(!mount.join("p/q").exists());
        assert!(mount.join("p").exists(), "shared parents stay");
    }

    #[test]
    fn stat_values() {
        assert_eq!(
            stat_value("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
        assert_eq!(stat_value("low 0\n", "oom_kill"), None);
    }

    #[test]
    fn defaults_only_follow_explicit_rules() {
        assert!(device_rules(&LinuxResources::default()).is_empty());
    }
}
