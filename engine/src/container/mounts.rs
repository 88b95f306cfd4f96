//! A container's mounts and network: `-v`, `--mount`, `--tmpfs` and `--volumes-from` resolved
//! and its volumes made (named ones on first use, anonymous ones) and filled from the image at
//! create; at each start the volumes readied, the network files written and the network of
//! another container joined (`--network container:`); the volumes released when it stops and
//! forgotten (its anonymous ones removed on request) when it is removed.

use std::path::Path;

use serde_json::{json, Value};

use super::etc::{self, EtcPaths};
use super::inspect::Extras;
use super::record::{Record, Settings, Status};
use super::spec::{Prepared, SpecError};
use super::{io, ContainerError, Containers, Result};
use crate::volume::mounts::{self, Kind, MountError, MountPoint, Request};
use crate::volume::{copy, ANONYMOUS_LABEL};

/// How long a chain of `--network container:` may be.
const MAX_JOINS: usize = 8;

/// Whose network a container uses, and what that gives it.
struct NetView {
    hostname: String,
    /// The network files (of the container that owns the network).
    files: EtcPaths,
    /// The network namespace to join ("" for its own or the host's).
    netns: String,
    /// The container owns its network files (not joined to another's).
    own: bool,
}

/// A tmpfs mount of the spec.
fn tmpfs_mount(destination: &str, options: &[String]) -> Value {
    json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options })
}

fn rw(p: &MountPoint) -> &'static str {
    if p.rw {
        "rw"
    } else {
        "ro"
    }
}

impl Containers {
    /// A container's mounts; for one made by an engine that did not record them, its `-v`
    /// binds (all it could have).
    fn points_of(&self, rec: &Record) -> Result<Vec<MountPoint>> {
        Ok(match self.volumes.recorded(&rec.id)? {
            Some(points) => points,
            None => rec
                .settings
                .binds
                .iter()
                .filter_map(|b| mounts::parse_volume_flag(b).ok())
                .map(|r| r.point)
                .filter(|p| p.kind == Kind::Bind)
                .collect(),
        })
    }

    /// Checks the mount and network flags of a new container and resolves the containers they
    /// name (`--volumes-from`, `--network container:`, kept by id); adds an anonymous volume
    /// for each of the image's `VOLUME`s no mount covers, as Docker does; makes nothing.
    pub(super) fn plan_mounts(
        &self,
        s: &mut Settings,
        image_volumes: &[String],
    ) -> Result<Vec<Request>> {
        etc::validate(s)?;
        if let Some(other) = s.network_mode.strip_prefix("container:") {
            if other.is_empty() {
                return Err(SpecError::Network(s.network_mode.clone()).into());
            }
            let other = self.records.resolve(other)?;
            s.network_mode = format!("container:{}", other.id);
        } else if !matches!(s.network_mode.as_str(), "" | "none" | "default" | "host") {
            return Err(SpecError::Network(s.network_mode.clone()).into());
        }
        let mut own = Vec::new();
        for b in &s.binds {
            own.push(mounts::parse_volume_flag(b)?);
        }
        for m in &s.mounts {
            let r = mounts::parse_mount_flag(m)?;
            if r.point.kind == Kind::Bind && !Path::new(&r.point.source).exists() {
                return Err(MountError::Mount {
                    spec: m.clone(),
                    reason: format!("bind source path does not exist: {}", r.point.source),
                }
                .into());
            }
            own.push(r);
        }
        let tmpfs = s
            .tmpfs
            .iter()
            .map(|t| mounts::parse_tmpfs_flag(t))
            .collect::<Result<Vec<_>, _>>()?;
        let own_dests = || {
            own.iter()
                .map(|r| r.point.destination.as_str())
                .chain(tmpfs.iter().map(|t| t.destination.as_str()))
        };
        mounts::check_duplicates(own_dests())?;
        // The other containers' volumes and binds, at the same places; a later one and this
        // container's own mounts win over them, as in Docker.
        let mut from: Vec<Request> = Vec::new();
        for v in &s.volumes_from {
            let (name, mode) = match v.split_once(':') {
                None => (v.as_str(), None),
                Some((n, "ro")) => (n, Some(false)),
                Some((n, "rw")) => (n, Some(true)),
                Some((_, m)) => {
                    return Err(MountError::VolumesFrom {
                        spec: v.clone(),
                        mode: m.to_string(),
                    }
                    .into())
                }
            };
            let other = self.records.resolve(name)?;
            for mut p in self.points_of(&other)? {
                if p.kind == Kind::Tmpfs {
                    continue;
                }
                p.rw = p.rw && mode != Some(false);
                p.from = other.id.clone();
                from.retain(|r| r.point.destination != p.destination);
                from.push(Request {
                    point: p,
                    ..Default::default()
                });
            }
        }
        let taken: Vec<String> = own_dests().map(String::from).collect();
        from.retain(|r| !taken.contains(&r.point.destination));
        from.extend(own);
        for path in image_volumes {
            let r = mounts::image_volume(path)?;
            let dest = &r.point.destination;
            if !taken.contains(dest) && !from.iter().any(|f| &f.point.destination == dest) {
                from.push(r);
            }
        }
        Ok(from)
    }

