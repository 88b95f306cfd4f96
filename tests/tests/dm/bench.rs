//! Prepare/Commit/Remove/Mounts of a child snapshot: strata-devmapper beside containerd 1.6's
//! devmapper snapshotter (shared/tools/snapbench), in one UML boot, same pool size, same base
//! size and filesystem, alternating rounds. Prints one JSON line per run and the medians.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strata_tests::harness::find_binary;

use crate::support_dm::{remove_all_devices, sh, SCRATCH};

fn wait_socket(sock: &Path, child: &mut Child) -> Result<()> {
    let t = Instant::now();
    while !sock.exists() {
        if let Some(s) = child.try_wait()? {
            bail!("the server exited before serving: {s}");
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("{} did not appear", sock.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn stop(mut child: Child) -> Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    child.wait()?;
    Ok(())
}

fn bench(tools: &Path, sock: &Path, label: &str, n: &str) -> Result<String> {
    let out = Command::new(tools.join("bin/snapshot-bench"))
        .args(["-socket", &sock.to_string_lossy(), "-n", n, "-warmup", "3"])
        .args(["-depth", "1", "-label", label, "-json"])
        .output()
        .context("run snapshot-bench")?;
    if !out.status.success() {
        bail!(
            "snapshot-bench {label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn containerd_round(tools: &Path, dir: &Path, round: usize, n: &str) -> Result<String> {
    let name = format!("cdbench{round}");
    let pools = dir.join("pools");
    sh(
        &tools.join("make-pool.sh").to_string_lossy(),
        &[&name, &pools.to_string_lossy(), "1G", "64M"],
    )?;
    let root = dir.join(format!("cd-root-{round}"));
    let sock = dir.join(format!("cd-{round}.sock"));
    let r = (|| {
        let mut child = Command::new(tools.join("bin/ref-snapshotter"))
            .args(["-kind", "devmapper", "-pool-name", &name])
            .args([
                "-root",
                &root.to_string_lossy(),
                "-socket",
                &sock.to_string_lossy(),
            ])
            .args(["-base-image-size", "64MB", "-fs-type", "ext4"])
            .env("DM_DISABLE_UDEV", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start ref-snapshotter")?;
        let r = wait_socket(&sock, &mut child)
            .and_then(|()| bench(tools, &sock, "containerd-devmapper", n));
        stop(child)?;
        r
    })();
    sh(
        &tools.join("teardown-pool.sh").to_string_lossy(),
        &[&name, &pools.to_string_lossy()],
    )?;
    r
}

fn strata_round(tools: &Path, dir: &Path, round: usize, n: &str) -> Result<String> {
    let root = dir.join(format!("st-root-{round}"));
    let sock = dir.join(format!("st-{round}.sock"));
    let mut child = Command::new(find_binary("strata-devmapper"))
        .args([
            "--root",
            &root.to_string_lossy(),
            "--address",
            &sock.to_string_lossy(),
        ])
        .args(["--log-level", "error"])
        .args([
            "--storage-opt",
            "dm.loopdatasize=1G",
            "--storage-opt",
            "dm.loopmetadatasize=64M",
        ])
        .args([
            "--storage-opt",
            "dm.basesize=64M",
            "--storage-opt",
            "dm.fs=ext4",
        ])
        .args(["--storage-opt", "dm.blkdiscard=false"])
        .stdout(Stdio::null())
        .spawn()
        .context("start strata-devmapper")?;
    let r =
        wait_socket(&sock, &mut child).and_then(|()| bench(tools, &sock, "strata-devmapper", n));
    stop(child)?;
    remove_all_devices()?;
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The benchmark body (inside UML).
pub fn run() -> Result<()> {
    let tools = PathBuf::from(
        std::env::var("STRATA_DM_BENCH_TOOLS").unwrap_or_else(|_| "/tmp/snapbench".into()),
    );
    let n = std::env::var("STRATA_DM_BENCH_N").unwrap_or_else(|_| "30".into());
    let rounds: usize = std::env::var("STRATA_DM_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let _scratch = crate::support_dm::scratch()?;
    let dir = Path::new(SCRATCH).join("bench");
    std::fs::create_dir_all(&dir)?;
    let mut results: Vec<(String, serde_json::Value)> = Vec::new();
    for round in 0..rounds {
        for side in ["containerd", "strata"] {
            let line = if side == "containerd" {
                containerd_round(&tools, &dir, round, &n)?
            } else {
                strata_round(&tools, &dir, round, &n)?
            };
            println!("{line}");
            results.push((side.to_string(), serde_json::from_str(&line)?));
        }
    }
    println!(
        "| op (median of round medians, µs) | strata-devmapper | containerd devmapper | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    for op in ["Prepare", "Mounts", "Commit", "Remove", "View", "Stat"] {
        let get = |side: &str| -> Vec<f64> {
            results
                .iter()
                .filter(|(s, _)| s == side)
                .filter_map(|(_, v)| v["ops"][op]["median_us"].as_f64())
                .collect()
        };
        let (s, c) = (get("strata"), get("containerd"));
        if s.is_empty() || c.is_empty() {
            continue;
        }
        let (s, c) = (median(s), median(c));
        println!("| {op} | {s:.0} | {c:.0} | {:.1}× faster |", c / s);
    }
    Ok(())
}
