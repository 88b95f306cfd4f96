//! `strata.engine.v1.Images`, and the image resolver the container service uses.
//!
//! Streams become blocking readers and writers for the image code (which runs archive and layer
//! work on blocking threads): a load's or import's chunks are read through a channel, a save's
//! archive is written into one in chunks of up to 1 MiB.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;

use strata_proto::engine::images_server::{Images as ImagesApi, ImagesServer};
use strata_proto::engine::{
    CommitRequest, CommitResponse, DataChunk, HistoryEntry, HistoryRequest, HistoryResponse,
    ImageSummary as PbSummary, ImportRequest, ImportResponse, InspectImageRequest, InspectResponse,
    ListImagesRequest, ListImagesResponse, LoadResponse, RemoveImageRequest, RemoveImageResponse,
    SaveRequest, TagRequest, TagResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Config;
use crate::container::record::Settings;
use crate::container::spec::ImageDefaults;
use crate::container::{Containers, ResolvedImage};
use crate::content::ContentStore;
use crate::daemon::{Parts, ServiceAdder};
use crate::image::reference::Reference;
use crate::image::{Format, ImageSummary, Images};
use crate::server::{BoxFuture, ImageResolver};

/// The size of the chunks a save streams.
const CHUNK: usize = 1 << 20;

fn summary(s: &ImageSummary) -> PbSummary {
    PbSummary {
        id: s.id.clone(),
        tags: s.tags.clone(),
        size: s.size as i64,
        created: s.created,
    }
}

/// Reads the chunks a client streams.
pub(crate) struct ChunkReader {
    rx: mpsc::Receiver<Result<Vec<u8>, io::Error>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A reader fed by a task that forwards a request stream (`data` picks the bytes out).
pub(crate) fn chunk_reader<M: Send + 'static>(
    mut stream: Streaming<M>,
    first: Option<Vec<u8>>,
    data: fn(M) -> Vec<u8>,
) -> ChunkReader {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Some(f) = first {
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
        }
        loop {
            let item = match stream.message().await {
                Ok(Some(m)) => Ok(data(m)),
                Ok(None) => return,
                Err(s) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the client stream failed: {}", s.message()),
                )),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    ChunkReader {
        rx,
        buf: Vec::new(),
        pos: 0,
    }
}

/// Writes into a response stream, in chunks.
pub(crate) struct ChunkWriter {
    tx: mpsc::Sender<Result<DataChunk, Status>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// A writer into the response stream `tx`.
    pub(crate) fn new(tx: mpsc::Sender<Result<DataChunk, Status>>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::new(),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(Ok(DataChunk { data }))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Serves the image verbs.
pub struct ImageService {
    pub images: Arc<Images>,
    pub containers: Arc<Containers>,
}

/// Emits an image event as Docker does: the image's id, and its name (a reference, or the id).
fn image_event(containers: &Containers, action: &str, id: &str, name: String) {
    containers
        .events()
        .emit("image", action, id, [("name", name)]);
}

/// The familiar form of a reference (`busybox:latest`), or the text as given.
fn familiar(reference: &str) -> String {
    Reference::parse(reference).map_or_else(|_| reference.to_string(), |r| r.familiar())
}

impl ImageService {
    /// Whether a container uses image `id`.
    fn in_use_fn(&self) -> impl Fn(&str) -> bool + Sync + '_ {
        move |id: &str| {
            self.containers
                .records()
                .all()
                .map(|all| all.iter().any(|r| r.image_id == id))
                .unwrap_or(true)
        }
    }
}

type SaveStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<DataChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ImagesApi for ImageService {
    async fn load(
        &self,
        req: Request<Streaming<DataChunk>>,
    ) -> Result<Response<LoadResponse>, Status> {
        let reader = chunk_reader(req.into_inner(), None, |m: DataChunk| m.data);
        let loaded = self.images.load(reader).await?;
        for i in &loaded {
            image_event(&self.containers, "load", &i.id, i.id.clone());
        }
        Ok(Response::new(LoadResponse {
            images: loaded.iter().map(summary).collect(),
        }))
    }

    type SaveStream = SaveStream;

    async fn save(&self, req: Request<SaveRequest>) -> Result<Response<SaveStream>, Status> {
        let req = req.into_inner();
        let format = Format::parse(&req.format).ok_or_else(|| {
            Status::invalid_argument(format!(
                "invalid format {:?}: use docker or oci",
                req.format
            ))
        })?;
        if req.images.is_empty() {
            return Err(Status::invalid_argument("save: name at least one image"));
        }
        let mut ids = Vec::new();
        for i in &req.images {
            let id = self.images.resolve(i)?.id;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let (tx, rx) = mpsc::channel(4);
        let images = self.images.clone();
        let containers = self.containers.clone();
        tokio::spawn(async move {
            let w = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::new(),
            };
            match images.save(&req.images, format, w).await {
                Ok(_) => {
                    for id in ids {
                        image_event(&containers, "save", &id, id.clone());
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_status())).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn import(
        &self,
        req: Request<Streaming<ImportRequest>>,
    ) -> Result<Response<ImportResponse>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("import: no data"))?;
        let reference = first.reference.clone();
        if !reference.is_empty() {
            Reference::parse(&reference).map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let reader = chunk_reader(stream, Some(first.data), |m: ImportRequest| m.data);
        let s = self.images.import(reader, Some(&reference)).await?;
        image_event(&self.containers, "import", &s.id, s.id.clone());
        Ok(Response::new(ImportResponse {
            image: Some(summary(&s)),
        }))
    }

    async fn list(
        &self,
        _req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let list = self.images.list()?;
        Ok(Response::new(ListImagesResponse {
            images: list.iter().map(summary).collect(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<InspectImageRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let v = self.images.inspect(&req.into_inner().image)?;
        Ok(Response::new(InspectResponse {
            json: v.to_string(),
        }))
    }

    async fn history(
        &self,
        req: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let rows = self.images.history(&req.into_inner().image)?;
        Ok(Response::new(HistoryResponse {
            entries: rows
                .into_iter()
                .map(|r| HistoryEntry {
                    id: r.id,
                    created: r.created,
                    created_by: r.created_by,
                    size: r.size as i64,
                    comment: r.comment,
                    empty_layer: r.empty_layer,
                })
                .collect(),
        }))
    }

    async fn tag(&self, req: Request<TagRequest>) -> Result<Response<TagResponse>, Status> {
        let r = req.into_inner();
        self.images.tag(&r.source, &r.target)?;
        if let Ok(i) = self.images.resolve(&r.target) {
            image_event(&self.containers, "tag", &i.id, familiar(&r.target));
        }
        Ok(Response::new(TagResponse {}))
    }

    async fn remove(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let r = req.into_inner();
        // Containers made ahead of time are on the images' layers, and nobody's yet.
        self.containers.drain_warm().await;
        let in_use = self.in_use_fn();
        let id = self.images.resolve(&r.image).map(|i| i.id).ok();
        let report = self.images.remove(&r.image, r.force, &in_use).await?;
        if let Some(id) = id {
            for _ in &report.untagged {
                image_event(&self.containers, "untag", &id, id.clone());
            }
            if report.deleted.contains(&id) {
                image_event(&self.containers, "delete", &id, id.clone());
            }
        }
        Ok(Response::new(RemoveImageResponse {
            untagged: report.untagged,
            deleted: report.deleted,
        }))
    }

    async fn commit(
        &self,
        req: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let r = req.into_inner();
        // The container's changes as a layer tar, on top of the image it was made from.
        let (rec, layer) = self.containers.diff_tar(&r.container).await?;
        let changes = committed_config(&rec.settings);
        let s = self
            .images
            .add_layer_image_with(
                &rec.image_id,
                layer,
                Some(&r.reference),
                &r.comment,
                &r.author,
                Some(&changes),
            )
            .await?;
        let image_ref = if r.reference.is_empty() {
            String::new()
        } else {
            familiar(&r.reference)
        };
        if !image_ref.is_empty() {
            image_event(&self.containers, "tag", &s.id, image_ref.clone());
        }
        self.containers.emit_with(
            &rec,
            "commit",
            [
                ("comment", r.comment.clone()),
                ("imageID", s.id.clone()),
                ("imageRef", image_ref),
            ],
        );
        Ok(Response::new(CommitResponse { id: s.id }))
    }

    async fn prune(
        &self,
        req: Request<strata_proto::engine::PruneImagesRequest>,
    ) -> Result<Response<strata_proto::engine::PruneResponse>, Status> {
        let all = req.into_inner().all;
        Ok(Response::new(
            prune_images(&self.images, &self.containers, all).await?,
        ))
    }
}

/// Removes dangling (with `all`: unused) images, with Docker's untag and delete events.
async fn prune_images(
    images: &Images,
    containers: &Containers,
    all: bool,
) -> Result<strata_proto::engine::PruneResponse, Status> {
    let before = images.list()?;
    containers.drain_warm().await;
    let in_use = |id: &str| {
        containers
            .records()
            .all()
            .map(|all| all.iter().any(|r| r.image_id == id))
            .unwrap_or(true)
    };
    let (report, space) = images.prune(all, &in_use).await?;
    for t in &report.untagged {
        if let Some(i) = before.iter().find(|i| i.tags.contains(t)) {
            image_event(containers, "untag", &i.id, t.clone());
        }
    }
    for id in report
        .deleted
        .iter()
        .filter(|d| before.iter().any(|i| &i.id == *d))
    {
        image_event(containers, "delete", id, id.clone());
    }
    containers
        .events()
        .emit("image", "prune", "", [("reclaimed", space.to_string())]);
    Ok(strata_proto::engine::PruneResponse {
        deleted: report.deleted,
        untagged: report.untagged,
        space_reclaimed: space,
    })
}

/// What Docker's commit records of a container in the new image's config: its environment
/// (the image's merged with `-e`), command, entrypoint, working directory and user.
fn committed_config(s: &Settings) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    let mut c = serde_json::Map::new();
    if !s.env.is_empty() {
        c.insert("Env".into(), json!(s.env));
    }
    if let Some(ep) = &s.entrypoint {
        c.insert(
            "Entrypoint".into(),
            if ep.is_empty() {
                Value::Null
            } else {
                json!(ep)
            },
        );
        // A new entrypoint drops the image's CMD.
        c.insert("Cmd".into(), Value::Null);
    }
    if !s.cmd.is_empty() {
        c.insert("Cmd".into(), json!(s.cmd));
    }
    if !s.working_dir.is_empty() {
        c.insert("WorkingDir".into(), json!(s.working_dir));
    }
    if !s.user.is_empty() {
        c.insert("User".into(), json!(s.user));
    }
    c
}

/// Resolves images for new containers, unpacking them into the current driver.
struct Resolver {
    images: Arc<Images>,
    containers: Arc<Containers>,
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl ImageResolver for Resolver {
    fn prune(
        &self,
        all: bool,
    ) -> BoxFuture<'_, Result<strata_proto::engine::PruneResponse, Status>> {
        Box::pin(prune_images(&self.images, &self.containers, all))
    }

    fn unpack<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, Status>> {
        Box::pin(async move { Ok(self.images.top_chain(id).await?) })
    }

    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<ResolvedImage, Status>> {
        Box::pin(async move {
            let rec = self.images.resolve(reference)?;
            let cfg = self.images.config_json(&rec)?;
            let c = &cfg["config"];
            let defaults = ImageDefaults {
                env: strings(&c["Env"]),
                entrypoint: strings(&c["Entrypoint"]),
                cmd: strings(&c["Cmd"]),
                working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
                user: c["User"].as_str().unwrap_or("").to_string(),
                stop_signal: c["StopSignal"].as_str().unwrap_or("").to_string(),
                volumes: c["Volumes"]
                    .as_object()
                    .map(|v| v.keys().cloned().collect())
                    .unwrap_or_default(),
                exposed: c["ExposedPorts"]
                    .as_object()
                    .map(|v| v.keys().cloned().collect())
                    .unwrap_or_default(),
                healthcheck: c.get("Healthcheck").filter(|h| h.is_object()).map(|h| {
                    crate::container::health::HealthConfig {
                        test: strings(&h["Test"]),
                        interval: h["Interval"].as_i64().unwrap_or(0),
                        timeout: h["Timeout"].as_i64().unwrap_or(0),
                        start_period: h["StartPeriod"].as_i64().unwrap_or(0),
                        retries: h["Retries"].as_i64().unwrap_or(0) as i32,
                    }
                }),
            };
            let chain = rec
                .layers
                .last()
                .map(|l| l.chain_id.clone())
                .unwrap_or_default();
            let reference = match Reference::parse(reference) {
                Ok(r) if rec.tags.contains(&r.to_string()) => r.familiar(),
                _ => rec.id.clone(),
            };
            Ok(ResolvedImage {
                id: rec.id,
                reference,
                defaults,
                chain,
            })
        })
    }
}

/// The image resolver for containers and the image service to serve.
pub fn wire(
    config: &Config,
    parts: &Parts,
) -> anyhow::Result<(Arc<dyn ImageResolver>, Vec<ServiceAdder>)> {
    let content = ContentStore::open(&config.root)?;
    let images = Arc::new(Images::new(
        &parts.db,
        content,
        parts.storage.clone(),
        &config.root,
    )?);
    let recovering = images.clone();
    tokio::spawn(async move {
        if let Err(e) = recovering.recover().await {
            tracing::warn!(%e, "cleaning up after interrupted image unpacks failed");
        }
    });
    let service = ImageService {
        images: images.clone(),
        containers: parts.containers.clone(),
    };
    let add: ServiceAdder = Box::new(move |router| {
        router.add_service(
            ImagesServer::new(service)
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
        )
    });
    let resolver = Resolver {
        images,
        containers: parts.containers.clone(),
    };
    Ok((Arc::new(resolver), vec![add]))
}