    /// Makes the volumes a new container's mounts name (named ones on first use, anonymous
    /// ones), fills empty ones from the image, and records the mounts. Returns the volumes it
    /// made; on failure nothing is left.
    pub(super) async fn make_mounts(
        &self,
        rec: &Record,
        plan: Vec<Request>,
    ) -> Result<Vec<String>> {
        let mut created = Vec::new();
        let made = self.make_volumes(rec, plan, &mut created).await;
        let attached = made.and_then(|points| Ok(self.volumes.attach(&rec.id, &points)?));
        // Recorded (in use from now on through the record), or to be removed below.
        self.volumes.release(&rec.id);
        if let Err(e) = attached {
            self.unmake_mounts(&rec.id, &created);
            return Err(e);
        }
        Ok(created)
    }

    async fn make_volumes(
        &self,
        rec: &Record,
        plan: Vec<Request>,
        created: &mut Vec<String>,
    ) -> Result<Vec<MountPoint>> {
        let mut points = Vec::new();
        let mut to_fill = Vec::new();
        for Request { mut point, volume } in plan {
            if point.kind == Kind::Volume && point.from.is_empty() {
                let mut labels = volume.labels;
                if point.anonymous {
                    labels.insert(ANONYMOUS_LABEL.into(), String::new());
                }
                // Held for this container while it is filled, before its mounts are recorded.
                let (v, made) =
                    self.volumes
                        .create_held(&rec.id, &point.source, labels, volume.driver_opts)?;
                if made {
                    created.push(v.name.clone());
                }
                point.source = v.name;
                if !point.nocopy && point.subpath.is_empty() {
                    to_fill.push(point.clone());
                }
            }
            points.push(point);
        }
        if !to_fill.is_empty() {
            self.fill_volumes(rec, &to_fill).await?;
        }
        Ok(points)
    }

