//! `strata image …`: Docker's management group for images — `prune`, and the image verbs
//! under their group names (`image ls`, `image rm`, …).

use clap::Subcommand;

use super::{history, images, prune, rmi, tag};
use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Remove dangling images (with -a, every image no container uses)
    Prune(prune::ImageArgs),
    /// List images
    #[command(visible_alias = "list")]
    Ls(images::Args),
    /// Remove images
    #[command(visible_alias = "remove")]
    Rm(rmi::Args),
    /// Give an image another name
    Tag(tag::Args),
    /// Show the history of an image
    History(history::Args),
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    match a.command {
        ImageCommand::Prune(a) => prune::images(a, client).await,
        ImageCommand::Ls(a) => images::run(a, client).await,
        ImageCommand::Rm(a) => rmi::run(a, client).await,
        ImageCommand::Tag(a) => tag::run(a, client).await,
        ImageCommand::History(a) => history::run(a, client).await,
    }
}
