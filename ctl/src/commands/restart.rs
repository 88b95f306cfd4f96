//! `strata restart [-t N] CONTAINER...`

use strata_proto::engine::RestartContainerRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to wait for the stop before killing the container (default: its
    /// --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    pub time: Option<u32>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    // Negative: the container's own stop timeout.
    let timeout = a.time.map_or(-1, |t| t.min(i32::MAX as u32) as i32);
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
