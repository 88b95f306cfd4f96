//! `strata kill [-s SIGNAL] CONTAINER...`

use strata_proto::engine::KillContainerRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signal to send (name or number)
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let signal = a.signal.clone();
    super::for_each(&a.containers, |c| {
        let signal = signal.clone();
        async move {
            client
                .containers()
                .kill(KillContainerRequest {
                    container: c,
                    signal,
                })
                .await?;
            Ok(())
        }
    })
    .await
}
