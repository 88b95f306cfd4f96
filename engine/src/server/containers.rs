//! `strata.engine.v1.Containers`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use strata_proto::engine::containers_server::Containers as ContainersApi;
use strata_proto::engine::*;
use strata_proto::snapshots::MountsRequest;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::ImageResolver;
use crate::container::record::{Record, Settings, Status as CStatus};
use crate::container::{attach, inspect, logs, ContainerError, Containers};
use crate::storage::Storage;

/// Serves the container verbs.
pub struct ContainerService {
    pub containers: Arc<Containers>,
    pub images: Arc<dyn ImageResolver>,
    pub storage: Storage,
}

fn settings(c: ContainerConfig) -> Settings {
    Settings {
        image: c.image,
        cmd: c.cmd,
        entrypoint: c.entrypoint_set.then_some(c.entrypoint),
        env: c.env,
        working_dir: c.working_dir,
        user: c.user,
        hostname: c.hostname,
        memory: c.memory,
        nano_cpus: c.nano_cpus,
        cpuset_cpus: c.cpuset_cpus,
        pids_limit: c.pids_limit,
        binds: c.binds,
        read_only: c.read_only,
        network_mode: c.network_mode,
        cap_add: c.cap_add,
        cap_drop: c.cap_drop,
        privileged: c.privileged,
        auto_remove: c.auto_remove,
        tty: c.tty,
        open_stdin: c.open_stdin,
        stdin_once: c.stdin_once,
        mounts: c.mounts,
        volumes_from: c.volumes_from,
        tmpfs: c.tmpfs,
        extra_hosts: c.extra_hosts,
        dns: c.dns,
        dns_search: c.dns_search,
        dns_options: c.dns_options,
        restart_policy: c.restart_policy,
        labels: c.labels,
        // From the image, at create.
        image_volumes: Vec::new(),
        config_entrypoint: None,
        config_cmd: None,
        ulimits: c.ulimits,
        shm_size: c.shm_size,
        stop_signal: c.stop_signal,
        stop_timeout: (c.stop_timeout >= 0).then_some(c.stop_timeout),
        sysctls: c.sysctls,
        group_add: c.group_add,
        pid_mode: c.pid_mode,
        ipc_mode: c.ipc_mode,
        uts_mode: c.uts_mode,
        security_opt: c.security_opt,
        memory_swap: c.memory_swap,
        cpu_shares: c.cpu_shares,
        oom_kill_disable: c.oom_kill_disable,
        devices: c.devices,
        publish: c.publish,
        log_driver: c.log_driver,
        log_opts: c.log_opts,
        health_cmd: c.health_cmd,
        health_interval: c.health_interval,
        health_timeout: c.health_timeout,
        health_start_period: c.health_start_period,
        health_retries: c.health_retries,
        no_healthcheck: c.no_healthcheck,
        // From the image, at create.
        image_healthcheck: None,
        init: c.init,
        expose: c.expose,
        publish_all: c.publish_all,
        // From the image, at create.
        image_exposed: Vec::new(),
    }
}

/// A stop timeout as the API gives it: seconds, negative for the container's own (its
/// `--stop-timeout`, else Docker's default of 10).
fn stop_timeout(secs: i32) -> Option<Duration> {
    u64::try_from(secs).ok().map(Duration::from_secs)
}

