//! `strata rm [-f] [-v] CONTAINER...`

use strata_proto::engine::RemoveContainerRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill and remove running containers
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the anonymous volumes of the containers too
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let (force, volumes) = (a.force, a.volumes);
    super::for_each(&a.containers, |c| async move {
        client
            .containers()
            .remove(RemoveContainerRequest {
                container: c,
                force,
                volumes,
            })
            .await?;
        Ok(())
    })
    .await
}
