//! `strata run [OPTIONS] IMAGE [COMMAND...]`: create, start, stream the output, exit with the
//! container's code (125 when the engine refuses, as Docker).

use std::io::Write;

use strata_proto::engine::{
    LogsRequest, RemoveContainerRequest, StartContainerRequest, WaitContainerRequest,
};

use super::container_args::ContainerArgs;
use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub c: ContainerArgs,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let id = super::create::create(&a.c, client).await?;
    if a.detach {
        client
            .containers()
            .start(StartContainerRequest {
                container: id.clone(),
            })
            .await
            .map_err(|s| Failure::from(s).with_code(125))?;
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
        .map_err(|s| Failure::from(s).with_code(125))?
        .into_inner();
    let mut waiter = client.containers();
    let wait_id = id.clone();
    // With --rm, wait for the removal too, so the container is gone when `run` returns.
    let condition = if a.c.rm { "removed" } else { "next-exit" }.to_string();
    let wait = tokio::spawn(async move {
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
            let _ = client
                .containers()
                .remove(RemoveContainerRequest {
                    container: id,
                    force: true,
                    volumes: true,
                })
                .await;
        }
        return Err(Failure::from(s).with_code(125));
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
    let status = wait
        .await
        .map_err(|e| Failure::new(e.to_string()))?
        .map_err(|s| Failure::from(s).with_code(125))?;
    let _ = printer.await;
    Ok(status.into_inner().exit_code)
}
