//! Volumes with Docker's local driver: a directory `<root>/volumes/<name>/_data` that outlives
//! the containers using it, or, with driver options (`type`, `device`, `o`, as mount(8) takes
//! them), a filesystem mounted there while containers using it run.
//!
//! Kept in sled: the `volumes` tree (name → JSON record), the `container-mounts` tree
//! (container id → its resolved [`MountPoint`]s, which is what makes a volume "in use"), and the
//! `volume-active` tree (`<name>\0<container id>` while a running container mounts it, so that
//! a driver-option volume is unmounted when its last user stops, across engine restarts too).
//!
//! - [`mounts`]: parsing `-v`, `--mount` and `--tmpfs`;
//! - [`copy`]: filling an empty volume from the image.

pub mod copy;
pub mod mounts;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::container::record::Records;
use crate::events::Events;
use mounts::{Kind, MountPoint};

/// The label Docker puts on the volumes it makes for a container's anonymous mounts.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The only driver.
pub const DRIVER: &str = "local";

/// A volume's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    /// RFC 3339, seconds.
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    /// The local driver's options (type, device, o).
    pub options: BTreeMap<String, String>,
}

impl Volume {
    /// Made for a container's anonymous mount.
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// Volume failures, each mapping to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{}", mounts::volume_name_error(.0))]
    InvalidName(String),
    #[error("invalid volume option: {0}")]
    InvalidOption(String),
    #[error("volume driver {0:?} is not available: only local is")]
    Driver(String),
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {name} is in use by {}", .containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("metadata store: {0}")]
    Db(#[from] sled::Error),
    #[error("metadata store: corrupt record {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    #[error("mount volume {name}: {message}")]
    Mount { name: String, message: String },
}

impl From<VolumeError> for tonic::Status {
    fn from(e: VolumeError) -> Self {
        e.to_status()
    }
}

impl VolumeError {
    /// The gRPC status for this error.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            VolumeError::InvalidName(_)
            | VolumeError::InvalidOption(_)
            | VolumeError::Driver(_) => Code::InvalidArgument,
            VolumeError::NotFound(_) => Code::NotFound,
            VolumeError::InUse { .. } => Code::FailedPrecondition,
            _ => Code::Internal,
        };
        tonic::Status::new(code, self.to_string())
    }
}

type Result<T, E = VolumeError> = std::result::Result<T, E>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    strata_runtime::state::rfc3339(secs, 0).replace(".000000000Z", "Z")
}

/// The filesystems this kernel knows (`/proc/filesystems`).
fn known_filesystems() -> Vec<String> {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect()
}

/// Refuses driver options the local driver does not take, as Docker's does.
pub fn check_options(opts: &BTreeMap<String, String>) -> Result<()> {
    let bad = |m: String| Err(VolumeError::InvalidOption(m));
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return bad(format!(
                "{k:?} is not an option of the local driver: use type, device and o"
            ));
        }
    }
    let needs: [(&str, &[&str]); 3] = [
        ("type", &["device"]),
        ("device", &["type"]),
        ("o", &["type", "device"]),
    ];
    for (opt, required) in needs {
        if opts.contains_key(opt) {
            if let Some(missing) = required.iter().find(|r| !opts.contains_key(**r)) {
                return bad(format!("{opt} needs the {missing} option too"));
            }
        }
    }
    let Some(typ) = opts.get("type") else {
        return Ok(());
    };
    let o = opts.get("o").map(String::as_str).unwrap_or_default();
    let bind = typ == "bind" || o.split(',').any(|x| x == "bind" || x == "rbind");
    if !bind && typ != "none" && !known_filesystems().iter().any(|f| f == typ) {
        return bad(format!(
            "type {typ:?} is not a filesystem this kernel knows (see /proc/filesystems)"
        ));
    }
    let device = &opts["device"];
    if bind && !Path::new(device).is_absolute() {
        return bad(format!(
            "device {device:?} of a bind must be an absolute path"
        ));
    }
    if (bind || device.starts_with('/')) && !Path::new(device).exists() {
        return bad(format!("device {device:?} does not exist"));
    }
    Ok(())
}

/// The engine's volumes.
#[derive(Debug)]
pub struct Volumes {
    db: sled::Db,
    volumes: sled::Tree,
    users: sled::Tree,
    active: sled::Tree,
    dir: PathBuf,
    events: Arc<Events>,
    records: Records,
    lock: Mutex<()>,
    /// Volumes a container being created uses before its mounts are recorded (between the
    /// volume's creation and [`Volumes::attach`], while it is filled): in use all the same,
    /// so a prune or a removal meanwhile leaves them.
    held: Mutex<HashMap<String, Vec<MountPoint>>>,
}

