//! `strata commit [-a AUTHOR] [-m MESSAGE] CONTAINER [NAME[:TAG]]`: a new image from a
//! container's changes (volumes and bind mounts are not part of it).

use strata_proto::engine::CommitRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Author of the new image
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Commit message (the history comment)
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// The container (name, id or id prefix)
    pub container: String,
    /// The new image's name[:tag] (none: an untagged image)
    pub reference: Option<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let r = client
        .images()
        .commit(CommitRequest {
            container: a.container,
            reference: a.reference.unwrap_or_default(),
            comment: a.message.unwrap_or_default(),
            author: a.author.unwrap_or_default(),
        })
        .await?
        .into_inner();
    println!("{}", r.id);
    Ok(0)
}
