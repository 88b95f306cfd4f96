//! `strata load [-i FILE|DIR] [-q]`: a Docker `save` tarball or OCI archive (gzip or not), from
//! a file or stdin, or an OCI image layout directory.

use std::path::PathBuf;

use strata_proto::engine::DataChunk;

use super::image_util::upload;
use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read from this archive file (or OCI image layout directory) instead of stdin
    #[arg(short = 'i', long = "input")]
    pub input: Option<PathBuf>,
    /// Print nothing
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let stream = upload(a.input.as_deref(), |data| DataChunk { data }, |_| {})?;
    let loaded = client.images().load(stream).await?.into_inner().images;
    if !a.quiet {
        for i in loaded {
            if i.tags.is_empty() {
                println!("Loaded image ID: {}", i.id);
            }
            for t in i.tags {
                println!("Loaded image: {t}");
            }
        }
    }
    Ok(0)
}
