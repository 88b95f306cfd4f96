//! A thin, test-friendly wrapper over the snapshots client, and [`Harness`]: one plugin process
//! with its sandbox, ready for a case.
//!
//! Every RPC has a `try_*` method that returns the raw [`tonic::Status`] (for error-path tests)
//! and a plain method that turns a failure into an error saying which call failed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{anyhow, bail, ensure, Context, Result};
use prost_types::{FieldMask, Timestamp};
use strata_proto::snapshots::snapshots_client::SnapshotsClient;
use strata_proto::snapshots::{
    CleanupRequest, CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, MountsRequest,
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest,
    UsageRequest, ViewSnapshotRequest,
};
use strata_proto::storage::{
    CapabilitiesRequest, CapabilitiesResponse, StatusRequest, StatusResponse,
};
use strata_proto::types::Mount;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::fstest::{self, Change};
use crate::harness::{PluginProcess, PluginSpec, Sandbox};
use crate::mounts::MountGuard;

/// The `snapshotter` field sent with every request (plugins ignore it).
pub const SNAPSHOTTER: &str = "strata-tests";

/// The GC label containerd's suite puts on most snapshots.
pub const GC_ROOT: &str = "containerd.io/gc.root";

/// Driver.Status rows that count snapshots; when a driver has one, it must equal List's count.
pub const STATUS_COUNT_ROWS: &[&str] = &["Snapshots", "Layers"];

/// Snapshot labels.
pub type Labels = HashMap<String, String>;

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `containerd.io/gc.root=<now>`, as containerd's suite labels its snapshots.
pub fn gc_root_labels() -> Labels {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    labels(&[(GC_ROOT, &now.to_string())])
}

/// The snapshots client, one method per RPC. Cloning is cheap and clones share the connection.
#[derive(Debug, Clone)]
pub struct Snap {
    client: SnapshotsClient<Channel>,
}

impl Snap {
    /// Wraps a client.
    pub fn new(client: SnapshotsClient<Channel>) -> Self {
        Self { client }
    }

    /// The underlying client (for streaming calls).
    pub fn raw(&self) -> SnapshotsClient<Channel> {
        self.client.clone()
    }

    /// Prepare, returning the raw status on failure.
    pub async fn try_prepare(
        &self,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>, Status> {
        let req = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
            parent: parent.into(),
            labels,
        };
        Ok(self.raw().prepare(req).await?.into_inner().mounts)
    }

    /// Prepare with the GC label; the mounts must not be empty.
    pub async fn prepare(&self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        self.prepare_with(key, parent, gc_root_labels()).await
    }

    /// Prepare with labels; the mounts must not be empty.
    pub async fn prepare_with(
        &self,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        let mounts = self
            .try_prepare(key, parent, labels)
            .await
            .map_err(|s| status_error(s, &format!("Prepare({key:?}, parent {parent:?})")))?;
        ensure!(
            !mounts.is_empty(),
            "Prepare({key:?}, parent {parent:?}) returned no mounts (want at least one)"
        );
        Ok(mounts)
    }

    /// View, returning the raw status on failure.
    pub async fn try_view(
        &self,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>, Status> {
        let req = ViewSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
            parent: parent.into(),
            labels,
        };
        Ok(self.raw().view(req).await?.into_inner().mounts)
    }

    /// View with the GC label; the mounts must not be empty.
    pub async fn view(&self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        self.view_with(key, parent, gc_root_labels()).await
    }

    /// View with labels; the mounts must not be empty.
    pub async fn view_with(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let mounts = self
            .try_view(key, parent, labels)
            .await
            .map_err(|s| status_error(s, &format!("View({key:?}, parent {parent:?})")))?;
        ensure!(
            !mounts.is_empty(),
            "View({key:?}, parent {parent:?}) returned no mounts (want at least one)"
        );
        Ok(mounts)
    }

