//! `strata pause CONTAINER...` and `strata unpause CONTAINER...`

use strata_proto::engine::{PauseContainerRequest, UnpauseContainerRequest};

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn pause(a: Args, client: &Client) -> CmdResult<i32> {
    super::for_each(&a.containers, |c| async move {
        client
            .containers()
            .pause(PauseContainerRequest { container: c })
            .await?;
        Ok(())
    })
    .await
}

pub async fn unpause(a: Args, client: &Client) -> CmdResult<i32> {
    super::for_each(&a.containers, |c| async move {
        client
            .containers()
            .unpause(UnpauseContainerRequest { container: c })
            .await?;
        Ok(())
    })
    .await
}