impl Volumes {
    /// The volumes under `root/volumes`.
    pub fn open(
        db: &sled::Db,
        root: &Path,
        events: Arc<Events>,
        records: Records,
    ) -> Result<Arc<Self>> {
        let dir = root.join("volumes");
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        Ok(Arc::new(Volumes {
            volumes: db.open_tree("volumes")?,
            users: db.open_tree("container-mounts")?,
            active: db.open_tree("volume-active")?,
            db: db.clone(),
            dir,
            events,
            records,
            lock: Mutex::new(()),
            held: Mutex::default(),
        }))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory a volume's data lives in (its mount point with driver options).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Makes a volume, or returns the existing one of that name (`false`: not made now). An
    /// empty name gets 64 random hex digits.
    pub fn create(
        &self,
        name: &str,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        self.create_for(None, name, driver, labels, options)
    }

    /// [`Volumes::create`] for `container`, which holds the volume (in use) until its mounts
    /// are recorded or [`Volumes::release`]d.
    pub fn create_held(
        &self,
        container: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        self.create_for(Some(container), name, "", labels, options)
    }

    /// Ends what [`Volumes::create_held`] held for `container`.
    pub fn release(&self, container: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container);
    }

    fn hold(&self, container: Option<&str>, name: &str) {
        if let Some(c) = container {
            let point = MountPoint {
                kind: Kind::Volume,
                source: name.to_string(),
                ..Default::default()
            };
            self.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(c.to_string())
                .or_default()
                .push(point);
        }
    }

