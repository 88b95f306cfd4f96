//! `strata start CONTAINER...`

use strata_proto::engine::StartContainerRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    super::for_each(&a.containers, |c| async move {
        client
            .containers()
            .start(StartContainerRequest { container: c })
            .await?;
        Ok(())
    })
    .await
}
