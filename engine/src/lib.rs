//! The Strata engine, `stratad`: image and container metadata in sled, a content store of layer
//! blobs, the storage plugin it supervises, container lifecycle on `strata-runtime`, and the
//! engine gRPC API (`strata.engine.v1`) on a unix socket.
//!
//! - [`config`]: settings from the TOML file and flags;
//! - [`storage`]: starting, supervising and talking to the snapshotter plugin;
//! - [`content`]: blobs by digest, verified on the way in;
//! - [`image`]: references, layers, image metadata, archives (load/save/import), unpacking;
//! - [`events`]: the event stream of `strata events`;
//! - [`volume`]: named and anonymous volumes (the local driver) and mount flag parsing.

pub mod config;
pub mod container;
pub mod content;
pub mod daemon;
pub mod events;
pub mod image;
pub mod server;
pub mod storage;
pub mod volume;

/// Runs the engine with `config` until SIGTERM.
pub async fn run(config: config::Config) -> anyhow::Result<()> {
    let parts = daemon::open(&config).await?;
    let (images, services) = server::images::wire(&config, &parts)?;
    daemon::serve(&config, &parts, images, services).await
}
