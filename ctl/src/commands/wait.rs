//! `strata wait CONTAINER...`: prints each exit code.

use strata_proto::engine::WaitContainerRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let mut failed = false;
    for c in a.containers {
        match client
            .containers()
            .wait(WaitContainerRequest {
                container: c,
                condition: String::new(),
            })
            .await
        {
            Ok(r) => println!("{}", r.into_inner().exit_code),
            Err(s) => {
                eprintln!("strata: {}", s.message());
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}
