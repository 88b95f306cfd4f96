//! `strata container …`: Docker's management group for containers — `prune`, and the
//! container verbs under their group names (`container ls`, `container rm`, …).

use clap::Subcommand;

use super::{cp, diff, inspect, logs, prune, ps, rm, start, stats, stop, top};
use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Remove all stopped containers
    Prune(prune::ContainerArgs),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(ps::Args),
    /// Remove containers
    #[command(visible_alias = "remove")]
    Rm(rm::Args),
    /// Start created or stopped containers
    Start(start::Args),
    /// Stop running containers
    Stop(stop::Args),
    /// Show a container's output
    Logs(logs::Args),
    /// Show low-level information on containers, as JSON
    Inspect(inspect::Args),
    /// Show a container's processes
    Top(top::Args),
    Port(super::port::Args),
    /// Show containers' resource usage
    Stats(stats::Args),
    /// Copy files between a container and the host
    Cp(cp::Args),
    /// Show what changed in a container's filesystem
    Diff(diff::Args),
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    match a.command {
        ContainerCommand::Prune(a) => prune::containers(a, client).await,
        ContainerCommand::Ls(a) => ps::run(a, client).await,
        ContainerCommand::Rm(a) => rm::run(a, client).await,
        ContainerCommand::Start(a) => start::run(a, client).await,
        ContainerCommand::Stop(a) => stop::run(a, client).await,
        ContainerCommand::Logs(a) => logs::run(a, client).await,
        ContainerCommand::Inspect(a) => inspect::run(a, client).await,
        ContainerCommand::Top(a) => top::run(a, client).await,
        ContainerCommand::Port(a) => super::port::run(a, client).await,
        ContainerCommand::Stats(a) => stats::run(a, client).await,
        ContainerCommand::Cp(a) => cp::run(a, client).await,
        ContainerCommand::Diff(a) => diff::run(a, client).await,
    }
}
