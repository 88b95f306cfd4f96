//! Running the engine: open the metadata and content store, start the storage, find the
//! containers again, serve the API until SIGTERM, then stop cleanly. Containers keep running
//! across an engine restart: each is owned by its monitor process.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use strata_proto::engine::containers_server::ContainersServer;
use strata_proto::engine::system_server::SystemServer;
use strata_proto::engine::volumes_server::VolumesServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::container::Containers;
use crate::events::Events;
use crate::server::containers::ContainerService;
use crate::server::system::SystemService;
use crate::server::volumes::VolumeService;
use crate::server::ImageResolver;
use crate::storage::Storage;
use crate::volume::Volumes;

/// Binds the API socket (mode 0660), replacing a stale one but never a live one.
fn bind(address: &Path) -> Result<UnixListener> {
    if let Some(dir) = address.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(address) {
        if !m.file_type().is_socket() {
            bail!(
                "refusing to replace {}: it exists and is not a socket",
                address.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(address).is_ok() {
            bail!(
                "another stratad is already serving on {}",
                address.display()
            );
        }
        std::fs::remove_file(address)
            .with_context(|| format!("remove stale socket {}", address.display()))?;
    }
    let l = UnixListener::bind(address).with_context(|| format!("bind {}", address.display()))?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", address.display()))?;
    Ok(l)
}

/// The pieces the services share.
pub struct Parts {
    pub db: sled::Db,
    pub storage: Storage,
    pub containers: Arc<Containers>,
    pub events: Arc<Events>,
    /// The volumes (`prune` serves system prune too).
    pub volumes: Arc<Volumes>,
}

/// Opens everything but the API.
pub async fn open(config: &Config) -> Result<Parts> {
    for d in [&config.root, &config.run_root] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    std::fs::set_permissions(&config.root, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("chmod {}", config.root.display()))?;
    let db_path = config.root.join("metadata.db");
    let db =
        strata_snapshotter::sleddb::open(&db_path, sled::Config::new()).with_context(|| {
            format!(
                "open the engine metadata {} (is another stratad running on this root?)",
                db_path.display()
            )
        })?;
    let storage = Storage::start(
        &config.storage,
        &config.root,
        &config.run_root,
        &config.log_level,
    )
    .await?;
    let events = Arc::new(Events::default());
    let containers = Containers::open(
        &db,
        storage.clone(),
        &config.root,
        &config.run_root,
        events.clone(),
    )?;
    containers.restore().await;
    containers.warm_pool().set_capacity(config.warm_pool);
    let volumes = containers.volumes().clone();
    Ok(Parts {
        db,
        storage,
        containers,
        events,
        volumes,
    })
}

/// Serves the API on `config.address` until SIGTERM or SIGINT.
pub async fn serve(
    config: &Config,
    parts: &Parts,
    images: Arc<dyn ImageResolver>,
    extra: Vec<ServiceAdder>,
) -> Result<()> {
    let listener = bind(&config.address)?;
    let system = SystemService {
        storage: parts.storage.clone(),
        containers: parts.containers.clone(),
        root: config.root.clone(),
        extra: Box::new(Vec::new),
        events: parts.events.clone(),
        images: images.clone(),
    };
    let containers = ContainerService {
        containers: parts.containers.clone(),
        images,
        storage: parts.storage.clone(),
    };
    // Set when a stop signal arrives; calls in flight (a `logs -f`, a `wait`) then get a
    // few seconds before the engine stops anyway. Containers keep running.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let shutdown = async move {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = i.recv() => tracing::info!("SIGINT: stopping"),
                }
            }
            _ => std::future::pending::<()>().await,
        }
        signalled.notify_one();
    };
    let mut router = tonic::transport::Server::builder()
        .add_service(SystemServer::new(system))
        .add_service(ContainersServer::new(containers))
        .add_service(VolumesServer::new(VolumeService {
            volumes: parts.volumes.clone(),
        }));
    for add in extra {
        router = add(router);
    }
    tracing::info!(address = %config.address.display(), driver = parts.storage.driver(), "stratad serving");
    let served = router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(&config.address);
    parts.containers.stop_warm().await;
    parts.storage.shutdown().await;
    parts.db.flush().context("flush the engine metadata")?;
    served.context("serve the engine API")?;
    Ok(())
}

/// Adds a service to the router (the image service lives in its own module).
pub type ServiceAdder =
    Box<dyn FnOnce(tonic::transport::server::Router) -> tonic::transport::server::Router + Send>;
