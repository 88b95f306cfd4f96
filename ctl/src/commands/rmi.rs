//! `strata rmi [-f] IMAGE...`

use strata_proto::engine::RemoveImageRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the image even if a container uses it or it has several names
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let mut failed = false;
    for image in &a.images {
        let r = client
            .images()
            .remove(RemoveImageRequest {
                image: image.clone(),
                force: a.force,
            })
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                for u in r.untagged {
                    println!("Untagged: {u}");
                }
                for d in r.deleted {
                    println!("Deleted: {d}");
                }
            }
            Err(s) => {
                eprintln!("strata: {}", crate::client::Failure::from(s).message);
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}