    fn create_for(
        &self,
        holder: Option<&str>,
        name: &str,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        if !driver.is_empty() && driver != DRIVER {
            return Err(VolumeError::Driver(driver.to_string()));
        }
        if !name.is_empty() && !mounts::valid_volume_name(name) {
            return Err(VolumeError::InvalidName(name.to_string()));
        }
        check_options(&options)?;
        let _g = self.guard();
        if !name.is_empty() {
            if let Some(v) = self.find(name)? {
                self.hold(holder, name);
                return Ok((v, false));
            }
        }
        let name = if name.is_empty() {
            hex::encode(rand::random::<[u8; 32]>())
        } else {
            name.to_string()
        };
        let v = Volume {
            name: name.clone(),
            driver: DRIVER.into(),
            created_at: now(),
            labels,
            options,
        };
        let top = self.dir.join(&name);
        let data = self.data_dir(&name);
        let made = (|| {
            std::fs::create_dir_all(&data).map_err(io("create directory", &data))?;
            if !v.options.is_empty() {
                // Mount once now, so bad options are refused here and not at a start.
                self.mount_device(&v)
                    .map_err(|e| VolumeError::InvalidOption(e.to_string()))?;
                if let Err(e) = strata_snapshotter::mount::unmount_all(&data) {
                    tracing::warn!(%e, volume = name, "unmounting a trial mount failed");
                }
            }
            self.volumes
                .insert(name.as_bytes(), serde_json::to_vec(&v).unwrap_or_default())?;
            self.db.flush()?;
            Ok(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&top);
            return Err(e);
        }
        self.hold(holder, &name);
        self.events
            .emit("volume", "create", &name, [("driver", DRIVER.to_string())]);
        Ok((v, true))
    }

    fn find(&self, name: &str) -> Result<Option<Volume>> {
        self.volumes
            .get(name.as_bytes())?
            .map(|b| {
                serde_json::from_slice(&b).map_err(|source| VolumeError::Corrupt {
                    key: name.to_string(),
                    source,
                })
            })
            .transpose()
    }

    /// The volume of that name.
    pub fn get(&self, name: &str) -> Result<Volume> {
        self.find(name)?
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        self.volumes
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice(&v).map_err(|source| VolumeError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source,
                })
            })
            .collect()
    }

    /// Every container's mounts, with what containers being created hold.
    fn all_mounts(&self) -> Result<Vec<(String, Vec<MountPoint>)>> {
        let mut all = self
            .users
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id = String::from_utf8_lossy(&k).into_owned();
                let m = serde_json::from_slice(&v).map_err(|source| VolumeError::Corrupt {
                    key: id.clone(),
                    source,
                })?;
                Ok((id, m))
            })
            .collect::<Result<Vec<_>>>()?;
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        all.extend(held.iter().map(|(id, m)| (id.clone(), m.clone())));
        Ok(all)
    }

    /// How many containers use each volume.
    pub fn ref_counts(&self) -> Result<HashMap<String, usize>> {
        let mut counts = HashMap::new();
        for (_, mounts) in self.all_mounts()? {
            let mut names: Vec<&str> = mounts
                .iter()
                .filter(|m| m.kind == Kind::Volume)
                .map(|m| m.source.as_str())
                .collect();
            names.dedup();
            for n in names {
                *counts.entry(n.to_string()).or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// The ids of the containers using a volume.
    pub fn users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .all_mounts()?
            .into_iter()
            .filter(|(_, m)| m.iter().any(|m| m.kind == Kind::Volume && m.source == name))
            .map(|(id, _)| id)
            .collect())
    }

    /// "web (3f2a1b0c9d8e)" for each user, for messages.
    fn named(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .map(|id| match self.records.get(id) {
                Ok(Some(r)) => format!("container {} ({})", r.name, &id[..12.min(id.len())]),
                _ => format!("container {id}"),
            })
            .collect()
    }

    /// Removes a volume no container uses. With `force` a missing one is not an error
    /// (`Ok(false)`), as with Docker's `volume rm -f`; one in use is refused either way.
    pub fn remove(&self, name: &str, force: bool) -> Result<bool> {
        let _g = self.guard();
        self.remove_locked(name, force)
    }

    fn remove_locked(&self, name: &str, force: bool) -> Result<bool> {
        let v = match self.find(name)? {
            Some(v) => v,
            None if force => return Ok(false),
            None => return Err(VolumeError::NotFound(name.to_string())),
        };
        let users = self.users(name)?;
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                containers: self.named(&users),
            });
        }
        let data = self.data_dir(name);
        if !v.options.is_empty() {
            if let Err(e) = strata_snapshotter::mount::unmount_all(&data) {
                return Err(VolumeError::Mount {
                    name: name.to_string(),
                    message: e.to_string(),
                });
            }
        }
        let top = self.dir.join(name);
        match std::fs::remove_dir_all(&top) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &top)(e)),
        }
        self.volumes.remove(name.as_bytes())?;
        self.db.flush()?;
        self.events
            .emit("volume", "destroy", name, [("driver", DRIVER.to_string())]);
        Ok(true)
    }

    /// Removes the unused volumes: anonymous ones, or with `all` every one. Returns their names
    /// and the bytes their data took.
    pub async fn prune(&self, all: bool) -> Result<PruneReport> {
        let _g = self.guard();
        let used = self.ref_counts()?;
        let mut report = PruneReport::default();
        for v in self.list()? {
            if used.contains_key(&v.name) || !(all || v.anonymous()) {
                continue;
            }
            let size = copy::tree_size(&self.data_dir(&v.name));
            match self.remove_locked(&v.name, true) {
                Ok(true) => {
                    report.deleted.push(v.name);
                    report.space_reclaimed += size;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(%e, volume = v.name, "pruning a volume failed"),
            }
        }
        Ok(report)
    }

    /// Records a container's mounts (making its volumes in use).
    pub fn attach(&self, container: &str, mounts: &[MountPoint]) -> Result<()> {
        if mounts.is_empty() {
            // Nothing to record (and no flush on the way of every create): no entry means no
            // mounts (`Containers::points_of` reads `-v` binds only for a container made
            // before mounts were recorded).
            return Ok(());
        }
        let _g = self.guard();
        for m in mounts.iter().filter(|m| m.kind == Kind::Volume) {
            self.get(&m.source)?;
        }
        self.users.insert(
            container.as_bytes(),
            serde_json::to_vec(mounts).unwrap_or_default(),
        )?;
        self.db.flush()?;
        Ok(())
    }

    /// A container's mounts, as recorded at its create (none recorded: empty).
    pub fn mounts_of(&self, container: &str) -> Result<Vec<MountPoint>> {
        Ok(self.recorded(container)?.unwrap_or_default())
    }

    /// A container's mounts; `None` for a container made without any, or before mounts were
    /// recorded.
    pub fn recorded(&self, container: &str) -> Result<Option<Vec<MountPoint>>> {
        self.users
            .get(container.as_bytes())?
            .map(|b| {
                serde_json::from_slice(&b).map_err(|source| VolumeError::Corrupt {
                    key: container.to_string(),
                    source,
                })
            })
            .transpose()
    }

    /// Forgets a container's mounts; with `remove_anonymous`, removes its anonymous volumes
    /// that no other container uses (`rm -v`, `--rm`).
    pub fn detach(&self, container: &str, remove_anonymous: bool) -> Result<()> {
        let mounts = self.mounts_of(container)?;
        let _g = self.guard();
        if self.users.remove(container.as_bytes())?.is_some() {
            self.db.flush()?;
        }
        if !remove_anonymous {
            return Ok(());
        }
        for m in mounts
            .iter()
            .filter(|m| m.kind == Kind::Volume && m.anonymous)
        {
            match self.remove_locked(&m.source, true) {
                Ok(_) | Err(VolumeError::InUse { .. }) => {}
                Err(e) => {
                    tracing::warn!(%e, volume = m.source, "removing an anonymous volume failed")
                }
            }
        }
        Ok(())
    }

    /// Mounts a volume's device (driver options) on its data directory.
    fn mount_device(&self, v: &Volume) -> Result<(), strata_snapshotter::mount::MountError> {
        let m = strata_proto::types::Mount {
            r#type: v.options.get("type").cloned().unwrap_or_default(),
            source: v.options.get("device").cloned().unwrap_or_default(),
            target: String::new(),
            options: v
                .options
                .get("o")
                .map(|o| {
                    o.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        };
        strata_snapshotter::mount::mount_all(&[m], &self.data_dir(&v.name))
    }

    /// Runs `f` on a volume's data directory, its filesystem mounted for the call when it has
    /// driver options and no running container has it mounted.
    pub fn with_data<T>(&self, name: &str, f: impl FnOnce(&Path) -> T) -> Result<T> {
        let _g = self.guard();
        let v = self.get(name)?;
        let data = self.data_dir(name);
        let mount = !v.options.is_empty()
            && self
                .active
                .scan_prefix(format!("{name}\0").as_bytes())
                .next()
                .is_none();
        if mount {
            self.mount_device(&v).map_err(|e| VolumeError::Mount {
                name: name.to_string(),
                message: e.to_string(),
            })?;
        }
        let out = f(&data);
        if mount {
            if let Err(e) = strata_snapshotter::mount::unmount_all(&data) {
                tracing::warn!(%e, volume = name, "unmounting a volume failed");
            }
        }
        Ok(out)
    }

    /// Readies a volume for a starting container and returns the host path to bind: a volume
    /// with driver options gets its filesystem mounted when its first user starts.
    pub fn mount(&self, container: &str, point: &MountPoint) -> Result<PathBuf> {
        let _g = self.guard();
        let v = self.get(&point.source)?;
        let data = self.data_dir(&v.name);
        let prefix = format!("{}\0", v.name);
        let key = format!("{prefix}{container}");
        if !v.options.is_empty() && self.active.scan_prefix(prefix.as_bytes()).next().is_none() {
            // Stale from a crash: whatever is mounted there is remounted fresh.
            let _ = strata_snapshotter::mount::unmount_all(&data);
            self.mount_device(&v).map_err(|e| VolumeError::Mount {
                name: v.name.clone(),
                message: e.to_string(),
            })?;
        }
        self.active.insert(key.as_bytes(), &[])?;
        self.db.flush()?;
        self.events.emit(
            "volume",
            "mount",
            &v.name,
            [
                ("driver", DRIVER.to_string()),
                ("container", container.to_string()),
                ("destination", point.destination.clone()),
                ("read/write", point.rw.to_string()),
                ("propagation", point.propagation.clone()),
            ],
        );
        // A symlink in the volume cannot lead the subpath out of it.
        let path = if point.subpath.is_empty() {
            data
        } else {
            strata_runtime::rootfs::mounts::secure_join(&data, Path::new(&point.subpath)).map_err(
                |e| VolumeError::Mount {
                    name: v.name.clone(),
                    message: e.to_string(),
                },
            )?
        };
        if !path.exists() {
            return Err(VolumeError::Mount {
                name: v.name,
                message: format!("subpath {:?} does not exist in the volume", point.subpath),
            });
        }
        Ok(path)
    }

    /// Releases every volume a container mounted (it stopped, or failed to start): a volume
    /// with driver options is unmounted when its last user goes.
    pub fn unmount_all_of(&self, container: &str) {
        let _g = self.guard();
        let suffix = format!("\0{container}");
        let keys: Vec<String> = self
            .active
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .filter(|k| k.ends_with(&suffix))
            .collect();
        for key in keys {
            let name = &key[..key.len() - suffix.len()];
            if let Err(e) = self.active.remove(key.as_bytes()) {
                tracing::warn!(%e, volume = name, "forgetting a volume's user failed");
                continue;
            }
            self.events.emit(
                "volume",
                "unmount",
                name,
                [
                    ("driver", DRIVER.to_string()),
                    ("container", container.to_string()),
                ],
            );
            let last = self
                .active
                .scan_prefix(format!("{name}\0").as_bytes())
                .next()
                .is_none();
            let with_device = self
                .find(name)
                .ok()
                .flatten()
                .is_some_and(|v| !v.options.is_empty());
            if last && with_device {
                if let Err(e) = strata_snapshotter::mount::unmount_all(&self.data_dir(name)) {
                    tracing::warn!(%e, volume = name, "unmounting a volume failed");
                }
            }
        }
        if let Err(e) = self.db.flush() {
            tracing::warn!(%e, "flushing the volume metadata failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn driver_options_are_checked() {
        assert!(check_options(&opts(&[])).is_ok());
        assert!(check_options(&opts(&[("type", "tmpfs"), ("device", "tmpfs")])).is_ok());
        let e = check_options(&opts(&[("size", "1g")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"size\" is not an option"), "{e}");
        let e = check_options(&opts(&[("o", "size=1m")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("o needs the type option"), "{e}");
        let e = check_options(&opts(&[("type", "tmpfs")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("device"), "{e}");
        let e = check_options(&opts(&[("type", "nosuchfs"), ("device", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuchfs"), "{e}");
        let e = check_options(&opts(&[
            ("type", "none"),
            ("o", "bind"),
            ("device", "/no/such/dir"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn store_round_trip_users_and_prune() {
        let t = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let records = Records::open(&db).unwrap();
        let vols = Volumes::open(&db, t.path(), Arc::new(Events::default()), records).unwrap();
        let (named, made) = vols
            .create("data", "", opts(&[("a", "b")]), BTreeMap::new())
            .unwrap();
        assert!(made && vols.data_dir("data").is_dir());
        assert!(
            !vols
                .create("data", "local", BTreeMap::new(), BTreeMap::new())
                .unwrap()
                .1
        );
        let (anon, _) = vols
            .create("", "", opts(&[(ANONYMOUS_LABEL, "")]), BTreeMap::new())
            .unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(vols
            .create("a/b", "", BTreeMap::new(), BTreeMap::new())
            .is_err());
        assert!(vols
            .create("xy", "nfs", BTreeMap::new(), BTreeMap::new())
            .is_err());
        let point = MountPoint {
            kind: Kind::Volume,
            source: "data".into(),
            destination: "/d".into(),
            ..Default::default()
        };
        vols.attach("c1", std::slice::from_ref(&point)).unwrap();
        assert_eq!(vols.users("data").unwrap(), ["c1"]);
        let e = vols.remove("data", true).unwrap_err().to_string();
        assert!(e.contains("in use by container c1"), "{e}");
        std::fs::write(vols.data_dir(&anon.name).join("f"), "12345").unwrap();
        let r = futures_prune(&vols, false);
        assert_eq!(r.deleted, std::slice::from_ref(&anon.name));
        assert_eq!(r.space_reclaimed, 5);
        assert!(
            futures_prune(&vols, true).deleted.is_empty(),
            "data is in use"
        );
        vols.detach("c1", true).unwrap();
        assert_eq!(vols.get("data").unwrap(), named, "named volumes stay");
        assert_eq!(futures_prune(&vols, true).deleted, ["data"]);
        assert!(matches!(
            vols.remove("data", false),
            Err(VolumeError::NotFound(_))
        ));
        assert!(!vols.remove("data", true).unwrap());
    }

    #[test]
    fn a_volume_held_for_a_container_being_created_is_in_use() {
        let t = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let records = Records::open(&db).unwrap();
        let vols = Volumes::open(&db, t.path(), Arc::new(Events::default()), records).unwrap();
        let anonymous = opts(&[(ANONYMOUS_LABEL, "")]);
        let (anon, made) = vols
            .create_held("c1", "", anonymous, BTreeMap::new())
            .unwrap();
        assert!(made);
        vols.create("kept", "", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        // An existing named volume is held too when a container being created names it.
        vols.create_held("c1", "kept", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        // While c1 fills them, before its mounts are recorded: neither prune nor rm takes them.
        assert!(futures_prune(&vols, true).deleted.is_empty());
        let e = vols.remove(&anon.name, true).unwrap_err().to_string();
        assert!(e.contains("in use by container c1"), "{e}");
        vols.release("c1");
        let mut gone = futures_prune(&vols, true).deleted;
        gone.sort();
        let mut want = vec![anon.name, "kept".to_string()];
        want.sort();
        assert_eq!(gone, want);
    }

    fn futures_prune(v: &Volumes, all: bool) -> PruneReport {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(v.prune(all))
            .unwrap()
    }
}
