//! `strata system …`: Docker's management group for the engine — `prune` (stopped
//! containers, dangling or unused images, with `--volumes` anonymous volumes), `info` and
//! `events`.

use clap::Subcommand;

use super::{events, info, prune};
use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove stopped containers, dangling images and (with --volumes) unused anonymous volumes
    Prune(prune::SystemArgs),
    /// Show engine and storage information
    Info(info::Args),
    /// Stream the engine's events
    Events(events::Args),
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    match a.command {
        SystemCommand::Prune(a) => prune::system(a, client).await,
        SystemCommand::Info(a) => info::run(a, client).await,
        SystemCommand::Events(a) => events::run(a, client).await,
    }
}
