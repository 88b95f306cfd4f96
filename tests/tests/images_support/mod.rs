//! Helpers the engine image tests share: an engine with busybox loaded, inspect, the engine's
//! blobs and layer snapshots, tools, archives, raw tar entries and gRPC to the sockets.
#![allow(dead_code)] // each test file uses a part

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use strata_tests::engine::Engine;
pub use strata_tests::engine::{check, engine};
use strata_tests::image::{busybox_layer, docker_archive, layer, Entry};

pub fn inspect(e: &Engine, image: &str) -> Result<Value> {
    let out = e.ok(&["inspect", "--type", "image", image])?;
    let v: Value = serde_json::from_str(&out)?;
    Ok(v[0].clone())
}

pub fn blobs(e: &Engine) -> BTreeSet<String> {
    fs::read_dir(e.root.join("content/blobs/sha256"))
        .map(|rd| {
            rd.filter_map(|x| x.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Committed and active snapshots the overlay2 plugin holds.
pub fn snapshots(e: &Engine) -> usize {
    fs::read_dir(e.root.join("storage/overlay2/snapshots"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A two-layer image on the busybox base: `/app/msg` and a deleted `/etc/gone`.
pub fn app_archive(e: &Engine, name: &str) -> Result<PathBuf> {
    let path = e
        .scratch("images")?
        .join(format!("{}.tar", name.replace([':', '/'], "_")));
    let base = busybox_layer(vec![Entry::File("etc/gone".into(), b"x".to_vec(), 0o644)])?;
    let top = layer(&[
        Entry::Dir("app", 0o755),
        Entry::File("app/msg".into(), b"from the app layer\n".to_vec(), 0o644),
        Entry::File("etc/.wh.gone".into(), Vec::new(), 0o644),
    ])?;
    docker_archive(&path, name, &[base, top], &["cat", "/app/msg"])?;
    Ok(path)
}

/// A raw tar entry (names and link targets as given, so `..` and `/` get in).
pub fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    link: &str,
    data: &[u8],
    dev: Option<(u32, u32)>,
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    if let Some((ma, mi)) = dev {
        let _ = h.set_device_major(ma);
        let _ = h.set_device_minor(mi);
    }
    h.set_cksum();
    let _ = b.append(&h, data);
}

/// Adds a layer's entries.
pub type Build<'a> = Box<dyn Fn(&mut tar::Builder<Vec<u8>>) + 'a>;

/// A gRPC channel on a unix socket.
pub async fn unix_channel(socket: PathBuf) -> Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?)
}

pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Calls the Commit RPC (the `strata commit` verb's) on the engine's socket.
pub fn commit_rpc(e: &Engine, container: &str, reference: &str) -> Result<String> {
    use strata_proto::engine::images_client::ImagesClient;
    use strata_proto::engine::CommitRequest;
    block_on(async {
        let r = ImagesClient::new(unix_channel(e.address.clone()).await?)
            .commit(CommitRequest {
                container: container.into(),
                reference: reference.into(),
                comment: "a test commit".into(),
                author: "tester".into(),
            })
            .await?;
        Ok(r.into_inner().id)
    })
}