    /// Mounts, returning the raw status on failure.
    pub async fn try_mounts(&self, key: &str) -> Result<Vec<Mount>, Status> {
        let req = MountsRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        };
        Ok(self.raw().mounts(req).await?.into_inner().mounts)
    }

    /// Mounts.
    pub async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.try_mounts(key)
            .await
            .map_err(|s| status_error(s, &format!("Mounts({key:?})")))
    }

    /// Commit, returning the raw status on failure.
    pub async fn try_commit(&self, name: &str, key: &str, labels: Labels) -> Result<(), Status> {
        let req = CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            name: name.into(),
            key: key.into(),
            labels,
            parent: String::new(),
        };
        self.raw().commit(req).await?;
        Ok(())
    }

    /// Commit with the GC label.
    pub async fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.commit_with(name, key, gc_root_labels()).await
    }

    /// Commit with labels.
    pub async fn commit_with(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.try_commit(name, key, labels)
            .await
            .map_err(|s| status_error(s, &format!("Commit(name {name:?}, key {key:?})")))
    }

    /// Remove, returning the raw status on failure.
    pub async fn try_remove(&self, key: &str) -> Result<(), Status> {
        let req = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        };
        self.raw().remove(req).await?;
        Ok(())
    }

    /// Remove.
    pub async fn remove(&self, key: &str) -> Result<()> {
        self.try_remove(key)
            .await
            .map_err(|s| status_error(s, &format!("Remove({key:?})")))
    }

    /// Stat, returning the raw status on failure.
    pub async fn try_stat(&self, key: &str) -> Result<Info, Status> {
        let req = StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        };
        self.raw()
            .stat(req)
            .await?
            .into_inner()
            .info
            .ok_or_else(|| Status::internal("test: Stat response has no info"))
    }

    /// Stat.
    pub async fn stat(&self, key: &str) -> Result<Info> {
        self.try_stat(key)
            .await
            .map_err(|s| status_error(s, &format!("Stat({key:?})")))
    }

    /// Update, returning the raw status on failure. `paths: None` sends no mask at all;
    /// `Some(&[])` sends a present but empty mask (as containerd 1.6's proxy does).
    pub async fn try_update(&self, info: Info, paths: Option<&[&str]>) -> Result<Info, Status> {
        let req = UpdateSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            info: Some(info),
            update_mask: paths.map(|p| FieldMask {
                paths: p.iter().map(|s| (*s).to_owned()).collect(),
            }),
        };
        self.raw()
            .update(req)
            .await?
            .into_inner()
            .info
            .ok_or_else(|| Status::internal("test: Update response has no info"))
    }

    /// Update.
    pub async fn update(&self, info: Info, paths: Option<&[&str]>) -> Result<Info> {
        let name = info.name.clone();
        self.try_update(info, paths)
            .await
            .map_err(|s| status_error(s, &format!("Update({name:?}, paths {paths:?})")))
    }

    /// List, returning the raw status on failure.
    pub async fn try_list(&self, filters: &[&str]) -> Result<Vec<Info>, Status> {
        let req = ListSnapshotsRequest {
            snapshotter: SNAPSHOTTER.into(),
            filters: filters.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut stream = self.raw().list(req).await?.into_inner();
        let mut all = Vec::new();
        while let Some(batch) = stream.message().await? {
            all.extend(batch.info);
        }
        Ok(all)
    }

    /// List.
    pub async fn list(&self, filters: &[&str]) -> Result<Vec<Info>> {
        self.try_list(filters)
            .await
            .map_err(|s| status_error(s, &format!("List(filters {filters:?})")))
    }

    /// Usage, returning the raw status on failure: (size, inodes).
    pub async fn try_usage(&self, key: &str) -> Result<(i64, i64), Status> {
        let req = UsageRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.into(),
        };
        let resp = self.raw().usage(req).await?.into_inner();
        Ok((resp.size, resp.inodes))
    }

    /// Usage: (size, inodes).
    pub async fn usage(&self, key: &str) -> Result<(i64, i64)> {
        self.try_usage(key)
            .await
            .map_err(|s| status_error(s, &format!("Usage({key:?})")))
    }

    /// Cleanup, returning the raw status on failure.
    pub async fn try_cleanup(&self) -> Result<(), Status> {
        let req = CleanupRequest {
            snapshotter: SNAPSHOTTER.into(),
        };
        self.raw().cleanup(req).await?;
        Ok(())
    }

    /// Cleanup.
    pub async fn cleanup(&self) -> Result<()> {
        self.try_cleanup()
            .await
            .map_err(|s| status_error(s, "Cleanup()"))
    }
}

