//! The warm pool: containers made ahead of time, so that a `run` only has to start one.
//!
//! Most of what a container's start costs is not the container's own work: its snapshot
//! prepared and mounted, its spec and files written, its monitor started, and the runtime's part
//! (namespaces, cgroups, the mounts inside, the pivot into its root) up to the `execve` of its
//! first process. With `warm_pool = N` (`stratad --warm-pool N`), each create also has the
//! engine make one more container with the same image and settings, that far, and keep it out
//! of sight: no record, no name, no event, not in `ps -a`. The next create asking for the same
//! takes it (the name, the record and the `create` event come then), and its start only tells
//! its monitor to go on ([`super::monitor`]'s `go`), while another is made. At most N are
//! kept (N for one image and settings, so that back-to-back runs find one made), those for other
//! settings going first, oldest first, when more are wanted; one unused for [`WARM_IDLE`] goes.
//! Removing or pruning images empties the pool first; the engine's stop empties it; what an
//! engine that died leaves is collected at its next start as any orphan.
//!
//! Only containers whose start reads nothing that could change in between are pooled: no
//! volumes, binds or `--volumes-from`, no published ports, no terminal or open stdin, no devices, no namespace of
//! another container, no seccomp profile file (see [`key`]). What a pooled container has from
//! the time it was made rather than its create: its `/etc/resolv.conf` (the host's then).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_proto::snapshots::RemoveSnapshotRequest;

use super::record::{Record, State};
use super::{
    attach, io, monitor, read_started, snapshot_key, spare, status_pipe, ContainerError,
    Containers, Launched, Result, StatusPipe,
};

/// How long a container made ahead of time is kept unused.
pub const WARM_IDLE: Duration = Duration::from_secs(300);

/// How long a monitor gets to delete the container it holds once let go.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How long emptying the pool waits for containers being made.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// A monitor holding a created container until it is told to start it.
#[derive(Debug)]
pub struct Held {
    child: tokio::process::Child,
    /// Its job socket: `go` starts the container; its end lets the container go.
    sock: OwnedFd,
    status: StatusPipe,
}

impl Held {
    /// Whether its monitor still runs.
    pub(super) fn monitor_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A container made ahead of time, for the settings hashed into `key`.
#[derive(Debug)]
struct Warm {
    key: String,
    rec: Record,
    held: Held,
}

/// The pool's containers and the ones being made.
#[derive(Debug, Default)]
pub struct Pool {
    inner: std::sync::Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    capacity: usize,
    /// Oldest first.
    ready: Vec<Warm>,
    /// Keys of the containers being made.
    filling: Vec<String>,
}

impl Pool {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps at most `n` containers ahead of time (0: none).
    pub fn set_capacity(&self, n: usize) {
        self.inner().capacity = n;
    }

    /// (containers ready, at most).
    pub fn size(&self) -> (usize, usize) {
        let p = self.inner();
        (p.ready.len(), p.capacity)
    }

    fn take(&self, key: &str) -> Option<Warm> {
        let mut p = self.inner();
        let i = p.ready.iter().position(|w| w.key == key)?;
        Some(p.ready.remove(i))
    }

    fn take_id(&self, id: &str) -> Option<Warm> {
        let mut p = self.inner();
        let i = p.ready.iter().position(|w| w.rec.id == id)?;
        Some(p.ready.remove(i))
    }
}

/// The pool's key for a container about to be created as `rec` with `planned` mounts: a hash
/// of its image, driver, command and settings; `None` when its start reads something that
/// could change after it is made (see the module's documentation).
pub(super) fn key(rec: &Record, planned: &[crate::volume::mounts::Request]) -> Option<String> {
    let s = &rec.settings;
    let other = |mode: &str| mode.starts_with("container:");
    let profile = |o: &String| o.starts_with("seccomp") && !o.ends_with("unconfined");
    let pooled = planned.is_empty()
        && s.binds.is_empty()
        && s.mounts.is_empty()
        && s.volumes_from.is_empty()
        && s.image_volumes.is_empty()
        && s.devices.is_empty()
        && !super::publishes(s)
        && !s.tty
        && !s.open_stdin
        && !other(&s.network_mode)
        && !other(&s.pid_mode)
        && !other(&s.ipc_mode)
        && !s.security_opt.iter().any(profile);
    if !pooled {
        return None;
    }
    let what = serde_json::to_vec(&(&rec.image_id, &rec.driver, &rec.path, &rec.args, s)).ok()?;
    Some(hex::encode(Sha256::digest(&what)))
}

impl Containers {
    /// The warm pool.
    pub fn warm_pool(&self) -> &Pool {
        &self.pool
    }

