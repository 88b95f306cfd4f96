//! `strata import FILE|- [NAME[:TAG]]`: a flat root filesystem tarball as a one-layer image.

use std::path::PathBuf;

use strata_proto::engine::ImportRequest;

use super::image_util::upload;
use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tarball (gzip or not), or - for stdin
    pub file: PathBuf,
    /// The image's name[:tag]
    pub reference: Option<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let reference = a.reference.clone().unwrap_or_default();
    let stream = upload(
        Some(&a.file),
        |data| ImportRequest {
            reference: String::new(),
            data,
        },
        move |m| m.reference = reference,
    )?;
    let r = client.images().import(stream).await?.into_inner();
    if let Some(i) = r.image {
        println!("{}", i.id);
    }
    Ok(0)
}
