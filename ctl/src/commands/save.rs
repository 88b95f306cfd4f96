//! `strata save [-o FILE] [--format docker|oci] IMAGE...`

use std::io::Write;
use std::path::PathBuf;

use strata_proto::engine::SaveRequest;

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write to this file instead of stdout
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// "docker" (a `docker save` tarball, the default) or "oci" (an OCI image layout archive)
    #[arg(long, default_value = "docker")]
    pub format: String,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    if !matches!(a.format.as_str(), "docker" | "oci") {
        return Err(Failure::new(format!(
            "invalid --format {:?}: use docker or oci",
            a.format
        )));
    }
    if a.output.is_none() && nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        return Err(Failure::new(
            "refusing to write an archive to a terminal: use -o FILE or redirect stdout",
        ));
    }
    let mut stream = client
        .images()
        .save(SaveRequest {
            images: a.images.clone(),
            format: a.format.clone(),
        })
        .await?
        .into_inner();
    let (mut out, tmp): (Box<dyn Write>, Option<(PathBuf, PathBuf)>) = match &a.output {
        Some(p) => {
            let tmp = p.with_file_name(format!(
                ".{}.strata-save-{}",
                p.file_name().and_then(|n| n.to_str()).unwrap_or("archive"),
                std::process::id()
            ));
            let f = std::fs::File::create(&tmp)
                .map_err(|e| Failure::new(format!("create {}: {e}", tmp.display())))?;
            (Box::new(std::io::BufWriter::new(f)), Some((tmp, p.clone())))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    // Progress on a terminal when the archive goes to a file.
    let progress = a.output.is_some() && nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    let result: CmdResult<()> = async {
        let mut got = 0u64;
        while let Some(chunk) = stream.message().await? {
            out.write_all(&chunk.data)
                .map_err(|e| Failure::new(format!("write the archive: {e}")))?;
            got += chunk.data.len() as u64;
            if progress {
                eprint!("\rWriting {}   ", super::image_util::human_size(got as i64));
            }
        }
        if progress {
            eprint!("\r\x1b[K");
        }
        out.flush()
            .map_err(|e| Failure::new(format!("write the archive: {e}")))?;
        Ok(())
    }
    .await;
    drop(out);
    if let Some((tmp, dest)) = tmp {
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        } else {
            std::fs::rename(&tmp, &dest)
                .map_err(|e| Failure::new(format!("rename into {}: {e}", dest.display())))?;
        }
    }
    result.map(|()| 0)
}