    /// The monitor holding the container `id` (taken from the pool, not started), if any.
    pub(super) fn take_held(&self, id: &str) -> Option<Held> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Takes a pooled container for `rec` (a new container's record, with its name and
    /// settings): it is recorded under the pooled container's ID and snapshot.
    pub(super) async fn claim_warm(&self, key: &str, rec: &Record) -> Result<Option<Record>> {
        let Some(w) = self.pool.take(key) else {
            return Ok(None);
        };
        let claimed = Record {
            id: w.rec.id.clone(),
            snapshot: w.rec.snapshot.clone(),
            ..rec.clone()
        };
        if let Err(e) = self.records.insert(&claimed) {
            self.discard_warm(w).await;
            return Err(e.into());
        }
        self.keep_created(&claimed);
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(claimed.id.clone(), w.held);
        self.notify(&claimed);
        self.emit(&claimed, "create");
        Ok(Some(claimed))
    }

    /// Makes containers like `template` (on the image's top layer `chain`) for the pool in the
    /// background, until it has or is making as many as it keeps for `key`; when it is full,
    /// the oldest containers made for other settings go.
    pub(super) fn want_warm(self: &Arc<Self>, key: &str, template: &Record, chain: &str) {
        loop {
            let evicted = {
                let mut p = self.pool.inner();
                let mine = p.ready.iter().filter(|w| w.key == key).count()
                    + p.filling.iter().filter(|k| *k == key).count();
                if mine >= p.capacity {
                    return;
                }
                let evicted = if p.ready.len() + p.filling.len() >= p.capacity {
                    let Some(i) = p.ready.iter().position(|w| w.key != key) else {
                        return;
                    };
                    Some(p.ready.remove(i))
                } else {
                    None
                };
                p.filling.push(key.to_string());
                evicted
            };
            self.fill(key, template, chain, evicted);
        }
    }

    /// Makes one container like `template` for the pool in the background, after undoing
    /// `evicted`.
    fn fill(self: &Arc<Self>, key: &str, template: &Record, chain: &str, evicted: Option<Warm>) {
        let (me, key, template, chain) = (
            self.clone(),
            key.to_string(),
            template.clone(),
            chain.to_string(),
        );
        tokio::spawn(async move {
            if let Some(w) = evicted {
                me.discard_warm(w).await;
            }
            let made = me.make_warm(&template, &chain).await;
            // It counts as being made until it is in the pool or undone, so that emptying the
            // pool (at the engine's stop) waits for it.
            let done = |p: &mut Inner| {
                if let Some(i) = p.filling.iter().position(|k| *k == key) {
                    p.filling.remove(i);
                }
            };
            let (rec, held) = match made {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%e, "making a container ahead of time failed");
                    done(&mut me.pool.inner());
                    return;
                }
            };
            let id = rec.id.clone();
            let w = Warm {
                key: key.clone(),
                rec,
                held,
            };
            let unwanted = {
                let mut p = me.pool.inner();
                if p.capacity == 0 {
                    Some(w)
                } else {
                    p.ready.push(w);
                    done(&mut p);
                    None
                }
            };
            if let Some(w) = unwanted {
                me.discard_warm(w).await;
                done(&mut me.pool.inner());
                return;
            }
            tokio::time::sleep(WARM_IDLE).await;
            if let Some(w) = me.pool.take_id(&id) {
                me.discard_warm(w).await;
            }
        });
    }

