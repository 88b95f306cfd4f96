//! `strata inspect CONTAINER`: a JSON document shaped like Docker's.

use serde_json::{json, Value};

use super::record::{Record, Status};

/// The Docker-shaped document; `graph` is the snapshot's mounts (`GraphDriver.Data`).
pub fn container_json(rec: &Record, bundle: &str, log_path: &str, graph: Value) -> Value {
    let s = &rec.settings;
    let st = &rec.state;
    // As in Docker, a container waiting to be restarted counts as running.
    let running = matches!(
        st.status,
        Status::Running | Status::Paused | Status::Restarting
    );
    let policy = super::restart::Policy::parse(&s.restart_policy).ok();
    json!({
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
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": log_path,
        "RestartCount": st.restart_count,
        "Name": format!("/{}", rec.name),
        "Driver": rec.driver,
        "Platform": "linux",
        "HostConfig": {
            "Binds": s.binds,
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
            "LogConfig": { "Type": "json-file", "Config": {} },
            "RestartPolicy": {
                "Name": policy.map_or("no", |p| p.name()),
                "MaximumRetryCount": policy.map_or(0, |p| p.max_retries),
            },
        },
        "GraphDriver": { "Name": rec.driver, "Data": graph },
        "Mounts": s.binds.iter().map(|b| {
            let parts: Vec<&str> = b.split(':').collect();
            json!({
                "Type": "bind",
                "Source": parts.first().copied().unwrap_or_default(),
                "Destination": parts.get(1).copied().unwrap_or_default(),
                "Mode": parts.get(2).copied().unwrap_or(""),
                "RW": parts.get(2) != Some(&"ro"),
                "Propagation": "rprivate",
            })
        }).collect::<Vec<_>>(),
        "Config": {
            "Hostname": if s.hostname.is_empty() { &rec.id[..12] } else { s.hostname.as_str() },
            "User": s.user,
            "Env": s.env,
            "Cmd": rec.args.clone(),
            "Entrypoint": [rec.path.clone()],
            "Image": rec.image_ref,
            "WorkingDir": s.working_dir,
            "Tty": s.tty,
            "OpenStdin": s.open_stdin,
            "StdinOnce": s.stdin_once,
            "Labels": {},
        },
        "BundlePath": bundle,
    })
}
