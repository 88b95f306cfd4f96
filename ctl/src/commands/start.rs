//! `strata start [-a] [-i] [--detach-keys K] CONTAINER...`: with `-a` (or `-i`), attached
//! before the start, exiting with the container's code.

use strata_proto::engine::StartContainerRequest;

use super::attach::{self, Session, Wiring};
use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Attach stdout and stderr and wait for the exit
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach stdin too
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Keys that detach from the container (default ctrl-p,ctrl-q)
    #[arg(long = "detach-keys", value_name = "KEYS", requires = "interactive")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    if a.attach || a.interactive {
        let [container] = a.containers.as_slice() else {
            return Err(Failure::new(
                "start: you cannot start and attach multiple containers at once",
            ));
        };
        let (tty, open_stdin) = attach::container_io(client, container).await?;
        attach::check_tty(a.interactive && open_stdin, tty)?;
        let s = Session {
            container: container.clone(),
            wiring: Wiring {
                stdin: a.interactive && open_stdin,
                tty,
                proxy_to: (!tty).then(|| container.clone()),
            },
            start: true,
            detach_keys: a.detach_keys.unwrap_or_default(),
            wait_removed: false,
        };
        return Ok(attach::session(client, s).await?);
    }
    super::for_each(&a.containers, |c| async move {
        client
            .containers()
            .start(StartContainerRequest { container: c })
            .await?;
        Ok(())
    })
    .await
}
