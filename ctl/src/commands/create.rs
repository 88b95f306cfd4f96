//! `strata create [OPTIONS] IMAGE [COMMAND...]`

use strata_proto::engine::CreateContainerRequest;

use super::container_args::ContainerArgs;
use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub c: ContainerArgs,
}

/// Creates the container; returns its id.
pub async fn create(c: &ContainerArgs, client: &Client) -> CmdResult<String> {
    c.check_cidfile()?;
    let config = c.config()?;
    let r = client
        .containers()
        .create(CreateContainerRequest {
            config: Some(config),
        })
        .await
        .map_err(|s| Failure::from(s).with_code(125))?
        .into_inner();
    for w in &r.warnings {
        eprintln!("WARNING: {w}");
    }
    let id = r.id;
    c.write_cidfile(&id)?;
    Ok(id)
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    println!("{}", create(&a.c, client).await?);
    Ok(0)
}
