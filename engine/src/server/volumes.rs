//! `strata.engine.v1.Volumes`: create, list, inspect, remove and prune volumes.

use std::sync::Arc;

use serde_json::json;
use strata_proto::engine::volumes_server::Volumes as VolumesApi;
use strata_proto::engine::*;
use tonic::{Request, Response, Status};

use crate::volume::{Volume as Record, Volumes};

/// Serves the volume verbs.
pub struct VolumeService {
    pub volumes: Arc<Volumes>,
}

/// Docker's `volume inspect` document.
pub fn volume_json(v: &Record, mountpoint: &std::path::Path) -> serde_json::Value {
    json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": mountpoint,
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
    })
}

/// Docker's `volume ls` filters: dangling, name (a substring), label (key or key=value),
/// driver. Values of one key match if any does; every key must match.
fn matcher(filters: &[String]) -> Result<impl Fn(&Record, usize) -> bool, Status> {
    let mut by: Vec<(String, Vec<String>)> = Vec::new();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            Status::invalid_argument(format!("invalid filter {f:?}: expected key=value"))
        })?;
        let k = k.trim().to_ascii_lowercase();
        match k.as_str() {
            "dangling" if !matches!(v, "true" | "false" | "1" | "0") => {
                return Err(Status::invalid_argument(format!(
                    "invalid filter {f:?}: dangling is true or false"
                )))
            }
            "dangling" | "name" | "label" | "driver" => {}
            _ => {
                return Err(Status::invalid_argument(format!(
                    "invalid filter key {k:?}: use dangling, name, label or driver"
                )))
            }
        }
        match by.iter_mut().find(|(key, _)| *key == k) {
            Some((_, vals)) => vals.push(v.to_string()),
            None => by.push((k, vec![v.to_string()])),
        }
    }
    Ok(move |v: &Record, refs: usize| {
        by.iter().all(|(k, vals)| {
            vals.iter().any(|want| match k.as_str() {
                "dangling" => (refs == 0) == matches!(want.as_str(), "true" | "1"),
                "name" => v.name.contains(want.as_str()),
                "driver" => v.driver == *want,
                _ => match want.split_once('=') {
                    Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
                    None => v.labels.contains_key(want.as_str()),
                },
            })
        })
    })
}

fn to_proto(v: Record, mountpoint: &std::path::Path, refs: usize) -> Volume {
    Volume {
        name: v.name,
        driver: v.driver,
        mountpoint: mountpoint.to_string_lossy().into_owned(),
        created_at: v.created_at,
        labels: v.labels.into_iter().collect(),
        options: v.options.into_iter().collect(),
        ref_count: refs as i64,
    }
}

/// The prune report as the API carries it.
pub fn prune_response(r: crate::volume::PruneReport) -> PruneResponse {
    PruneResponse {
        deleted: r.deleted,
        untagged: Vec::new(),
        space_reclaimed: r.space_reclaimed,
    }
}

#[tonic::async_trait]
impl VolumesApi for VolumeService {
    async fn create(&self, req: Request<CreateVolumeRequest>) -> Result<Response<Volume>, Status> {
        let r = req.into_inner();
        let (v, _) = self.volumes.create(
            &r.name,
            &r.driver,
            r.labels.into_iter().collect(),
            r.driver_opts.into_iter().collect(),
        )?;
        let mp = self.volumes.data_dir(&v.name);
        Ok(Response::new(to_proto(v, &mp, 0)))
    }

    async fn list(
        &self,
        req: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let keep = matcher(&req.into_inner().filters)?;
        let refs = self.volumes.ref_counts()?;
        let volumes = self
            .volumes
            .list()?
            .into_iter()
            .filter_map(|v| {
                let n = refs.get(&v.name).copied().unwrap_or(0);
                keep(&v, n).then(|| {
                    let mp = self.volumes.data_dir(&v.name);
                    to_proto(v, &mp, n)
                })
            })
            .collect();
        Ok(Response::new(ListVolumesResponse { volumes }))
    }

    async fn inspect(
        &self,
        req: Request<InspectVolumeRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let name = req.into_inner().name;
        let v = self.volumes.get(&name)?;
        let doc = volume_json(&v, &self.volumes.data_dir(&v.name));
        Ok(Response::new(InspectResponse {
            json: serde_json::to_string_pretty(&doc).unwrap_or_default(),
        }))
    }

    async fn remove(
        &self,
        req: Request<RemoveVolumeRequest>,
    ) -> Result<Response<RemoveVolumeResponse>, Status> {
        let r = req.into_inner();
        self.volumes.remove(&r.name, r.force)?;
        Ok(Response::new(RemoveVolumeResponse {}))
    }

    async fn prune(
        &self,
        req: Request<PruneVolumesRequest>,
    ) -> Result<Response<PruneResponse>, Status> {
        let report = self.volumes.prune(req.into_inner().all).await?;
        Ok(Response::new(prune_response(report)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let mut v = Record {
            name: "web-data".into(),
            driver: "local".into(),
            ..Default::default()
        };
        v.labels.insert("env".into(), "prod".into());
        let m = |f: &[&str]| matcher(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(m(&["dangling=true"]).unwrap()(&v, 0));
        assert!(!m(&["dangling=true"]).unwrap()(&v, 1));
        assert!(m(&["name=data", "label=env=prod"]).unwrap()(&v, 3));
        assert!(!m(&["label=env=dev"]).unwrap()(&v, 0));
        assert!(m(&["label=env", "name=zzz", "name=web"]).unwrap()(&v, 0));
        assert!(m(&["colour=red"]).is_err());
        assert!(m(&["dangling=maybe"]).is_err());
    }
}
