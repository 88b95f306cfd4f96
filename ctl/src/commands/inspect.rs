//! `strata inspect [-f TEMPLATE] NAME...`: containers first, then images, as Docker does.

use strata_proto::engine::{InspectContainerRequest, InspectImageRequest};

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only look at "container" or "image" objects
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// A Go template for each object ("{{.State.Pid}}"), or "json"
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let kind = a.kind.as_deref().unwrap_or("");
    if !matches!(kind, "" | "container" | "image") {
        return Err(Failure::new(format!(
            "invalid --type {kind:?}: use container or image"
        )));
    }
    let template = crate::format::inspect_template(a.format.as_deref())?;
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.names {
        let mut found = None;
        if kind != "image" {
            if let Ok(r) = client
                .containers()
                .inspect(InspectContainerRequest {
                    container: n.clone(),
                })
                .await
            {
                found = Some(r.into_inner().json);
            }
        }
        if found.is_none() && kind != "container" {
            if let Ok(r) = client
                .images()
                .inspect(InspectImageRequest { image: n.clone() })
                .await
            {
                found = Some(r.into_inner().json);
            }
        }
        match found.and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok()) {
            Some(v) => match &template {
                Some(t) => println!("{}", t.render(&v)?),
                None => docs.push(v),
            },
            None => {
                eprintln!("strata: no such object: {n}");
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