/// An RFC 3339 time (as the runtime writes them), to the second.
fn parse_time(s: &str) -> Option<std::time::SystemTime> {
    let secs = u64::try_from(crate::image::config::parse_time(s)).ok()?;
    (secs > 0).then(|| std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// "3 minutes", "2 seconds" …, as Docker words ages.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn ago(t: &str) -> String {
    parse_time(t)
        .and_then(|t| t.elapsed().ok())
        .map(human_duration)
        .unwrap_or_else(|| "unknown".into())
}

fn summary(r: &Record) -> ContainerSummary {
    let st = &r.state;
    let status = match st.status {
        CStatus::Created => "Created".to_string(),
        CStatus::Running => format!("Up {}", ago(&st.started_at)),
        CStatus::Paused => format!("Up {} (Paused)", ago(&st.started_at)),
        CStatus::Restarting => {
            format!("Restarting ({}) {} ago", st.exit_code, ago(&st.finished_at))
        }
        CStatus::Exited => format!("Exited ({}) {} ago", st.exit_code, ago(&st.finished_at)),
        CStatus::Dead => "Dead".to_string(),
    };
    let command = std::iter::once(r.path.as_str())
        .chain(r.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    ContainerSummary {
        id: r.id.clone(),
        name: r.name.clone(),
        image: r.image_ref.clone(),
        command,
        created: parse_time(&r.created)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64),
        state: st.status.as_str().into(),
        status: if st.status == CStatus::Running {
            status + &crate::container::health::ps_suffix(&st.health)
        } else {
            status
        },
        ports: st
            .ports
            .iter()
            .map(|b| b.display())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogEntry, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ContainersApi for ContainerService {
    async fn create(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let config = req
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("create: a container config is required"))?;
        if config.image.is_empty() {
            return Err(Status::invalid_argument("create: an image is required"));
        }
        let mut image = self.images.resolve(&config.image).await?;
        let name = config.name.clone();
        let s = settings(config);
        let rec = match self.containers.create(&image, &name, s.clone()).await {
            // The first container of an image in this storage driver: unpack, then again.
            Err(ContainerError::LayersMissing(_)) => {
                image.chain = self.images.unpack(&image.id).await?;
                self.containers.create(&image, &name, s).await?
            }
            made => made?,
        };
        let mut warnings = Vec::new();
        let s = &rec.settings;
        if s.network_mode == "host" && (!s.publish.is_empty() || s.publish_all) {
            warnings.push("Published ports are discarded when using host network mode".into());
        } else if s.publish_all {
            for key in crate::container::ports::exposed(s) {
                if !key.ends_with("/tcp") {
                    warnings.push(format!(
                        "{key} is exposed but not published: only TCP ports can be published"
                    ));
                }
            }
        }
        Ok(Response::new(CreateContainerResponse {
            id: rec.id,
            warnings,
        }))
    }

    async fn start(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        self.containers.start(&req.into_inner().container).await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let r = req.into_inner();
        let t = stop_timeout(r.timeout);
        self.containers.stop(&r.container, t).await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn kill(
        &self,
        req: Request<KillContainerRequest>,
    ) -> Result<Response<KillContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers.kill(&r.container, &r.signal).await?;
        Ok(Response::new(KillContainerResponse {}))
    }

    async fn remove(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers
            .remove_with(&r.container, r.force, r.volumes)
            .await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let all = req.into_inner().all;
        let mut recs = self
            .containers
            .records()
            .all()
            .map_err(|e| Status::internal(e.to_string()))?;
        recs.retain(|r| {
            all || matches!(
                r.state.status,
                CStatus::Running | CStatus::Paused | CStatus::Restarting
            )
        });
        recs.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(Response::new(ListContainersResponse {
            containers: recs.iter().map(summary).collect(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<InspectContainerRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let rec = self.containers.resolve(&req.into_inner().container)?;
        let graph = match self
            .storage
            .snapshots()
            .mounts(MountsRequest {
                key: rec.snapshot.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(m) => {
                let mounts: Vec<serde_json::Value> = m
                    .into_inner()
                    .mounts
                    .into_iter()
                    .map(|m| serde_json::json!({"Type": m.r#type, "Source": m.source, "Options": m.options}))
                    .collect();
                let mut data = serde_json::json!({ "Mounts": mounts });
                for o in mounts_options(&data) {
                    if let Some((k, v)) = o.split_once('=') {
                        let key = match k {
                            "lowerdir" => "LowerDir",
                            "upperdir" => "UpperDir",
                            "workdir" => "WorkDir",
                            _ => continue,
                        };
                        data[key] = serde_json::json!(v);
                    }
                }
                data
            }
            Err(e) => serde_json::json!({ "Error": e.message() }),
        };
        let bundle = self.containers.bundle(&rec.id);
        let doc = inspect::container_json(
            &rec,
            &bundle.to_string_lossy(),
            &self.containers.log_path(&rec.id).to_string_lossy(),
            graph,
            &self.containers.inspect_extras(&rec),
        );
        Ok(Response::new(InspectResponse {
            json: serde_json::to_string_pretty(&doc).unwrap_or_default(),
        }))
    }

    async fn wait(
        &self,
        req: Request<WaitContainerRequest>,
    ) -> Result<Response<WaitContainerResponse>, Status> {
        let r = req.into_inner();
        let rec = self.containers.resolve(&r.container)?;
        let st = match r.condition.as_str() {
            "" | "next-exit" => self.containers.wait_exit(&rec).await,
            "removed" => self.containers.wait_removed(&rec).await,
            other => {
                return Err(Status::invalid_argument(format!(
                    "invalid wait condition {other:?}: use next-exit or removed"
                )))
            }
        };
        Ok(Response::new(WaitContainerResponse {
            exit_code: st.exit_code,
            oom_killed: st.oom_killed,
        }))
    }

    async fn pause(
        &self,
        req: Request<PauseContainerRequest>,
    ) -> Result<Response<PauseContainerResponse>, Status> {
        self.containers
            .set_paused(&req.into_inner().container, true)
            .await?;
        Ok(Response::new(PauseContainerResponse {}))
    }

    async fn unpause(
        &self,
        req: Request<UnpauseContainerRequest>,
    ) -> Result<Response<UnpauseContainerResponse>, Status> {
        self.containers
            .set_paused(&req.into_inner().container, false)
            .await?;
        Ok(Response::new(UnpauseContainerResponse {}))
    }

    async fn rename(
        &self,
        req: Request<RenameContainerRequest>,
    ) -> Result<Response<RenameContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers.rename(&r.container, &r.new_name).await?;
        Ok(Response::new(RenameContainerResponse {}))
    }

    async fn restart(
        &self,
        req: Request<RestartContainerRequest>,
    ) -> Result<Response<RestartContainerResponse>, Status> {
        let r = req.into_inner();
        let t = stop_timeout(r.timeout);
        self.containers.stop(&r.container, t).await?;
        let rec = self.containers.start(&r.container).await?;
        self.containers.emit(&rec, "restart");
        Ok(Response::new(RestartContainerResponse {}))
    }

    type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send + 'static>>;

    async fn exec(
        &self,
        req: Request<tonic::Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let r = match input.message().await? {
            Some(ExecInput {
                kind: Some(exec_input::Kind::Start(r)),
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "exec: the first message must say what to run",
                ))
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let spec = crate::container::exec::ExecSpec {
            cmd: r.cmd,
            env: r.env,
            working_dir: r.working_dir,
            user: r.user,
            detach: r.detach,
            tty: r.tty,
            interactive: r.interactive,
            size: attach::window_size(r.size.as_ref()),
            detach_keys: r.detach_keys,
            privileged: r.privileged,
            timeout: None,
        };
        self.containers
            .exec(&r.container, spec, attach::exec_input(input), tx)
            .await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type AttachStream = Pin<Box<dyn Stream<Item = Result<AttachOutput, Status>> + Send + 'static>>;

    async fn attach(
        &self,
        req: Request<tonic::Streaming<AttachInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut input = req.into_inner();
        let r = match input.message().await? {
            Some(AttachInput {
                kind: Some(attach_input::Kind::Open(r)),
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "attach: the first message must say what to attach to",
                ))
            }
        };
        let opts = attach::AttachOptions {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            start: r.start,
            detach_keys: r.detach_keys,
            size: attach::window_size(r.size.as_ref()),
            wait_removed: r.wait_removed,
        };
        let session = self.containers.attach(&r.container, opts).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(session.run(attach::attach_input(input), tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn top(&self, req: Request<TopRequest>) -> Result<Response<TopResponse>, Status> {
        let r = req.into_inner();
        let top = self.containers.top(&r.container, &r.ps_args).await?;
        Ok(Response::new(TopResponse {
            titles: top.titles,
            processes: top
                .processes
                .into_iter()
                .map(|fields| TopRow { fields })
                .collect(),
        }))
    }

    type StatsStream = Pin<Box<dyn Stream<Item = Result<StatsResponse, Status>> + Send + 'static>>;

    async fn stats(
        &self,
        req: Request<StatsRequest>,
    ) -> Result<Response<Self::StatsStream>, Status> {
        let r = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        self.containers.stats(r.containers, r.all, r.stream, tx)?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn changes(
        &self,
        req: Request<ChangesRequest>,
    ) -> Result<Response<ChangesResponse>, Status> {
        let changes = self.containers.changes(&req.into_inner().container).await?;
        Ok(Response::new(ChangesResponse {
            changes: changes
                .into_iter()
                .map(|c| Change {
                    path: c.path,
                    kind: c.kind.letter().into(),
                })
                .collect(),
        }))
    }

    async fn stat_path(&self, req: Request<StatPathRequest>) -> Result<Response<PathStat>, Status> {
        let r = req.into_inner();
        let stat = self.containers.stat_path(&r.container, &r.path).await?;
        Ok(Response::new(stat))
    }

    type CopyFromStream = Pin<Box<dyn Stream<Item = Result<DataChunk, Status>> + Send + 'static>>;

    async fn copy_from(
        &self,
        req: Request<CopyFromRequest>,
    ) -> Result<Response<Self::CopyFromStream>, Status> {
        let r = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let out = super::images::ChunkWriter::new(tx.clone());
        let done = self
            .containers
            .copy_from(&r.container, &r.path, out)
            .await?;
        tokio::spawn(async move {
            match done.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let e = crate::container::ContainerError::from(e);
                    let _ = tx.send(Err(e.to_status())).await;
                }
                Err(_) => {
                    let _ = tx
                        .send(Err(Status::internal("copy: the copy thread died")))
                        .await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn copy_to(
        &self,
        req: Request<tonic::Streaming<CopyToRequest>>,
    ) -> Result<Response<CopyToResponse>, Status> {
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| {
            Status::invalid_argument(
                "copy: the first message must name the container and the directory",
            )
        })?;
        if first.container.is_empty() || first.path.is_empty() {
            return Err(Status::invalid_argument(
                "copy: the first message must name the container and the directory",
            ));
        }
        let opts = crate::image::apply::ExtractOptions {
            owner: (!first.copy_uid_gid).then_some((0, 0)),
            no_overwrite_dir_non_dir: first.no_overwrite_dir_non_dir,
        };
        let reader =
            super::images::chunk_reader(input, Some(first.data), |m: CopyToRequest| m.data);
        self.containers
            .copy_to(&first.container, &first.path, reader, opts)
            .await?;
        Ok(Response::new(CopyToResponse {}))
    }

    async fn prune(
        &self,
        req: Request<PruneContainersRequest>,
    ) -> Result<Response<PruneResponse>, Status> {
        let filters = req.into_inner().filters;
        Ok(Response::new(
            prune_containers(&self.containers, &self.storage, &filters).await?,
        ))
    }

    type LogsStream = LogStream;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let r = req.into_inner();
        let rec = self.containers.resolve(&r.container)?;
        if crate::container::logconf::parse(&rec.settings.log_driver, &rec.settings.log_opts)
            .is_ok_and(|c| c.none)
        {
            return Err(Status::failed_precondition(
                crate::container::logconf::NOT_READABLE,
            ));
        }
        let path = self.containers.log_path(&rec.id);
        let (entries, offset) = logs::tail(&path, if r.tail < 0 { -1 } else { r.tail })
            .map_err(|e| Status::internal(format!("read log {}: {e}", path.display())))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let strip = !r.timestamps;
        let follow = r.follow;
        let state = self.containers.subscribe(&rec);
        tokio::spawn(async move {
            for e in entries {
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            if follow {
                logs::follow(path, offset, tx, state).await;
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let stream =
            tokio_stream::StreamExt::map(stream, move |mut e: Result<LogEntry, Status>| {
                if strip {
                    if let Ok(e) = e.as_mut() {
                        e.time.clear();
                    }
                }
                e
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn mounts_options(data: &serde_json::Value) -> Vec<String> {
    data["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["Options"].as_array().cloned().unwrap_or_default())
        .filter_map(|o| o.as_str().map(String::from))
        .collect()
}

/// Docker's `container prune` filters: created before `until`, with every `label`, with no
/// `label!`.
#[derive(Debug, Default)]
struct PruneFilter {
    until: Option<std::time::SystemTime>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl PruneFilter {
    fn parse(filters: &[String]) -> Result<Self, Status> {
        let mut f = PruneFilter::default();
        for raw in filters {
            let Some((key, value)) = raw.split_once('=') else {
                return Err(Status::invalid_argument(format!(
                    "invalid filter {raw:?}: expected key=value"
                )));
            };
            match key.trim() {
                "until" => {
                    let t = match value.trim().parse::<f64>() {
                        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
                            Some(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs))
                        }
                        _ => parse_time(value.trim()),
                    };
                    f.until = Some(t.ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "invalid filter until={value:?}: use Unix seconds or an RFC 3339 time"
                        ))
                    })?);
                }
                "label" => f.labels.push(value.to_string()),
                "label!" => f.not_labels.push(value.to_string()),
                other => {
                    return Err(Status::invalid_argument(format!(
                        "invalid filter {other:?}: container prune takes until, label and label!"
                    )))
                }
            }
        }
        Ok(f)
    }

    /// Whether a container label list (`key=value` or `key`) has `want` (`key` or
    /// `key=value`).
    fn has(labels: &[String], want: &str) -> bool {
        let pair = |l: &str| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        };
        let (wk, wv) = match want.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (want, None),
        };
        labels
            .iter()
            .map(|l| pair(l))
            .any(|(k, v)| k == wk && wv.is_none_or(|wv| v == wv))
    }

    fn matches(&self, r: &Record) -> bool {
        let labels = &r.settings.labels;
        let old_enough = match (self.until, parse_time(&r.created)) {
            (Some(until), Some(created)) => created < until,
            (Some(_), None) => false,
            (None, _) => true,
        };
        old_enough
            && self.labels.iter().all(|l| Self::has(labels, l))
            && !self.not_labels.iter().any(|l| Self::has(labels, l))
    }
}

/// Removes the containers that are not running (and match `filters`), as `container prune`
/// does; reports their ids and the bytes their writable layers took.
pub(crate) async fn prune_containers(
    containers: &Containers,
    storage: &Storage,
    filters: &[String],
) -> Result<PruneResponse, Status> {
    let filter = PruneFilter::parse(filters)?;
    let recs = containers
        .records()
        .all()
        .map_err(|e| Status::internal(e.to_string()))?;
    let mut report = PruneResponse::default();
    for r in recs {
        let running = matches!(
            r.state.status,
            CStatus::Running | CStatus::Paused | CStatus::Restarting
        );
        if running || !filter.matches(&r) {
            continue;
        }
        let size = storage
            .snapshots()
            .usage(strata_proto::snapshots::UsageRequest {
                key: r.snapshot.clone(),
                ..Default::default()
            })
            .await
            .map_or(0, |u| u.into_inner().size.max(0) as u64);
        // One that started meanwhile is refused, and kept.
        match containers.remove(&r.id, false).await {
            Ok(()) => {
                report.deleted.push(r.id);
                report.space_reclaimed += size;
            }
            Err(e) => tracing::warn!(%e, id = r.id, "pruning a container failed"),
        }
    }
    containers.events().emit(
        "container",
        "prune",
        "",
        [("reclaimed", report.space_reclaimed.to_string())],
    );
    Ok(report)
}
