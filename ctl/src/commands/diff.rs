//! `strata diff CONTAINER`: what changed in the container's filesystem against its image,
//! one `A` (added), `C` (changed) or `D` (deleted) line per path, as Docker prints them.

use strata_proto::engine::ChangesRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub container: String,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let changes = client
        .containers()
        .changes(ChangesRequest {
            container: a.container,
        })
        .await?
        .into_inner()
        .changes;
    for c in changes {
        println!("{} {}", c.kind, c.path);
    }
    Ok(0)
}
