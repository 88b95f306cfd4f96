//! `strata volume create|ls|inspect|rm|prune`: volumes with the local driver, as Docker's
//! `docker volume` manages them.

use std::collections::HashMap;

use clap::Subcommand;
use strata_proto::engine::{
    CreateVolumeRequest, InspectVolumeRequest, ListVolumesRequest, PruneVolumesRequest,
    RemoveVolumeRequest,
};

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON
    Inspect(InspectArgs),
    /// Remove volumes (not ones containers use)
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (with -a, every unused volume)
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The volume's name (or give it as the argument); random when none
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    /// The volume driver (only "local")
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata on the volume (KEY=VALUE)
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Driver options: type=…, device=…, o=… (as mount(8) takes them)
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only show volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Only matching volumes: dangling=true|false, name=…, label=KEY[=VALUE], driver=…
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// "table" (default), "json", or a Go template ("{{.Name}}")
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A Go template for each volume ("{{.Mountpoint}}"), or "json"
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Do not fail on volumes that do not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove every unused volume, not only anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `KEY=VALUE` flags into a map (a bare KEY has an empty value, as Docker's labels do).
fn key_values(
    flag: &str,
    items: &[String],
    need_value: bool,
) -> CmdResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for i in items {
        let (k, v) = match i.split_once('=') {
            Some((k, v)) => (k, v),
            None if !need_value => (i.as_str(), ""),
            None => {
                return Err(Failure::new(format!(
                    "invalid {flag} {i:?}: expected KEY=VALUE"
                )))
            }
        };
        if k.is_empty() {
            return Err(Failure::new(format!(
                "invalid {flag} {i:?}: the key is empty"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    match a.command {
        VolumeCommand::Create(c) => create(c, client).await,
        VolumeCommand::Ls(l) => ls(l, client).await,
        VolumeCommand::Inspect(i) => inspect(i, client).await,
        VolumeCommand::Rm(r) => {
            let force = r.force;
            super::for_each(&r.volumes, |name| async move {
                client
                    .volumes()
                    .remove(RemoveVolumeRequest { name, force })
                    .await?;
                Ok(())
            })
            .await
        }
        VolumeCommand::Prune(p) => prune(p, client).await,
    }
}

async fn create(c: CreateArgs, client: &Client) -> CmdResult<i32> {
    let name = match (c.name_flag, c.name) {
        (Some(a), Some(b)) if a != b => {
            return Err(Failure::new(format!(
                "conflicting volume names: --name {a:?} and {b:?}"
            )))
        }
        (a, b) => a.or(b).unwrap_or_default(),
    };
    let v = client
        .volumes()
        .create(CreateVolumeRequest {
            name,
            driver: c.driver,
            labels: key_values("--label", &c.label, false)?,
            driver_opts: key_values("--opt", &c.opt, true)?,
        })
        .await?
        .into_inner();
    println!("{}", v.name);
    Ok(0)
}

async fn ls(l: LsArgs, client: &Client) -> CmdResult<i32> {
    crate::format::check(&l.format)?;
    let mut volumes = client
        .volumes()
        .list(ListVolumesRequest { filters: l.filter })
        .await?
        .into_inner()
        .volumes;
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    if l.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    let objects: Vec<serde_json::Value> = volumes
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            serde_json::json!({
                "Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
                "Labels": labels.join(","), "Scope": "local",
            })
        })
        .collect();
    let keys = ["Name", "Driver", "Mountpoint", "Labels", "Scope"];
    let titles = [("Name", "VOLUME NAME")];
    if crate::format::print_rows(&l.format, &keys, &titles, &objects)? {
        return Ok(0);
    }
    let mut rows = vec![["DRIVER".to_string(), "VOLUME NAME".to_string()]];
    rows.extend(volumes.into_iter().map(|v| [v.driver, v.name]));
    print!("{}", crate::table::render(&rows));
    Ok(0)
}

async fn inspect(i: InspectArgs, client: &Client) -> CmdResult<i32> {
    let template = crate::format::inspect_template(i.format.as_deref())?;
    let mut docs = Vec::new();
    let mut failed = false;
    for name in i.volumes {
        match client
            .volumes()
            .inspect(InspectVolumeRequest { name })
            .await
        {
            Ok(r) => match serde_json::from_str::<serde_json::Value>(&r.into_inner().json) {
                Ok(v) => match &template {
                    Some(t) => println!("{}", t.render(&v)?),
                    None => docs.push(v),
                },
                Err(e) => return Err(Failure::new(format!("the engine sent bad JSON: {e}"))),
            },
            Err(s) => {
                eprintln!("strata: {}", Failure::from(s).message);
                failed = true;
            }
        }
    }
    if template.is_none() {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Array(docs)).unwrap_or_default()
        );
    }
    Ok(i32::from(failed))
}

async fn prune(p: PruneArgs, client: &Client) -> CmdResult<i32> {
    let warning = if p.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !p.force && !super::prune::confirm(warning)? {
        return Ok(0);
    }
    let r = client
        .volumes()
        .prune(PruneVolumesRequest { all: p.all })
        .await?
        .into_inner();
    print!(
        "{}{}",
        super::prune::section("Volumes", r.deleted),
        super::prune::total(r.space_reclaimed)
    );
    Ok(0)
}
