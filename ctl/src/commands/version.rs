//! `strata version`: the client's version, and the engine's if it is reachable.

use std::path::Path;

use strata_proto::engine::VersionRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Go template ("{{.Server.Version}}"), or "json"
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// The engine's version.
async fn server(address: &Path) -> CmdResult<strata_proto::engine::VersionResponse> {
    let client = Client::connect(address).await?;
    Ok(client
        .system()
        .version(VersionRequest {})
        .await?
        .into_inner())
}

pub async fn run(a: &Args, address: &Path) -> CmdResult<i32> {
    let format = a
        .format
        .as_deref()
        .filter(|f| crate::format::Format::parse(f) != crate::format::Format::Table);
    if let Some(f) = format {
        let template = crate::format::inspect_template(Some(f))?;
        let v = server(address).await?;
        // Docker's shape.
        let doc = serde_json::json!({
            "Client": { "Version": env!("CARGO_PKG_VERSION"), "Os": std::env::consts::OS,
                        "Arch": std::env::consts::ARCH },
            "Server": { "Version": v.version, "ApiVersion": v.api_version, "Os": v.os,
                        "Arch": v.arch, "KernelVersion": v.kernel, "GitCommit": v.git_commit },
        });
        match template {
            Some(t) => println!("{}", t.render(&doc)?),
            None => println!("{doc}"),
        }
        return Ok(0);
    }
    // The client's part first: it shows even when the engine cannot be reached.
    println!(
        "Client:\n Version:    {}\n OS/Arch:    {}/{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    let v = server(address).await?;
    println!("\nServer: Strata Engine\n Version:    {}\n API version: {}\n OS/Arch:    {}/{}\n Kernel:     {}", v.version, v.api_version, v.os, v.arch, v.kernel);
    Ok(0)
}
