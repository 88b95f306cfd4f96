//! The process contract every Strata plugin shares (DESIGN.md §2): the socket, refusing bad
//! options at start, SIGTERM, and the Driver service.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tonic::Code;

use crate::client::{gc_root_labels, Harness};
use crate::harness::{run_expecting_refusal, PluginSpec, Sandbox};

/// The plugin's socket is a unix socket with mode 0600.
pub async fn socket_mode(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let socket = h.plugin.socket();
    let md = fs::metadata(socket).with_context(|| format!("stat {}", socket.display()))?;
    ensure!(
        md.file_type().is_socket(),
        "{} is not a socket",
        socket.display()
    );
    let mode = md.mode() & 0o7777;
    ensure!(
        mode == 0o600,
        "the plugin socket must have mode 0600, {} has {mode:04o}",
        socket.display()
    );
    Ok(())
}

/// An unknown or malformed `--storage-opt` is refused at start, with a message naming it.
pub async fn bad_storage_opt_refused(spec: PluginSpec) -> Result<()> {
    for (opt, named) in [
        ("strata.no-such-option=1", "strata.no-such-option"),
        ("no-equals-sign", "no-equals-sign"),
    ] {
        let sandbox = Sandbox::new()?;
        let bad = spec.clone().with_storage_opt(opt);
        let (status, log) = run_expecting_refusal(&bad, &sandbox, Duration::from_secs(15)).await?;
        ensure!(
            !status.success(),
            "the plugin must refuse --storage-opt {opt:?} with a failure exit, got {status}"
        );
        ensure!(
            status.signal().is_none(),
            "the plugin must refuse --storage-opt {opt:?} by exiting, not by dying of {status}"
        );
        ensure!(
            log.contains(named),
            "the refusal of --storage-opt {opt:?} must name {named:?}; the plugin said:\n{log}"
        );
    }
    Ok(())
}

/// SIGTERM while calls are in flight: every call either completes or fails cleanly, the plugin
/// exits 0, and after a restart every Prepare that succeeded is there and the store is
/// consistent.
pub async fn sigterm_during_calls(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let snap = h.snap.clone();
            tokio::spawn(async move {
                let key = format!("inflight-{i}");
                (
                    key.clone(),
                    snap.try_prepare(&key, "", gc_root_labels()).await,
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let status = h.plugin.stop().context("stop the plugin with SIGTERM")?;
    ensure!(
        status.success(),
        "SIGTERM with calls in flight must exit 0, got {status}"
    );
    let mut succeeded = BTreeSet::new();
    for call in calls {
        let (key, result) = call.await.context("a call task panicked")?;
        match result {
            Ok(_) => {
                succeeded.insert(key);
            }
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Cancelled | Code::Unknown
                ) => {}
            Err(s) => bail!(
                "Prepare({key:?}) during SIGTERM failed with {:?}: {} (want success or an \
                 unavailable server)",
                s.code(),
                s.message()
            ),
        }
    }
    h.start_again(&[]).await?;
    let listed = h.check_consistent().await?;
    let names: BTreeSet<String> = listed.into_iter().map(|i| i.name).collect();
    let lost: Vec<&String> = succeeded.difference(&names).collect();
    ensure!(
        lost.is_empty(),
        "Prepares that succeeded before SIGTERM are gone after the restart: {lost:?}"
    );
    Ok(())
}

/// Driver.Status and Driver.Capabilities describe the same driver; Status has the rows the
/// spec names, once each.
pub async fn driver_service(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let status = h
        .driver_status()
        .await?
        .context("a Strata plugin must serve strata.storage.v1.Driver")?;
    let caps = h
        .capabilities()
        .await?
        .context("a Strata plugin must serve strata.storage.v1.Driver")?;
    ensure!(!status.driver.is_empty(), "Driver.Status names no driver");
    ensure!(
        caps.driver == status.driver,
        "Status says driver {:?} but Capabilities says {:?}",
        status.driver,
        caps.driver
    );
    let mut keys = BTreeSet::new();
    for row in &status.rows {
        ensure!(
            keys.insert(row.key.as_str()),
            "Driver.Status has the row {:?} twice",
            row.key
        );
    }
    for want in &spec.status_rows {
        ensure!(
            keys.contains(want.as_str()),
            "Driver.Status must have a {want:?} row; it has {keys:?}"
        );
    }
    Ok(())
}

/// SIGTERM while a client holds a large List stream open without reading it: the plugin must
/// still stop within the stop timeout instead of waiting for that client forever.
pub async fn sigterm_with_stalled_stream(spec: PluginSpec) -> Result<()> {
    let mut h = Harness::start(&spec).await?;
    let value = "v".repeat(4000);
    let many: crate::client::Labels = (0..10)
        .map(|i| (format!("big-{i}"), value.clone()))
        .collect();
    for i in 0..300 {
        h.snap
            .try_view(&format!("view-{i:04}"), "", many.clone())
            .await
            .map_err(|s| crate::client::status_error(s, "View"))?;
    }
    let channel = h.plugin.connect().await?;
    let mut client = strata_proto::snapshots::snapshots_client::SnapshotsClient::new(channel)
        .max_decoding_message_size(16 << 20);
    let stream = client
        .list(strata_proto::snapshots::ListSnapshotsRequest::default())
        .await
        .context("open a List stream")?
        .into_inner();
    // Do not read it; let the server's sends back up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let status = h
        .plugin
        .stop()
        .context("SIGTERM with a stalled List stream open")?;
    ensure!(status.success(), "SIGTERM must exit 0, got {status}");
    drop(stream);
    ensure!(
        started.elapsed() < crate::harness::STOP_TIMEOUT,
        "stopping took {:?}",
        started.elapsed()
    );
    Ok(())
}
