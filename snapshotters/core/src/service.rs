//! The gRPC services a plugin serves: containerd's `Snapshots` and Strata's `Driver`.

use std::pin::Pin;
use std::sync::Arc;

use prost_types::FieldMask;
use strata_proto::snapshots::snapshots_server::Snapshots;
use strata_proto::snapshots::*;
use strata_proto::storage::driver_server::Driver;
use strata_proto::storage::{
    CapabilitiesRequest, CapabilitiesResponse, StatusRequest, StatusResponse, StatusRow,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::core::Core;
use crate::error::Result;
use crate::snapshotter::{Kind, Snapshotter};

/// How many infos one List stream message carries.
const LIST_BATCH: usize = 100;

/// Serves a [`Core`] over gRPC.
pub struct SnapshotService<D> {
    core: Arc<Core<D>>,
}

impl<D> SnapshotService<D> {
    /// A service over `core`.
    pub fn new(core: Arc<Core<D>>) -> Self {
        SnapshotService { core }
    }
}

impl<D> Clone for SnapshotService<D> {
    fn clone(&self) -> Self {
        SnapshotService {
            core: self.core.clone(),
        }
    }
}

// Metadata reads and writes take microseconds (changes are made safe by a journal append, not
// a disk flush), and a driver's storage changes are a few directory operations, so the calls
// are answered on the async threads: a hop to the blocking pool would cost more than the work.
// Walks of whole trees (Usage, Cleanup, Status) go to the blocking pool.

impl<D: Snapshotter> SnapshotService<D> {
    /// Runs a blocking core operation off the async threads.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Core<D>) -> Result<T> + Send + 'static,
    {
        let core = self.core.clone();
        match tokio::task::spawn_blocking(move || f(&core)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::debug!(op, error = %e, "request failed");
                Err(e.into())
            }
            Err(join) => {
                tracing::error!(op, %join, "request handler panicked");
                Err(Status::internal(format!("{op}: internal error")))
            }
        }
    }
}

#[tonic::async_trait]
impl<D: Snapshotter> Snapshots for SnapshotService<D> {
    async fn prepare(
        &self,
        req: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let r = req.into_inner();
        tracing::debug!(key = %r.key, parent = %r.parent, "prepare");
        let mounts = self
            .core
            .create(Kind::Active, &r.key, &r.parent, r.labels)?;
        Ok(Response::new(PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        req: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let r = req.into_inner();
        tracing::debug!(key = %r.key, parent = %r.parent, "view");
        let mounts = self.core.create(Kind::View, &r.key, &r.parent, r.labels)?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        req: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let r = req.into_inner();
        let mounts = self.core.mounts(&r.key)?;
        Ok(Response::new(MountsResponse { mounts }))
    }

    async fn commit(&self, req: Request<CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        tracing::debug!(key = %r.key, name = %r.name, "commit");
        if !r.parent.is_empty() {
            // containerd 2.2's "rebase" commit: only the parent the snapshot already has is
            // accepted, since this snapshotter does not advertise the rebase capability.
            let (key, parent) = (r.key.clone(), r.parent.clone());
            let current = self.core.stat(&key)?.parent;
            if current != parent {
                return Err(Status::invalid_argument(format!(
                    "commit of {:?} onto parent {parent:?}: rebasing is not supported (its parent is {current:?})",
                    r.key
                )));
            }
        }
        self.core.commit(&r.name, &r.key, r.labels)?;
        Ok(Response::new(()))
    }

    async fn remove(&self, req: Request<RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        tracing::debug!(key = %r.key, "remove");
        self.core.remove(&r.key)?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let r = req.into_inner();
        let info = self.core.stat(&r.key)?;
        Ok(Response::new(StatSnapshotResponse { info: Some(info) }))
    }

    async fn update(
        &self,
        req: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let r = req.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("update: info is required"))?;
        let paths = r
            .update_mask
            .map(|FieldMask { paths }| paths)
            .unwrap_or_default();
        let info = self.core.update(info, &paths)?;
        Ok(Response::new(UpdateSnapshotResponse { info: Some(info) }))
    }

    type ListStream =
        Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send + 'static>>;

    async fn list(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let r = req.into_inner();
        let infos = self.core.list(&r.filters)?;
        let mut batches = Vec::with_capacity(infos.len() / LIST_BATCH + 1);
        let mut it = infos.into_iter().peekable();
        while it.peek().is_some() {
            batches.push(Ok(ListSnapshotsResponse {
                info: it.by_ref().take(LIST_BATCH).collect(),
            }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(&self, req: Request<UsageRequest>) -> Result<Response<UsageResponse>, Status> {
        let r = req.into_inner();
        let u = self.run("usage", move |c| c.usage(&r.key)).await?;
        Ok(Response::new(UsageResponse {
            size: u.size,
            inodes: u.inodes,
        }))
    }

    async fn cleanup(&self, _req: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        self.run("cleanup", |c| c.cleanup()).await?;
        Ok(Response::new(()))
    }
}

/// Serves the driver's status and capabilities.
pub struct DriverService<D> {
    core: Arc<Core<D>>,
}

impl<D> DriverService<D> {
    /// A service over `core`.
    pub fn new(core: Arc<Core<D>>) -> Self {
        DriverService { core }
    }
}

#[tonic::async_trait]
impl<D: Snapshotter> Driver for DriverService<D> {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let core = self.core.clone();
        let rows = tokio::task::spawn_blocking(move || core.status())
            .await
            .map_err(|e| Status::internal(format!("status: {e}")))??;
        Ok(Response::new(StatusResponse {
            driver: self.core.driver().name().to_string(),
            rows: rows
                .into_iter()
                .map(|(key, value)| StatusRow { key, value })
                .collect(),
        }))
    }

    async fn capabilities(
        &self,
        _req: Request<CapabilitiesRequest>,
    ) -> Result<Response<CapabilitiesResponse>, Status> {
        Ok(Response::new(self.core.driver().capabilities()))
    }
}