    /// Copies the image's content at each mount's path into its volume, if the volume is
    /// empty (Docker's copy on first use).
    async fn fill_volumes(&self, rec: &Record, points: &[MountPoint]) -> Result<()> {
        let root = self.bundle(&rec.id).join("rootfs");
        let mounts = self.rootfs_mounts(rec).await?;
        strata_snapshotter::mount::mount_all(&mounts, &root)
            .map_err(|e| ContainerError::Runtime(e.to_string()))?;
        let filled = points.iter().try_for_each(|p| {
            let src = strata_runtime::rootfs::mounts::secure_join(&root, Path::new(&p.destination))
                .map_err(|e| ContainerError::Runtime(e.to_string()))?;
            if !src.is_dir() {
                // Nothing to copy where the image has nothing; a volume cannot go over a file.
                return match std::fs::symlink_metadata(&src) {
                    Ok(_) => Err(MountError::OverFile(p.destination.clone()).into()),
                    Err(_) => Ok(()),
                };
            }
            let copied = self.volumes.with_data(&p.source, |data| {
                if copy::is_empty_dir(data)? {
                    copy::seed(&src, data)?;
                }
                Ok::<_, copy::CopyError>(())
            })?;
            copied.map_err(|e| {
                ContainerError::Runtime(format!(
                    "fill volume {} from the image's {}: {e}",
                    p.source, p.destination
                ))
            })
        });
        if let Err(e) = strata_snapshotter::mount::unmount_all(&root) {
            tracing::warn!(%e, id = rec.id, "unmounting the root filesystem after filling volumes failed");
        }
        filled
    }

    /// Undoes [`Containers::make_mounts`] for a create that failed after it.
    pub(super) fn unmake_mounts(&self, id: &str, created: &[String]) {
        if let Err(e) = self.volumes.detach(id, false) {
            tracing::warn!(%e, id, "forgetting the mounts of a failed create failed");
        }
        for name in created {
            if let Err(e) = self.volumes.remove(name, true) {
                tracing::warn!(%e, volume = name, "removing a volume of a failed create failed");
            }
        }
    }

    /// Forgets a removed container's mounts; with `volumes` (`rm -v`, `--rm`) its anonymous
    /// volumes that no other container uses go too.
    pub(super) fn forget_mounts(&self, id: &str, volumes: bool) {
        self.release_mounts(id);
        if let Err(e) = self.volumes.detach(id, volumes) {
            tracing::warn!(%e, id, "forgetting a removed container's mounts failed");
        }
    }

    /// Releases the volumes and the network namespace of a container that stopped (or failed
    /// to start).
    pub(super) fn release_mounts(&self, id: &str) {
        self.volumes.unmount_all_of(id);
    }

    /// Whose network `rec` uses. With `starting`, the container joined must be running.
    fn network(&self, rec: &Record, starting: bool) -> Result<NetView> {
        let start_err = |message: String| ContainerError::Start {
            name: rec.name.clone(),
            message,
        };
        let mut owner = rec.clone();
        let mut netns = String::new();
        for depth in 0..=MAX_JOINS {
            let Some(id) = owner.settings.network_mode.strip_prefix("container:") else {
                let s = &owner.settings;
                let hostname = if !s.hostname.is_empty() {
                    s.hostname.clone()
                } else if s.network_mode == "host" || s.uts_mode == "host" {
                    etc::host_hostname()
                } else {
                    owner.id[..12.min(owner.id.len())].to_string()
                };
                return Ok(NetView {
                    hostname,
                    files: EtcPaths::in_dir(&self.bundle(&owner.id)),
                    netns,
                    own: depth == 0,
                });
            };
            let other = self.records.get(id)?.ok_or_else(|| {
                start_err(format!(
                    "cannot join the network of container {id}: it no longer exists"
                ))
            })?;
            if starting && depth == 0 {
                if other.id == rec.id {
                    return Err(start_err("cannot join own network namespace".into()));
                }
                if !matches!(other.state.status, Status::Running | Status::Paused) {
                    return Err(start_err(format!(
                        "cannot join network namespace of a non running container: {}",
                        other.name
                    )));
                }
                // Its init's namespace (the runtime brought `lo` up in it).
                netns = format!("/proc/{}/ns/net", other.state.pid);
            }
            owner = other;
        }
        Err(start_err(format!(
            "--network container: chains are limited to {MAX_JOINS} containers"
        )))
    }

