//! `strata restart [-t N] CONTAINER...`

use strata_proto::engine::RestartContainerRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to wait for the stop before killing the container
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u32,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let timeout = a.time.min(i32::MAX as u32) as i32;
    super::for_each(&a.containers, |c| async move {
        client
            .containers()
            .restart(RestartContainerRequest {
                container: c,
                timeout,
            })
            .await?;
        Ok(())
    })
    .await
}
