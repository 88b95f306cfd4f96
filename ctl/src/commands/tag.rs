//! `strata tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]`

use strata_proto::engine::TagRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (name[:tag], id or id prefix)
    pub source: String,
    /// The new name[:tag]
    pub target: String,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    client
        .images()
        .tag(TagRequest {
            source: a.source,
            target: a.target,
        })
        .await?;
    Ok(0)
}
