//! `strata version`: the client's version, and the engine's if it is reachable.

use std::path::Path;

use strata_proto::engine::VersionRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_a: &Args, address: &Path) -> CmdResult<i32> {
    println!(
        "Client:\n Version:    {}\n OS/Arch:    {}/{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    let client = Client::connect(address).await?;
    let v = client
        .system()
        .version(VersionRequest {})
        .await?
        .into_inner();
    println!("\nServer: Strata Engine\n Version:    {}\n API version: {}\n OS/Arch:    {}/{}\n Kernel:     {}", v.version, v.api_version, v.os, v.arch, v.kernel);
    Ok(0)
}
