//! End-to-end: `--log-opt max-size/max-file` rotate a container's json-file log, `logs` reads
//! across the rotated files and `logs -f` follows through rotations; `--log-driver none` keeps
//! nothing and `logs` says so; bad values are refused in one line.

use std::fs;
use std::io::Read;
use std::process::Stdio;

use anyhow::ensure;
use strata_tests::engine::{check, engine, BUSYBOX};

/// The numbers of lines `prefix<N>` in `out`, in order.
fn numbers(out: &str, prefix: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix)?.parse().ok())
        .collect()
}

#[test]
fn engine_log_opts_rotate_and_logs_reads_across_them() {
    let e = engine();
    check((|| {
        let many = "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line $i; done";
        let run = [
            "run",
            "--name",
            "chatty",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=3",
            BUSYBOX,
            "sh",
            "-c",
            many,
        ];
        ensure!(numbers(&e.ok(&run)?, "line ") == (1..=300).collect::<Vec<_>>());
        let id = e
            .ok(&["inspect", "-f", "{{.Id}}", "chatty"])?
            .trim()
            .to_string();
        let log = e.containers_dir().join(&id).join(format!("{id}-json.log"));
        let with = |n: u32| {
            let mut p = log.as_os_str().to_owned();
            p.push(format!(".{n}"));
            std::path::PathBuf::from(p)
        };
        ensure!(with(1).exists() && with(2).exists() && !with(3).exists());
        for f in [log.clone(), with(1), with(2)] {
            let len = fs::metadata(&f)?.len();
            ensure!(len < 1024 + 200, "{} is {len} bytes", f.display());
        }
        // All that is kept, oldest first, without a gap, up to the last line.
        let kept = numbers(&e.ok(&["logs", "chatty"])?, "line ");
        let first = kept.first().copied().unwrap_or(0);
        ensure!(
            first > 1 && kept == (first..=300).collect::<Vec<_>>(),
            "logs kept {kept:?}"
        );
        ensure!(e.ok(&["logs", "--tail", "2", "chatty"])? == "line 299\nline 300\n");
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "chatty"])?)?;
        ensure!(
            doc[0]["HostConfig"]["LogConfig"]
                == serde_json::json!({ "Type": "json-file", "Config": { "max-size": "1k", "max-file": "3" } }),
            "{}",
            doc[0]["HostConfig"]["LogConfig"]
        );
        e.ok(&["rm", "chatty"])?;
        Ok(())
    })());
}

#[test]
fn engine_logs_follow_through_rotations() {
    let e = engine();
    check((|| {
        let slow = "sleep 0.5; i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo l$i; sleep 0.1; done";
        e.ok(&[
            "run",
            "-d",
            "--name",
            "slow",
            "--log-opt",
            "max-size=200",
            "--log-opt",
            "max-file=9",
            BUSYBOX,
            "sh",
            "-c",
            slow,
        ])?;
        let mut follower = e
            .command(&["logs", "-f", "slow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut out = String::new();
        if let Some(mut o) = follower.stdout.take() {
            o.read_to_string(&mut out)?;
        }
        ensure!(follower.wait()?.success());
        ensure!(
            numbers(&out, "l") == (1..=20).collect::<Vec<_>>(),
            "followed {out:?}"
        );
        e.ok(&["rm", "slow"])?;
        Ok(())
    })());
}

#[test]
fn engine_log_driver_none_and_bad_log_opts() {
    let e = engine();
    check((|| {
        e.ok(&[
            "run",
            "--name",
            "quiet",
            "--log-driver",
            "none",
            BUSYBOX,
            "echo",
            "hi",
        ])?;
        e.fails_one_line(
            &["logs", "quiet"],
            1,
            "configured logging driver does not support reading",
        )?;
        e.ok(&["rm", "quiet"])?;
        for (args, want) in [
            (
                vec!["--log-driver", "syslog"],
                "invalid --log-driver \"syslog\"",
            ),
            (vec!["--log-opt", "max-size=big"], "expected a size"),
            (
                vec!["--log-opt", "compress=true"],
                "unknown log opt 'compress'",
            ),
            (vec!["--log-opt", "max-file=2"], "it needs max-size"),
        ] {
            e.refuses_run(&args, want)?;
        }
        Ok(())
    })());
}
