//! `strata info`

use strata_proto::engine::InfoRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// "table" (default), "json", or a Go template ("{{.ServerVersion}}")
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
}

/// The facts as Docker's `info` object names them: `Server Version` is `ServerVersion`, the
/// container counts `Containers`, `ContainersRunning`…, the storage driver `Driver` with its
/// `DriverStatus` rows as [name, value] pairs.
fn document(i: &strata_proto::engine::InfoResponse) -> serde_json::Value {
    let mut doc = serde_json::Map::new();
    for kv in &i.engine {
        let key = match kv.key.trim() {
            "Running" | "Paused" | "Stopped" => format!("Containers{}", kv.key.trim()),
            "Storage Driver" => "Driver".into(),
            k => k.replace(' ', ""),
        };
        let value = kv
            .value
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(kv.value.clone()));
        doc.insert(key, value);
    }
    doc.insert(
        "Driver".into(),
        serde_json::Value::from(i.storage_driver.clone()),
    );
    let status: Vec<serde_json::Value> = i
        .storage
        .iter()
        .map(|kv| serde_json::json!([kv.key.trim(), kv.value]))
        .collect();
    doc.insert("DriverStatus".into(), serde_json::Value::Array(status));
    serde_json::Value::Object(doc)
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    crate::format::check(&a.format)?;
    let i = client.system().info(InfoRequest {}).await?.into_inner();
    if crate::format::print_rows(&a.format, &[], &[], &[document(&i)])? {
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
