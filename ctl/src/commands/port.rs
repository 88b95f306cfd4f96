//! `strata port CONTAINER [PRIVATE_PORT[/tcp]]`: the host ports a running container's ports are
//! published on, as Docker's `port` prints them (`80/tcp -> 0.0.0.0:8080`).

use strata_proto::engine::InspectContainerRequest;

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub container: String,
    /// Only this container port (80 or 80/tcp)
    pub private_port: Option<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let json = client
        .containers()
        .inspect(InspectContainerRequest {
            container: a.container.clone(),
        })
        .await?
        .into_inner()
        .json;
    let doc: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| Failure::new(format!("inspect: {e}")))?;
    let ports = doc["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let want = a.private_port.as_ref().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut lines = Vec::new();
    for (key, bindings) in &ports {
        if want.as_ref().is_some_and(|w| w != key) {
            continue;
        }
        for b in bindings.as_array().into_iter().flatten() {
            let ip = b["HostIp"].as_str().unwrap_or_default();
            let port = b["HostPort"].as_str().unwrap_or_default();
            let ip = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            lines.push(if want.is_some() {
                format!("{ip}:{port}")
            } else {
                format!("{key} -> {ip}:{port}")
            });
        }
    }
    if let (Some(w), true) = (&want, lines.is_empty()) {
        return Err(Failure::new(format!(
            "no public port '{w}' published for {}",
            a.container
        )));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(0)
}
