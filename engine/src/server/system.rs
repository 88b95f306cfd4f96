//! `strata.engine.v1.System`: version and info.

use std::sync::Arc;

use strata_proto::engine::system_server::System;
use strata_proto::engine::*;
use tonic::{Request, Response, Status};

use crate::container::record::Status as CStatus;
use crate::container::Containers;
use crate::events::{Events, Filter};
use crate::storage::Storage;

/// The engine's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The engine API's version.
pub const API_VERSION: &str = "1";

/// Serves version and info.
pub struct SystemService {
    pub storage: Storage,
    pub containers: Arc<Containers>,
    pub root: std::path::PathBuf,
    /// Extra rows (e.g. the image count) computed on demand.
    pub extra: Box<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
    pub events: Arc<Events>,
    /// For system prune.
    pub images: Arc<dyn super::ImageResolver>,
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn cgroup_version() -> &'static str {
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified").is_dir();
    match (unified, hybrid) {
        (true, _) => "2",
        (false, true) => "1 (hybrid)",
        (false, false) => "1",
    }
}

#[tonic::async_trait]
impl System for SystemService {
    async fn version(
        &self,
        _r: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: VERSION.into(),
            api_version: API_VERSION.into(),
            git_commit: option_env!("STRATA_GIT_COMMIT").unwrap_or("").into(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            kernel: kernel(),
        }))
    }

    type EventsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Event, Status>> + Send + 'static>>;

    async fn events(
        &self,
        r: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let r = r.into_inner();
        let filter = Filter::parse(&r.filters).map_err(Status::invalid_argument)?;
        let until = r.until_nanos;
        if until > 0 && r.since_nanos > until {
            return Err(Status::invalid_argument("events: --since is after --until"));
        }
        let (old, mut rx) = self.events.subscribe(r.since_nanos);
        let (tx, out) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let ended = |e: &Event| until > 0 && e.time_nanos > until;
            for e in old {
                if ended(&e) {
                    return;
                }
                if filter.matches(&e) && tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            loop {
                let next = if until > 0 {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i64);
                    let left = std::time::Duration::from_nanos((until - now).max(0) as u64);
                    match tokio::time::timeout(left, rx.recv()).await {
                        Ok(n) => n,
                        Err(_) => return,
                    }
                } else {
                    tokio::select! {
                        n = rx.recv() => n,
                        _ = tx.closed() => return,
                    }
                };
                match next {
                    Ok(e) if ended(&e) => return,
                    Ok(e) => {
                        if filter.matches(&e) && tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "events: this client fell {n} events behind and missed them"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn prune(
        &self,
        r: Request<SystemPruneRequest>,
    ) -> Result<Response<SystemPruneResponse>, Status> {
        let r = r.into_inner();
        // Containers first: the images and volumes they used become unused.
        let containers =
            super::containers::prune_containers(&self.containers, &self.storage, &[]).await?;
        let volumes = if r.volumes {
            let v = self.containers.volumes().prune(false).await?;
            Some(PruneResponse {
                deleted: v.deleted,
                untagged: Vec::new(),
                space_reclaimed: v.space_reclaimed,
            })
        } else {
            None
        };
        let images = self.images.prune(r.all).await?;
        Ok(Response::new(SystemPruneResponse {
            containers: Some(containers),
            images: Some(images),
            volumes,
        }))
    }

    async fn info(&self, _r: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let all = self
            .containers
            .records()
            .all()
            .map_err(|e| Status::internal(e.to_string()))?;
        let count = |st: CStatus| {
            all.iter()
                .filter(|r| r.state.status == st)
                .count()
                .to_string()
        };
        let mut engine = vec![
            ("Server Version".to_string(), VERSION.to_string()),
            ("Containers".to_string(), all.len().to_string()),
            (" Running".to_string(), count(CStatus::Running)),
            (" Paused".to_string(), count(CStatus::Paused)),
            (
                " Stopped".to_string(),
                (all.len()
                    - all
                        .iter()
                        .filter(|r| matches!(r.state.status, CStatus::Running | CStatus::Paused))
                        .count())
                .to_string(),
            ),
        ];
        engine.extend((self.extra)());
        engine.extend([
            (
                "Storage Driver".to_string(),
                self.storage.driver().to_string(),
            ),
            ("Logging Driver".to_string(), "json-file".to_string()),
            ("Cgroup Version".to_string(), cgroup_version().to_string()),
            ("Default Runtime".to_string(), "strata-runtime".to_string()),
            ("Warm Pool".to_string(), {
                let (ready, capacity) = self.containers.warm_pool().size();
                if capacity == 0 {
                    "off".to_string()
                } else {
                    format!("{ready} ready, up to {capacity}")
                }
            }),
            ("Kernel Version".to_string(), kernel()),
            (
                "Architecture".to_string(),
                std::env::consts::ARCH.to_string(),
            ),
            (
                "Strata Root Dir".to_string(),
                self.root.display().to_string(),
            ),
        ]);
        let storage = self.storage.status().await;
        let kv = |v: Vec<(String, String)>| {
            v.into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect()
        };
        Ok(Response::new(InfoResponse {
            engine: kv(engine),
            storage_driver: self.storage.driver().into(),
            storage: kv(storage),
        }))
    }
}
