//! `strata inspect CONTAINER`: a JSON document shaped like Docker's.

use serde_json::{json, Value};

use super::etc::EtcPaths;
use super::record::{Record, Settings, Status};
use crate::volume::mounts::{self, Kind};

/// What the document shows besides the record: the container's mounts (Docker's `Mounts`),
/// its hostname and its network files (those of the container whose network it joined).
#[derive(Debug, Clone)]
pub struct Extras {
    pub mounts: Vec<Value>,
    pub hostname: String,
    pub files: EtcPaths,
}

/// `HostConfig.Mounts`: the `--mount` specs as Docker's API objects.
fn host_config_mounts(s: &Settings) -> Value {
    let all: Vec<Value> = s
        .mounts
        .iter()
        .filter_map(|m| mounts::parse_mount_flag(m).ok())
        .map(|r| {
            let p = &r.point;
            let mut m =
                json!({ "Type": p.kind.as_str(), "Source": p.source, "Target": p.destination });
            if !p.rw {
                m["ReadOnly"] = json!(true);
            }
            if !p.consistency.is_empty() {
                m["Consistency"] = json!(p.consistency);
            }
            match p.kind {
                Kind::Bind if p.propagation != "rprivate" || p.non_recursive => {
                    m["BindOptions"] =
                        json!({ "Propagation": p.propagation, "NonRecursive": p.non_recursive });
                }
                Kind::Volume => {
                    let v = &r.volume;
                    m["VolumeOptions"] = json!({
                        "NoCopy": p.nocopy,
                        "Labels": v.labels,
                        "DriverConfig": { "Name": crate::volume::DRIVER, "Options": v.driver_opts },
                        "Subpath": p.subpath,
                    });
                }
                Kind::Tmpfs => {
                    let opt = |k: &str| p.tmpfs.iter().find_map(|o| o.strip_prefix(k));
                    let size = opt("size=").and_then(|v| v.parse::<u64>().ok());
                    let mode = opt("mode=").and_then(|v| u32::from_str_radix(v, 8).ok());
                    m["TmpfsOptions"] = json!({ "SizeBytes": size, "Mode": mode });
                }
                _ => {}
            }
            m
        })
        .collect();
    if all.is_empty() {
        Value::Null
    } else {
        json!(all)
    }
}

/// `HostConfig.Ulimits` as Docker's API objects.
fn ulimits(s: &Settings) -> Value {
    let all: Vec<Value> = s
        .ulimits
        .iter()
        .filter_map(|u| {
            let (name, v) = u.split_once('=')?;
            let (soft, hard) = v.split_once(':').unwrap_or((v, v));
            Some(json!({ "Name": name, "Soft": soft.parse::<i64>().ok()?, "Hard": hard.parse::<i64>().ok()? }))
        })
        .collect();
    if all.is_empty() {
        Value::Null
    } else {
        json!(all)
    }
}

/// `-v` specs with a source (`HostConfig.Binds`), and the anonymous ones with the image's
/// `VOLUME`s (`Config.Volumes`).
fn binds_and_volumes(s: &Settings) -> (Value, Value) {
    let (mut binds, mut volumes) = (Vec::new(), serde_json::Map::new());
    for v in &s.image_volumes {
        volumes.insert(v.clone(), json!({}));
    }
    for b in &s.binds {
        match mounts::parse_volume_flag(b) {
            Ok(r) if r.point.anonymous => {
                volumes.insert(r.point.destination, json!({}));
            }
            _ => binds.push(b.clone()),
        }
    }
    let or_null = |v: Value, empty: bool| if empty { Value::Null } else { v };
    (
        or_null(json!(binds), binds.is_empty()),
        or_null(Value::Object(volumes.clone()), volumes.is_empty()),
    )
}