/// An error for a failed call, keeping the code and message.
pub fn status_error(status: Status, call: &str) -> anyhow::Error {
    anyhow!(
        "{call} failed: code {:?}, message {:?}",
        status.code(),
        status.message()
    )
}

/// Checks that `result` failed with `code`; returns the status so callers can check the message.
pub fn expect_code<T: Debug>(result: Result<T, Status>, code: Code, call: &str) -> Result<Status> {
    match result {
        Ok(value) => {
            bail!("{call}: expected an error with code {code:?}, but it succeeded with {value:?}")
        }
        Err(status) if status.code() == code => Ok(status),
        Err(status) => bail!(
            "{call}: expected code {code:?}, got {:?} with message {:?}",
            status.code(),
            status.message()
        ),
    }
}

/// The kind of an Info (unknown values read as UNKNOWN).
pub fn kind_of(info: &Info) -> Kind {
    Kind::try_from(info.kind).unwrap_or(Kind::Unknown)
}

/// Checks name, parent and kind of an Info.
pub fn check_info(info: &Info, name: &str, parent: &str, kind: Kind) -> Result<()> {
    ensure!(
        info.name == name,
        "Info.name: want {name:?}, got {:?} (info {info:?})",
        info.name
    );
    ensure!(
        info.parent == parent,
        "Info.parent of {name:?}: want {parent:?}, got {:?}",
        info.parent
    );
    ensure!(
        kind_of(info) == kind,
        "Info.kind of {name:?}: want {kind:?}, got {:?}",
        kind_of(info)
    );
    Ok(())
}

/// A timestamp as a SystemTime; a missing timestamp is an error.
pub fn time_of(ts: &Option<Timestamp>, what: &str) -> Result<SystemTime> {
    let ts = ts.ok_or_else(|| anyhow!("{what} is not set (timestamps must always be filled)"))?;
    SystemTime::try_from(ts).map_err(|e| anyhow!("{what} {ts:?} is not a valid time: {e}"))
}

/// One plugin process with its sandbox and a client. Dropping it stops the plugin, unmounts
/// what is left and removes the dirs (fields drop in this order).
#[derive(Debug)]
pub struct Harness {
    /// The client on the plugin's socket.
    pub snap: Snap,
    /// The plugin process.
    pub plugin: PluginProcess,
    /// The spec it was started from.
    pub spec: PluginSpec,
    /// Its root and scratch dirs.
    pub sandbox: Sandbox,
}

impl Harness {
    /// Starts a plugin of `spec` on a fresh sandbox.
    pub async fn start(spec: &PluginSpec) -> Result<Self> {
        let sandbox = Sandbox::new()?;
        let plugin = PluginProcess::start(spec, &sandbox).await?;
        Ok(Self {
            snap: Snap::new(plugin.snapshots()),
            plugin,
            spec: spec.clone(),
            sandbox,
        })
    }

    /// Stops the running plugin gracefully (it must exit 0) and starts it again on the same
    /// root with `extra_env`.
    pub async fn restart(&mut self, extra_env: &[(&str, &str)]) -> Result<()> {
        let status = self
            .plugin
            .stop()
            .context("stop the plugin before a restart")?;
        ensure!(
            status.success(),
            "SIGTERM must stop the plugin with exit code 0, got {status}; its log:\n{}",
            self.plugin.log_tail(30)
        );
        self.start_again(extra_env).await
    }

    /// Starts the plugin again on the same root after it stopped or died.
    pub async fn start_again(&mut self, extra_env: &[(&str, &str)]) -> Result<()> {
        let plugin = PluginProcess::start_with_env(&self.spec, &self.sandbox, extra_env)
            .await
            .context("start the plugin again on the same root")?;
        self.snap = Snap::new(plugin.snapshots());
        self.plugin = plugin;
        Ok(())
    }

    /// Driver.Capabilities, or None when the plugin has no Driver service (a reference).
    pub async fn capabilities(&self) -> Result<Option<CapabilitiesResponse>> {
        if !self.spec.has_driver_service() {
            return Ok(None);
        }
        let caps = self
            .plugin
            .driver()
            .capabilities(CapabilitiesRequest {})
            .await
            .context("Driver.Capabilities")?;
        Ok(Some(caps.into_inner()))
    }

