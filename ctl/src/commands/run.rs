//! `strata run [OPTIONS] IMAGE [COMMAND...]`: create, start, stream the output, exit with the
//! container's code (as Docker: 125 when the engine refuses, 126/127 when the command cannot be
//! run or is not there). With `-i`/`-t` the session is interactive: attached before the start,
//! stdin and a terminal as `docker run -it` has them.

use std::io::Write;

use strata_proto::engine::{
    CreateContainerRequest, KillContainerRequest, LogsRequest, RemoveContainerRequest,
    StartContainerRequest, WaitContainerRequest,
};

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
    if !a.detach && (a.c.interactive || a.c.tty) {
        return interactive(a, client).await;
    }
    let id = super::create::create(&a.c, client).await?;
    if a.detach {
        client
            .containers()
            .start(StartContainerRequest {
                container: id.clone(),
            })
            .await
            .map_err(Failure::refused)?;
        println!("{id}");
        return Ok(0);
    }
    // Follow the log and wait for the exit before starting, so nothing is missed even when
    // the container is gone (--rm) by the time we look.
    let mut logs = client
        .containers()
        .logs(LogsRequest {
            container: id.clone(),
            follow: true,
            tail: -1,
            timestamps: false,
        })
        .await
        .map_err(Failure::refused)?
        .into_inner();
    let mut waiter = client.containers();
    let wait_id = id.clone();
    // With --rm, wait for the removal too, so the container is gone when `run` returns.
    let condition = if a.c.rm { "removed" } else { "next-exit" }.to_string();
    let mut wait = tokio::spawn(async move {
        waiter
            .wait(WaitContainerRequest {
                container: wait_id,
                condition,
            })
            .await
    });
    if let Err(s) = client
        .containers()
        .start(StartContainerRequest {
            container: id.clone(),
        })
        .await
    {
        wait.abort();
        if a.c.rm {
            remove(client, &id).await;
        }
        return Err(Failure::refused(s));
    }
    let printer = tokio::spawn(async move {
        while let Ok(Some(e)) = logs.message().await {
            if e.stream == "stderr" {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&e.line);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&e.line);
                let _ = out.flush();
            }
        }
    });
    // As Docker's --sig-proxy: the signals this command gets go to the container.
    let wiring = Wiring {
        proxy_to: a.sig_proxy.then(|| id.clone()),
        ..Default::default()
    };
    let mut signals = attach::signals(&wiring);
    let status = loop {
        tokio::select! {
            r = &mut wait => break r,
            Some((_, name)) = signals.recv() => {
                let req = KillContainerRequest { container: id.clone(), signal: name.into() };
                if let Err(s) = client.containers().kill(req).await {
                    eprintln!("strata: pass SIG{name} on: {}", s.message());
                }
            }
        }
    };
    let status = status
        .map_err(|e| Failure::new(e.to_string()))?
        .map_err(Failure::refused)?;
    let _ = printer.await;
    Ok(status.into_inner().exit_code)
}

/// `run -i`/`-t`: attached from the start, stdin closed when ours ends (Docker's StdinOnce).
async fn interactive(a: Args, client: &Client) -> CmdResult<i32> {
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
        .into_inner()
        .id;
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