    /// Makes a container like `template` up to its first process's `execve`, with a new ID
    /// and no name; whatever was made is undone if a step fails.
    async fn make_warm(&self, template: &Record, chain: &str) -> Result<(Record, Held)> {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let rec = Record {
            id: id.clone(),
            name: String::new(),
            snapshot: snapshot_key(&id),
            created: strata_runtime::state::now_rfc3339(),
            state: State::default(),
            ..template.clone()
        };
        let bundle = self.bundle(&id);
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io("create directory", &bundle))?;
        let made = async {
            self.prepare_rootfs(&rec, chain).await?;
            let mounts = self.rootfs_mounts(&rec).await?;
            self.write_bundle(&rec, &mounts, &bundle, &rootfs)?;
            self.hold_monitor(&rec, &bundle).await
        }
        .await;
        match made {
            Ok(held) => Ok((rec, held)),
            Err(e) => {
                self.unmake_warm(&rec).await;
                Err(e)
            }
        }
    }

    /// Starts a monitor that creates the container of `rec` and holds it.
    async fn hold_monitor(&self, rec: &Record, bundle: &Path) -> Result<Held> {
        let err = |message: String| ContainerError::Start {
            name: "(made ahead of time)".into(),
            message,
        };
        let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| err(format!("pipe: {e}")))?;
        let path = self.monitor.clone();
        let spare = tokio::task::spawn_blocking(move || spare::spawn_spare(&path))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(format!("run {}: {e}", self.monitor.display())))?;
        let args = self.monitor_args(rec, bundle, None);
        // Were it not sent, the monitor ends when its socket does, here.
        monitor::send_job(&spare.sock, &args, &status_w, None, true)
            .map_err(|e| err(format!("hand the container to its monitor: {e}")))?;
        drop(status_w);
        let mut status = status_pipe(status_r).map_err(err)?;
        let mut child = spare.child;
        match read_started(&mut status, "created ").await {
            Ok(_) => Ok(Held {
                child,
                sock: spare.sock,
                status,
            }),
            Err(message) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(err(message))
            }
        }
    }

    /// Starts a container taken from the pool: its monitor goes on from the created
    /// container, with the client attached before the start, if any.
    pub(super) async fn release_to_start(&self, rec: &Record, held: Held) -> Result<Launched> {
        let start_err = |message: String| ContainerError::Start {
            name: rec.name.clone(),
            message,
        };
        let slot = self.take_monitor_slot(rec).await?;
        let Held {
            child,
            sock,
            status,
        } = held;
        let pre = attach::take_preattached(&rec.id);
        let sent = monitor::send_go(&sock, pre.as_ref().map(|p| p.conn.as_raw_fd()));
        drop(pre);
        // Not needed after the `go`; without it, the monitor deletes the container.
        drop(sock);
        sent.map_err(|e| start_err(format!("tell its monitor to start it: {e}")))?;
        Launched::when_started(status, child, slot)
            .await
            .map_err(start_err)
    }

    /// Lets the container a monitor holds go: the monitor deletes it and ends (killed, with
    /// the container, if it does not in time).
    pub(super) async fn release_held(&self, id: &str, held: Held) {
        let Held {
            mut child, sock, ..
        } = held;
        drop(sock);
        if tokio::time::timeout(RELEASE_WAIT, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                id,
                "a monitor did not let go of its container in time; killing both"
            );
            let _ = child.start_kill();
            let _ = child.wait().await;
            self.kill_orphan(id).await;
        }
    }

    /// Undoes a pooled container.
    async fn discard_warm(&self, w: Warm) {
        self.release_held(&w.rec.id, w.held).await;
        self.unmake_warm(&w.rec).await;
    }

    /// Unmounts, removes the snapshot of and discards the directory of a pooled container.
    async fn unmake_warm(&self, rec: &Record) {
        let bundle = self.bundle(&rec.id);
        if let Err(e) = strata_snapshotter::mount::unmount_all(&bundle.join("rootfs")) {
            tracing::warn!(%e, id = rec.id, "unmounting a container made ahead of time failed");
        }
        let req = RemoveSnapshotRequest {
            key: rec.snapshot.clone(),
            ..Default::default()
        };
        match self.storage.snapshots().remove(req).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => {
                tracing::warn!(%s, id = rec.id, "removing the snapshot of a container made ahead of time failed")
            }
        }
        self.discard_dir(&bundle);
    }

    /// Empties the pool, after the containers being made are done (before images go: their
    /// snapshots are the images' layers' children).
    pub async fn drain_warm(&self) {
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        loop {
            let (taken, filling) = {
                let mut p = self.pool.inner();
                (std::mem::take(&mut p.ready), !p.filling.is_empty())
            };
            for w in taken {
                self.discard_warm(w).await;
            }
            if !filling || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// At the engine's stop: no more containers are made ahead of time, the pool is emptied,
    /// and the containers taken from it but not started are let go by their monitors (and
    /// unmounted: they are mounted again at their start, as any created container).
    pub async fn stop_warm(&self) {
        self.pool.set_capacity(0);
        self.drain_warm().await;
        let held: Vec<_> = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (id, h) in held {
            self.release_held(&id, h).await;
            let rootfs = self.bundle(&id).join("rootfs");
            if let Err(e) = strata_snapshotter::mount::unmount_all(&rootfs) {
                tracing::warn!(%e, id, "unmounting a created container failed");
            }
        }
    }
}
