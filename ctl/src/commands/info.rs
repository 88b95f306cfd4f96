//! `strata info`

use strata_proto::engine::InfoRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// "table" (default) or "json"
    #[arg(long, default_value = "table")]
    pub format: String,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let i = client.system().info(InfoRequest {}).await?.into_inner();
    if a.format == "json" {
        let rows = |v: &[strata_proto::engine::KeyValue]| {
            v.iter()
                .map(|kv| {
                    (
                        kv.key.trim().to_string(),
                        serde_json::Value::from(kv.value.clone()),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
        };
        let doc = serde_json::json!({ "Engine": rows(&i.engine), "Driver": i.storage_driver, "DriverStatus": rows(&i.storage) });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(0);
    }
    for kv in &i.engine {
        println!("{}: {}", kv.key, kv.value);
        if kv.key == "Storage Driver" {
            for s in &i.storage {
                println!(" {}: {}", s.key, s.value);
            }
        }
    }
    Ok(0)
}