    /// Readies a starting container's mounts: volumes mounted, `-v` bind sources made, the
    /// network files written; with the hostname and the network namespace to join (none for
    /// a network of its own: the runtime makes it, with `lo` up).
    pub(super) fn prepare_mounts(&self, rec: &Record) -> Result<Prepared> {
        let prepared = self.prepare_inner(rec);
        if prepared.is_err() {
            self.release_mounts(&rec.id);
        }
        prepared
    }

    fn prepare_inner(&self, rec: &Record) -> Result<Prepared> {
        let net = self.network(rec, true)?;
        if net.own {
            etc::write(&net.files, &net.hostname, &rec.settings)
                .map_err(io("write the network files in", &self.bundle(&rec.id)))?;
        }
        let mut all: Vec<(String, Value)> = Vec::new();
        for p in self.points_of(rec)? {
            let m = match p.kind {
                Kind::Bind => {
                    let src = Path::new(&p.source);
                    if p.make_source && !src.exists() {
                        // Docker's -v makes a missing host directory.
                        std::fs::create_dir_all(src).map_err(io("create bind source", src))?;
                    }
                    let rec_bind = if p.non_recursive { "bind" } else { "rbind" };
                    json!({
                        "destination": p.destination, "type": "bind", "source": p.source,
                        "options": [rec_bind, rw(&p), p.propagation],
                    })
                }
                Kind::Volume => {
                    let src = self.volumes.mount(&rec.id, &p)?;
                    json!({
                        "destination": p.destination, "type": "bind", "source": src,
                        "options": ["rbind", rw(&p), "rprivate"],
                    })
                }
                Kind::Tmpfs => tmpfs_mount(&p.destination, &p.tmpfs),
            };
            all.push((p.destination, m));
        }
        for t in &rec.settings.tmpfs {
            let p = mounts::parse_tmpfs_flag(t)?;
            all.push((p.destination.clone(), tmpfs_mount(&p.destination, &p.tmpfs)));
        }
        let taken: Vec<&str> = all.iter().map(|(d, _)| d.as_str()).collect();
        let files: Vec<(String, Value)> = net
            .files
            .mounts(&taken)
            .into_iter()
            .map(|m| (m["destination"].as_str().unwrap_or_default().to_string(), m))
            .collect();
        all.extend(files);
        // Parents before children (/a before /a/b), as Docker sorts them.
        all.sort_by_key(|(d, _)| d.matches('/').count());
        Ok(Prepared {
            mounts: all.into_iter().map(|(_, m)| m).collect(),
            hostname: net.hostname,
            netns: net.netns,
        })
    }

    /// What `inspect` shows of the container's mounts and network files.
    pub fn inspect_extras(&self, rec: &Record) -> Extras {
        let net = self.network(rec, false).unwrap_or_else(|_| NetView {
            hostname: rec.id[..12.min(rec.id.len())].to_string(),
            files: EtcPaths::in_dir(&self.bundle(&rec.id)),
            netns: String::new(),
            own: true,
        });
        let mounts = self
            .points_of(rec)
            .unwrap_or_default()
            .into_iter()
            .map(|p| match p.kind {
                Kind::Bind => json!({
                    "Type": "bind", "Source": p.source, "Destination": p.destination,
                    "Mode": p.mode, "RW": p.rw, "Propagation": p.propagation,
                }),
                Kind::Volume => {
                    let mut src = self.volumes.data_dir(&p.source);
                    if !p.subpath.is_empty() {
                        src.push(&p.subpath);
                    }
                    json!({
                        "Type": "volume", "Name": p.source, "Source": src,
                        "Destination": p.destination, "Driver": crate::volume::DRIVER,
                        "Mode": p.mode, "RW": p.rw, "Propagation": "",
                    })
                }
                Kind::Tmpfs => json!({
                    "Type": "tmpfs", "Source": "", "Destination": p.destination,
                    "Mode": "", "RW": p.rw, "Propagation": "",
                }),
            })
            .collect();
        Extras {
            mounts,
            hostname: net.hostname,
            files: net.files,
        }
    }
}