    /// Driver.Status, or None when the plugin has no Driver service (a reference).
    pub async fn driver_status(&self) -> Result<Option<StatusResponse>> {
        if !self.spec.has_driver_service() {
            return Ok(None);
        }
        let status = self
            .plugin
            .driver()
            .status(StatusRequest {})
            .await
            .context("Driver.Status")?;
        Ok(Some(status.into_inner()))
    }

    /// Mounts `mounts` on a fresh dir under the sandbox.
    pub fn mount(&self, mounts: &[Mount]) -> Result<MountGuard> {
        let target = self.sandbox.new_dir("mnt")?;
        MountGuard::mount(mounts, &target)
    }

    /// A fresh, empty reference dir (mode 0755).
    pub fn flat_dir(&self) -> Result<PathBuf> {
        self.sandbox.new_dir("flat")
    }

    /// How many snapshots have storage under the root, per the driver's layout.
    pub fn storage_count(&self) -> Result<usize> {
        (self.spec.storage_count)(self.sandbox.root()).with_context(|| {
            format!(
                "count snapshot storage under {}",
                self.sandbox.root().display()
            )
        })
    }

    /// Prepares `key` on `parent`, mounts it, applies `changes`, unmounts and commits it as
    /// `name`.
    pub async fn commit_layer(&self, name: &str, parent: &str, changes: &[Change]) -> Result<()> {
        let key = format!("{name}-active");
        let mounts = self.snap.prepare(&key, parent).await?;
        let guard = self.mount(&mounts)?;
        fstest::apply(guard.path(), changes)?;
        guard.unmount()?;
        self.snap.commit(name, &key).await
    }

    /// Checks the store is consistent: every snapshot List shows Stats to the same Info, its
    /// mounts (Mounts for active and view, a View for committed ones) mount and read; after
    /// Cleanup the driver keeps storage for exactly the listed snapshots. Returns the list.
    pub async fn check_consistent(&self) -> Result<Vec<Info>> {
        let all = self.snap.list(&[]).await?;
        let mut names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        ensure!(
            names.len() == before,
            "List returned a snapshot twice: {names:?}"
        );
        for (n, info) in all.iter().enumerate() {
            let stat = self.snap.stat(&info.name).await?;
            ensure!(
                &stat == info,
                "Stat({:?}) must equal its List entry:\n  stat {stat:?}\n  list {info:?}",
                info.name
            );
            let (mounts, view_key) = match kind_of(info) {
                Kind::Active | Kind::View => (self.snap.mounts(&info.name).await?, None),
                Kind::Committed => {
                    let key = format!("consistency-view-{n}");
                    (self.snap.view(&key, &info.name).await?, Some(key))
                }
                Kind::Unknown => bail!("List shows {:?} with kind UNKNOWN", info.name),
            };
            let guard = self
                .mount(&mounts)
                .with_context(|| format!("mount snapshot {:?} ({:?})", info.name, kind_of(info)))?;
            fstest::read_everything(guard.path())
                .with_context(|| format!("read snapshot {:?}", info.name))?;
            guard.unmount()?;
            if let Some(key) = view_key {
                self.snap.remove(&key).await?;
            }
        }
        match self.snap.try_cleanup().await {
            Ok(()) => {}
            Err(s) if s.code() == Code::Unimplemented => {}
            Err(s) => return Err(status_error(s, "Cleanup()")),
        }
        // A driver that reports a snapshot count in its Status must agree with List.
        let rows = self
            .driver_status()
            .await?
            .map(|s| s.rows)
            .unwrap_or_default();
        for row in &rows {
            if STATUS_COUNT_ROWS.contains(&row.key.as_str()) {
                let n: usize = row.value.parse().with_context(|| {
                    format!(
                        "Driver.Status row {:?} is not a number: {:?}",
                        row.key, row.value
                    )
                })?;
                ensure!(
                    n == all.len(),
                    "Driver.Status row {:?} says {n}, but List shows {} snapshots",
                    row.key,
                    all.len()
                );
            }
        }
        let stored = self.storage_count()?;
        let fits = if self.spec.storage_per_snapshot {
            stored == all.len()
        } else {
            stored <= all.len()
        };
        ensure!(
            fits,
            "after Cleanup the driver keeps storage for {stored} snapshots, but List shows {} ({names:?})",
            all.len()
        );
        Ok(all)
    }
}