/// The Docker-shaped document; `graph` is the snapshot's mounts (`GraphDriver.Data`).
pub fn container_json(
    rec: &Record,
    bundle: &str,
    log_path: &str,
    graph: Value,
    extras: &Extras,
) -> Value {
    let s = &rec.settings;
    let (binds, anonymous) = binds_and_volumes(s);
    let tmpfs: serde_json::Map<String, Value> = s
        .tmpfs
        .iter()
        .map(|t| {
            let (d, o) = t.split_once(':').unwrap_or((t, ""));
            (d.to_string(), json!(o))
        })
        .collect();
    let st = &rec.state;
    // As in Docker, a container waiting to be restarted counts as running.
    let running = matches!(
        st.status,
        Status::Running | Status::Paused | Status::Restarting
    );
    let policy = super::restart::Policy::parse(&s.restart_policy).ok();
    let mut doc = json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.path,
        "Args": rec.args,
        "State": {
            "Status": st.status.as_str(),
            "Running": running,
            "Paused": st.status == Status::Paused,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": st.status == Status::Dead,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": if st.started_at.is_empty() { "0001-01-01T00:00:00Z" } else { st.started_at.as_str() },
            "FinishedAt": if st.finished_at.is_empty() { "0001-01-01T00:00:00Z" } else { st.finished_at.as_str() },
        },
        "Image": rec.image_id,
        "ResolvConfPath": extras.files.resolv_conf,
        "HostnamePath": extras.files.hostname,
        "HostsPath": extras.files.hosts,
        "LogPath": log_path,
        "RestartCount": st.restart_count,
        "Name": format!("/{}", rec.name),
        "Driver": rec.driver,
        "Platform": "linux",
        "HostConfig": {
            "Binds": binds,
            "Mounts": host_config_mounts(s),
            "Tmpfs": if tmpfs.is_empty() { Value::Null } else { Value::Object(tmpfs) },
            "VolumesFrom": if s.volumes_from.is_empty() { Value::Null } else { json!(s.volumes_from) },
            "Dns": s.dns,
            "DnsSearch": s.dns_search,
            "DnsOptions": s.dns_options,
            "ExtraHosts": if s.extra_hosts.is_empty() { Value::Null } else { json!(s.extra_hosts) },
            "NetworkMode": if s.network_mode.is_empty() { "none" } else { s.network_mode.as_str() },
            "AutoRemove": s.auto_remove,
            "CapAdd": s.cap_add,
            "CapDrop": s.cap_drop,
            "Privileged": s.privileged,
            "ReadonlyRootfs": s.read_only,
            "Memory": s.memory,
            "NanoCpus": s.nano_cpus,
            "CpusetCpus": s.cpuset_cpus,
            "PidsLimit": if s.pids_limit > 0 { Value::from(s.pids_limit) } else { Value::Null },
            "LogConfig": super::logconf::doc(&s.log_driver, &s.log_opts),
            "RestartPolicy": {
                "Name": policy.map_or("no", |p| p.name()),
                "MaximumRetryCount": policy.map_or(0, |p| p.max_retries),
            },
        },
        "GraphDriver": { "Name": rec.driver, "Data": graph },
        "Mounts": extras.mounts,
        "Config": {
            "Hostname": extras.hostname,
            "User": s.user,
            "Env": s.env,
            "Cmd": match &s.config_cmd {
                Some(c) if c.is_empty() => Value::Null,
                Some(c) => json!(c),
                None => json!(rec.args),
            },
            "Entrypoint": match &s.config_entrypoint {
                Some(e) if e.is_empty() => Value::Null,
                Some(e) => json!(e),
                None => json!([rec.path]),
            },
            "Image": rec.image_ref,
            "WorkingDir": s.working_dir,
            "Tty": s.tty,
            "OpenStdin": s.open_stdin,
            "StdinOnce": s.stdin_once,
            "Volumes": anonymous,
            "Labels": {},
        },
        "BundlePath": bundle,
    });
    // (Beside the literal above, which is at the macro's recursion limit.)
    let more = json!({
        "Devices": super::spec::devices_doc(s),
        "MemorySwap": s.memory_swap,
        "CpuShares": s.cpu_shares,
        "OomKillDisable": s.oom_kill_disable,
        "ShmSize": if s.shm_size > 0 { s.shm_size } else { 64 << 20 },
        "Ulimits": ulimits(s),
        "Sysctls": s.sysctls.iter().filter_map(|kv| kv.split_once('=')).collect::<std::collections::BTreeMap<_, _>>(),
        "GroupAdd": if s.group_add.is_empty() { Value::Null } else { json!(s.group_add) },
        "PidMode": s.pid_mode,
        "IpcMode": if s.ipc_mode.is_empty() { "private" } else { s.ipc_mode.as_str() },
        "UTSMode": s.uts_mode,
        "SecurityOpt": if s.security_opt.is_empty() { Value::Null } else { json!(s.security_opt.iter().map(|o| if o.starts_with("seccomp=") && o != "seccomp=unconfined" { "seccomp=<profile>".to_string() } else { o.clone() }).collect::<Vec<_>>()) },
    });
    if let (Some(h), Some(m)) = (doc["HostConfig"].as_object_mut(), more.as_object()) {
        h.extend(m.clone());
    }
    doc["Config"]["StopSignal"] = if s.stop_signal.is_empty() {
        Value::Null
    } else {
        json!(s.stop_signal)
    };
    doc["Config"]["StopTimeout"] = json!(s.stop_timeout);
    doc["HostConfig"]["Init"] = if s.init { json!(true) } else { Value::Null };
    let asked = super::ports::parse_all(&s.publish).unwrap_or_default();
    doc["HostConfig"]["PortBindings"] = super::ports::port_bindings_doc(&asked);
    let exposed: serde_json::Map<String, Value> = super::ports::exposed(s)
        .into_iter()
        .map(|k| (k, json!({})))
        .collect();
    if !exposed.is_empty() {
        doc["Config"]["ExposedPorts"] = Value::Object(exposed);
    }
    doc["HostConfig"]["PublishAllPorts"] = json!(s.publish_all);
    doc["NetworkSettings"] = json!({ "Ports": super::ports::ports_doc(&st.ports) });
    if st.health.is_some() {
        doc["State"]["Health"] = super::health::state_doc(&st.health);
    }
    let check = super::health::config_doc(s);
    if !check.is_null() {
        doc["Config"]["Healthcheck"] = check;
    }
    doc
}
