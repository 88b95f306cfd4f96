//! `strata run [OPTIONS] IMAGE [COMMAND...]`: create, then one attach stream that starts the
//! container, carries its output (and with `-i`/`-t` its stdin and terminal, as `docker run
//! -it`) and ends with its exit code (as Docker: 125 when the engine refuses, 126/127 when the
//! command cannot be run or is not there). With `-d`: create, start, print the id.

use strata_proto::engine::{CreateContainerRequest, RemoveContainerRequest, StartContainerRequest};

use super::attach::{self, Session, SessionError, Wiring};
use super::container_args::ContainerArgs;
use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keys that detach from the container (default ctrl-p,ctrl-q)
    #[arg(
        long = "detach-keys",
        value_name = "KEYS",
        conflicts_with = "detach",
        requires = "interactive"
    )]
    pub detach_keys: Option<String>,
    /// Pass the signals this command receives on to the container (not with -t)
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_name = "BOOL")]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub c: ContainerArgs,
}

async fn remove(client: &Client, id: &str) {
    let _ = client
        .containers()
        .remove(RemoveContainerRequest {
            container: id.to_string(),
            force: true,
            volumes: true,
        })
        .await;
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    if !a.detach {
        // As Docker's run: attached to the container's output (and stdin with -i) from before
        // its start, in one stream that also starts it and waits for its end.
        return attached(a, client).await;
    }
    let id = super::create::create(&a.c, client).await?;
    client
        .containers()
        .start(StartContainerRequest {
            container: id.clone(),
        })
        .await
        .map_err(Failure::refused)?;
    println!("{id}");
    Ok(0)
}

/// `run` in the foreground: attached from the start; with `-i`, stdin closed when ours ends
/// (Docker's StdinOnce).
async fn attached(a: Args, client: &Client) -> CmdResult<i32> {
    attach::check_tty(a.c.interactive, a.c.tty)?;
    a.c.check_cidfile()?;
    let mut config = a.c.config()?;
    config.stdin_once = a.c.interactive;
    let id = client
        .containers()
        .create(CreateContainerRequest {
            config: Some(config),
        })
        .await
        .map_err(Failure::refused)?
        .into_inner();
    for w in &id.warnings {
        eprintln!("WARNING: {w}");
    }
    let id = id.id;
    a.c.write_cidfile(&id)?;
    let s = Session {
        container: id.clone(),
        wiring: Wiring {
            stdin: a.c.interactive,
            tty: a.c.tty,
            proxy_to: (a.sig_proxy && !a.c.tty).then(|| id.clone()),
        },
        start: true,
        detach_keys: a.detach_keys.unwrap_or_default(),
        wait_removed: a.c.rm,
    };
    match attach::session(client, s).await {
        Ok(code) => Ok(code),
        Err(SessionError::Open(st)) => {
            // Nothing ran: a refused attach (bad detach keys) leaves no container behind, and
            // neither does a failed start with --rm.
            if a.c.rm || st.code() == tonic::Code::InvalidArgument {
                remove(client, &id).await;
            }
            Err(Failure::refused(st))
        }
        Err(e) => Err(e.into()),
    }
}
