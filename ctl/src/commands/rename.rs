//! `strata rename CONTAINER NEW_NAME`

use strata_proto::engine::RenameContainerRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub container: String,
    pub new_name: String,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    client
        .containers()
        .rename(RenameContainerRequest {
            container: a.container,
            new_name: a.new_name,
        })
        .await?;
    Ok(0)
}
