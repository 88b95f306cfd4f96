//! End-to-end: `stratad` and `strata` as a user drives them — load, run, the flags observed
//! from inside the container, limits, lifecycle, restarts, and bad input.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use strata_tests::engine::BUSYBOX;
use strata_tests::engine::{check, engine};

#[test]
fn engine_run_prints_output_and_exits_with_the_code() {
    let e = engine();
    check((|| {
        let out = e.ok(&["run", "--rm", BUSYBOX, "echo", "hello"])?;
        ensure!(out == "hello\n", "output {out:?}");
        let o = e.strata(&[
            "run",
            "--rm",
            BUSYBOX,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])?;
        ensure!(o.status.code() == Some(3), "exit {:?}", o.status);
        ensure!(
            String::from_utf8_lossy(&o.stdout) == "out\n"
                && String::from_utf8_lossy(&o.stderr) == "err\n"
        );
        Ok(())
    })());
}

#[test]
fn engine_run_flags_are_seen_inside() {
    let e = engine();
    check((|| {
        let envf = e.scratch("env")?.join("vars");
        fs::write(&envf, "# comment\nFROM_FILE=yes\n")?;
        let host = e.scratch("host")?;
        fs::write(host.join("data"), "from host")?;
        // The container runs as uid 1000 below and writes here.
        fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let vol = format!("{}:/mnt/h", host.display());
        let vol_ro = format!("{}:/mnt/ro:ro", host.display());
        let script = "echo env=$GREETING,$FROM_FILE; echo cwd=$(pwd); echo id=$(id -u):$(id -g); \
                      echo host=$(hostname); cat /mnt/h/data; echo; echo x > /mnt/ro/y 2>/dev/null && echo ro-writable || echo ro-refused; \
                      echo w > /mnt/h/written; grep -c : /proc/net/dev";
        let out = e.ok(&[
            "run",
            "--rm",
            "-e",
            "GREETING=hi",
            "--env-file",
            &envf.to_string_lossy(),
            "-w",
            "/work/dir",
            "-u",
            "1000:1000",
            "--hostname",
            "box",
            "-v",
            &vol,
            "-v",
            &vol_ro,
            BUSYBOX,
            "sh",
            "-c",
            script,
        ])?;
        for want in [
            "env=hi,yes",
            "cwd=/work/dir",
            "id=1000:1000",
            "host=box",
            "from host",
            "ro-refused",
        ] {
            ensure!(out.contains(want), "{want:?} not in:\n{out}");
        }
        // --network none: only lo (plus the two header lines of /proc/net/dev).
        ensure!(out.trim_end().ends_with("\n1"), "interfaces: {out}");
        ensure!(
            fs::read_to_string(host.join("written"))? == "w\n",
            "the bind mount is writable"
        );
        let out = e.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            BUSYBOX,
            "via",
            "entrypoint",
        ])?;
        ensure!(out == "via entrypoint\n", "{out:?}");
        let o = e.strata(&["run", "--rm", "--read-only", BUSYBOX, "touch", "/x"])?;
        ensure!(!o.status.success(), "--read-only root must refuse writes");
        let host_ifs = e.ok(&[
            "run",
            "--rm",
            "--network",
            "host",
            BUSYBOX,
            "cat",
            "/proc/net/dev",
        ])?;
        ensure!(
            host_ifs.lines().count() >= 3,
            "--network host sees the host's interfaces:\n{host_ifs}"
        );
        Ok(())
    })());
}

fn cap_eff(out: &str) -> Result<u64> {
    let line = out
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .context("no CapEff line")?;
    Ok(u64::from_str_radix(
        line.split_whitespace().nth(1).context("CapEff value")?,
        16,
    )?)
}

#[test]
fn engine_capabilities_and_privileged() {
    let e = engine();
    check((|| {
        const SYS_ADMIN: u64 = 1 << 21;
        const CHOWN: u64 = 1 << 0;
        let default = cap_eff(&e.ok(&["run", "--rm", BUSYBOX, "cat", "/proc/self/status"])?)?;
        ensure!(
            default & SYS_ADMIN == 0 && default & CHOWN != 0,
            "default caps {default:x}"
        );
        let added = cap_eff(&e.ok(&[
            "run",
            "--rm",
            "--cap-add",
            "SYS_ADMIN",
            "--cap-drop",
            "CHOWN",
            BUSYBOX,
            "cat",
            "/proc/self/status",
        ])?)?;
        ensure!(
            added & SYS_ADMIN != 0 && added & CHOWN == 0,
            "caps {added:x}"
        );
        let privileged = cap_eff(&e.ok(&[
            "run",
            "--rm",
            "--privileged",
            BUSYBOX,
            "cat",
            "/proc/self/status",
        ])?)?;
        ensure!(
            privileged & SYS_ADMIN != 0,
            "privileged caps {privileged:x}"
        );
        Ok(())
    })());
}

#[test]
fn engine_resource_limits_are_applied() {
    let e = engine();
    check((|| {
        let out = e.ok(&[
            "run", "--rm", "-m", "64m", "--cpus", "0.5", "--cpuset-cpus", "0", "--pids-limit", "50", BUSYBOX, "sh", "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max; \
             grep Cpus_allowed_list /proc/self/status",
        ])?;
        let lines: Vec<&str> = out.lines().collect();
        ensure!(lines.first() == Some(&"67108864"), "memory limit: {out}");
        ensure!(lines.get(1) == Some(&"50000"), "cpu quota: {out}");
        ensure!(lines.get(2) == Some(&"50"), "pids limit: {out}");
        ensure!(
            lines.get(3).is_some_and(|l| l.ends_with("\t0")),
            "cpuset: {out}"
        );
        Ok(())
    })());
}

/// A running container's first process is in its cgroup in every hierarchy, the unified one
/// of a hybrid host included (joined just after the start, off its path).
#[test]
fn engine_container_is_in_its_cgroup_in_every_hierarchy() {
    let e = engine();
    check((|| {
        let id = e
            .ok(&["run", "-d", BUSYBOX, "sleep", "100"])?
            .trim()
            .to_string();
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", &id])?)?;
        let pid = doc[0]["State"]["Pid"].as_i64().context("State.Pid")?;
        let want = format!("/strata/{id}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
            let outside: Vec<&str> = cgroups.lines().filter(|l| !l.ends_with(&want)).collect();
            if outside.is_empty() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "not in {want} in every hierarchy: {outside:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        e.ok(&["rm", "-f", &id])?;
        Ok(())
    })());
}

#[test]
fn engine_memory_limit_oom_kills_and_inspect_says_so() {
    let e = engine();
    check((|| {
        // A shell that keeps doubling a string goes far past 16 MiB.
        let o = e.strata(&[
            "run",
            "--name",
            "hog",
            "-m",
            "16m",
            BUSYBOX,
            "sh",
            "-c",
            "x=y; while true; do x=$x$x; done",
        ])?;
        ensure!(
            o.status.code() == Some(137),
            "an OOM-killed container exits 137, got {:?}",
            o.status
        );
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "hog"])?)?;
        ensure!(
            doc[0]["State"]["OOMKilled"] == true,
            "OOMKilled: {}",
            doc[0]["State"]
        );
        ensure!(doc[0]["State"]["ExitCode"] == 137 && doc[0]["State"]["Status"] == "exited");
        Ok(())
    })());
}

#[test]
fn engine_rm_leaves_nothing_behind() {
    let e = engine();
    check((|| {
        let snapshots_before = fs::read_dir(e.root.join("storage/overlay2/snapshots"))?.count();
        // `run --rm` returns once the container is removed.
        e.ok(&["run", "--rm", "--name", "gone", BUSYBOX, "true"])?;
        ensure!(
            e.ok(&["ps", "-aq"])?.trim().is_empty(),
            "the --rm container is still listed"
        );
        ensure!(
            fs::read_dir(e.containers_dir())?.count() == 0,
            "container directory left"
        );
        // The same with the id known: no cgroup of it is left in any hierarchy.
        let id = e
            .ok(&["create", "--rm", BUSYBOX, "true"])?
            .trim()
            .to_string();
        e.ok(&["start", &id])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !e.ok(&["ps", "-aq"])?.trim().is_empty() {
            ensure!(
                Instant::now() < deadline,
                "the --rm container is still listed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in fs::read_dir("/sys/fs/cgroup")? {
            let cg = h?.path().join("strata").join(&id);
            ensure!(!cg.exists(), "cgroup {} left", cg.display());
        }
        ensure!(
            !std::path::Path::new("/sys/fs/cgroup/strata")
                .join(&id)
                .exists(),
            "cgroup left"
        );
        let mounts = fs::read_to_string("/proc/self/mountinfo")?;
        ensure!(
            !mounts.contains(&e.root.to_string_lossy().to_string()),
            "a mount is left under the root"
        );
        // Removed snapshots are deleted in the background.
        std::thread::sleep(Duration::from_millis(300));
        let snapshots_after = fs::read_dir(e.root.join("storage/overlay2/snapshots"))?.count();
        ensure!(
            snapshots_after == snapshots_before,
            "snapshots {snapshots_before} → {snapshots_after}"
        );
        ensure!(e.fails(&["inspect", "--type", "container", "gone"]).is_ok());
        Ok(())
    })());
}

#[test]
fn engine_ps_stop_kill_and_states() {
    let e = engine();
    check((|| {
        e.ok(&["create", "--name", "made", BUSYBOX, "true"])?;
        // pid 1 of a container ignores signals it has no handler for, as in Docker: trap one.
        e.ok(&[
            "run",
            "-d",
            "--name",
            "sleeper",
            BUSYBOX,
            "sh",
            "-c",
            "trap 'exit 10' USR1; while true; do sleep 0.1; done",
        ])?;
        // Ignores SIGTERM: stop must escalate to SIGKILL after the timeout.
        e.ok(&[
            "run",
            "-d",
            "--name",
            "stubborn",
            BUSYBOX,
            "sh",
            "-c",
            "trap '' TERM; while true; do sleep 1; done",
        ])?;
        let ps = e.ok(&["ps"])?;
        ensure!(
            ps.contains("sleeper") && ps.contains("stubborn") && !ps.contains("made"),
            "{ps}"
        );
        let all = e.ok(&["ps", "-a"])?;
        ensure!(all.contains("made") && all.contains("Created"), "{all}");
        let t = Instant::now();
        e.ok(&["stop", "-t", "1", "stubborn"])?;
        ensure!(
            t.elapsed() >= Duration::from_millis(900),
            "stop returned after {:?}, before the timeout",
            t.elapsed()
        );
        let code = e.ok(&["wait", "stubborn"])?;
        ensure!(code.trim() == "137", "killed after the timeout: {code}");
        e.ok(&["kill", "-s", "USR1", "sleeper"])?;
        ensure!(
            e.ok(&["wait", "sleeper"])?.trim() == "10",
            "the USR1 trap exits 10"
        );
        let all = e.ok(&["ps", "-a"])?;
        ensure!(
            all.contains("Exited (137)") && all.contains("Exited (10)"),
            "{all}"
        );
        e.ok(&["rm", "made", "sleeper", "stubborn"])?;
        ensure!(e.ok(&["ps", "-aq"])?.trim().is_empty());
        Ok(())
    })());
}

#[test]
fn engine_logs_follow_tail_and_timestamps() {
    let e = engine();
    check((|| {
        e.ok(&[
            "run",
            "-d",
            "--name",
            "talker",
            BUSYBOX,
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; done; sleep 0.2; echo oops >&2",
        ])?;
        e.ok(&["wait", "talker"])?;
        let all = e.strata(&["logs", "talker"])?;
        ensure!(String::from_utf8_lossy(&all.stdout) == "line1\nline2\nline3\nline4\nline5\n");
        ensure!(String::from_utf8_lossy(&all.stderr) == "oops\n");
        let tail = e.ok(&["logs", "--tail", "2", "talker"])?;
        ensure!(
            tail == "line5\n",
            "tail 2 = line5 and the stderr line: {tail:?}"
        );
        let ts = e.ok(&["logs", "-t", "--tail", "1", "talker"])?;
        ensure!(ts.is_empty() || ts.starts_with("20"), "{ts:?}");
        e.ok(&[
            "run",
            "-d",
            "--name",
            "slow",
            BUSYBOX,
            "sh",
            "-c",
            "echo a; sleep 1; echo b",
        ])?;
        let followed = e.ok(&["logs", "-f", "slow"])?;
        ensure!(
            followed == "a\nb\n",
            "logs -f follows to the end: {followed:?}"
        );
        Ok(())
    })());
}

#[test]
fn engine_restart_keeps_images_and_stopped_containers() {
    let mut e = engine();
    check((|| {
        e.ok(&["run", "--name", "done", BUSYBOX, "sh", "-c", "exit 7"])
            .ok();
        let st = e.stop()?;
        ensure!(st.success(), "SIGTERM stops stratad with 0: {st}");
        e.spawn()?;
        ensure!(
            e.ok(&["images"])?.contains("busybox"),
            "the image survives a restart"
        );
        let all = e.ok(&["ps", "-a"])?;
        ensure!(all.contains("done") && all.contains("Exited (7)"), "{all}");
        ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "again"])? == "again\n");
        Ok(())
    })());
}

#[test]
fn engine_restarts_a_killed_storage_plugin() {
    let e = engine();
    check((|| {
        let plugin_pid = fs::read_dir("/proc")?
            .filter_map(|p| p.ok())
            .filter_map(|p| {
                let cmd = fs::read(p.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).into_owned();
                (cmd.contains("strata-overlay2") && cmd.contains(&*e.run_root.to_string_lossy()))
                    .then(|| p.file_name().to_string_lossy().parse::<i32>().ok())?
            })
            .next()
            .context("find the plugin process")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(plugin_pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match e.ok(&["run", "--rm", BUSYBOX, "echo", "back"]) {
                Ok(out) if out == "back\n" => break,
                Ok(out) => anyhow::bail!("unexpected output {out:?}"),
                Err(err) => {
                    ensure!(
                        Instant::now() < deadline,
                        "the engine did not get its storage back: {err:?}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Ok(())
    })());
}

#[test]
fn engine_bad_input_gets_one_clear_line() {
    let e = engine();
    check((|| {
        let cases: &[(&[&str], &str)] = &[
            (&["run", "--rm", "nosuchimage"], "nosuchimage"),
            (&["start", "nosuchcontainer"], "nosuchcontainer"),
            (&["rm", "nosuchcontainer"], "nosuchcontainer"),
            (&["run", "-m", "lots", BUSYBOX, "true"], "memory"),
            (&["run", "--cpus", "-1", BUSYBOX, "true"], "cpus"),
            (&["run", "--network", "bridge0", BUSYBOX, "true"], "network"),
            (&["run", "--cap-add", "FLYING", BUSYBOX, "true"], "FLYING"),
            // A name with a slash is neither a volume name nor an absolute host path.
            (&["run", "-v", "rel/dir:/x", BUSYBOX, "true"], "rel/dir"),
            (&["run", "--name", "bad/name", BUSYBOX, "true"], "bad/name"),
            (&["kill", "-s", "NOPE", "x"], ""),
        ];
        for (args, needle) in cases {
            let (code, err) = e.fails(args)?;
            ensure!(code != 0, "{args:?}");
            ensure!(
                err.lines().count() == 1 && err.starts_with("strata: "),
                "{args:?}: one line expected, got {err:?}"
            );
            ensure!(
                err.contains(needle),
                "{args:?}: {err:?} should name {needle:?}"
            );
        }
        // As Docker's run: 127 for a command that is not there, 126 for one that cannot be
        // run, in the foreground, detached and attached alike; --rm leaves nothing of them.
        let commands: &[(&[&str], i32, &str)] = &[
            (
                &["run", "--rm", BUSYBOX, "nosuchcmd"],
                127,
                "\"nosuchcmd\": executable file not found",
            ),
            (
                &["run", "-d", "--rm", BUSYBOX, "/no/such/file"],
                127,
                "executable file not found",
            ),
            (
                &["run", "--rm", "-i", BUSYBOX, "nosuchcmd"],
                127,
                "executable file not found",
            ),
            (
                &["run", "--rm", BUSYBOX, "/etc"],
                126,
                "/etc: permission denied",
            ),
        ];
        for (args, code, want) in commands {
            e.fails_one_line(args, *code, want)?;
        }
        ensure!(
            e.ok(&["ps", "-aq"])?.trim().is_empty(),
            "{}",
            e.ok(&["ps", "-a"])?
        );
        e.ok(&["create", "--name", "taken", BUSYBOX, "true"])?;
        let (_, err) = e.fails(&["create", "--name", "taken", BUSYBOX, "true"])?;
        ensure!(err.contains("taken") && err.contains("in use"), "{err}");
        ensure!(
            e.ok(&["ps", "-aq"])?.lines().count() == 1,
            "a failed create leaves nothing"
        );
        Ok(())
    })());
}

#[test]
fn engine_pause_unpause_rename_restart() {
    let e = engine();
    check((|| {
        // A counter that ticks every 50 ms into a file.
        e.ok(&[
            "run",
            "-d",
            "--name",
            "counter",
            BUSYBOX,
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done",
        ])?;
        std::thread::sleep(Duration::from_millis(300));
        let root = e.containers_dir();
        let id = e.ok(&["ps", "-q", "--no-trunc"])?.trim().to_string();
        let counter = root.join(&id).join("rootfs/tmp/n");
        let read = || fs::read_to_string(&counter).map(|s| s.trim().parse::<u64>().unwrap_or(0));
        e.ok(&["pause", "counter"])?;
        ensure!(e.ok(&["ps"])?.contains("(Paused)"), "ps shows the pause");
        let frozen = read()?;
        std::thread::sleep(Duration::from_millis(400));
        ensure!(read()? == frozen, "the counter moved while paused");
        let (_, err) = e.fails(&["pause", "counter"])?;
        ensure!(err.contains("paused"), "pausing twice: {err}");
        e.ok(&["unpause", "counter"])?;
        std::thread::sleep(Duration::from_millis(400));
        ensure!(read()? > frozen, "the counter did not move after unpause");
        e.ok(&["rename", "counter", "ticker"])?;
        ensure!(e.ok(&["ps"])?.contains("ticker"));
        let (_, err) = e.fails(&["rename", "ticker", "bad/name"])?;
        ensure!(err.contains("bad/name"), "{err}");
        e.ok(&["restart", "-t", "1", "ticker"])?;
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "ticker"])?)?;
        ensure!(
            doc[0]["State"]["Running"] == true,
            "running again after restart: {}",
            doc[0]["State"]
        );
        e.ok(&["pause", "ticker"])?;
        e.ok(&["rm", "-f", "ticker"])?;
        ensure!(
            e.ok(&["ps", "-aq"])?.trim().is_empty(),
            "a paused container is removed with -f"
        );
        Ok(())
    })());
}

#[test]
fn engine_exec_runs_in_the_container() {
    let e = engine();
    check((|| {
        e.ok(&[
            "run",
            "-d",
            "--name",
            "host",
            "--hostname",
            "inside",
            BUSYBOX,
            "sleep",
            "1000",
        ])?;
        ensure!(
            e.ok(&["exec", "host", "hostname"])? == "inside\n",
            "exec sees the container's hostname"
        );
        let out = e.ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "-u",
            "1000",
            "host",
            "sh",
            "-c",
            "echo $X $(pwd) $(id -u)",
        ])?;
        ensure!(out == "1 /tmp 1000\n", "{out:?}");
        let o = e.strata(&["exec", "host", "sh", "-c", "echo err >&2; exit 5"])?;
        ensure!(
            o.status.code() == Some(5) && String::from_utf8_lossy(&o.stderr) == "err\n",
            "{o:?}"
        );
        e.ok(&["exec", "-d", "host", "sh", "-c", "echo detached > /tmp/d"])?;
        std::thread::sleep(Duration::from_millis(300));
        ensure!(e.ok(&["exec", "host", "cat", "/tmp/d"])? == "detached\n");
        e.ok(&["stop", "-t", "0", "host"])?;
        let (_, err) = e.fails(&["exec", "host", "true"])?;
        ensure!(
            err.contains("host") && err.contains("exited"),
            "exec into a stopped container: {err}"
        );
        Ok(())
    })());
}

/// `--format` as Docker's CLI takes it: Go templates on `ps`, `images`, `inspect -f` and
/// `info -f`, `table` templates with a header, `json`; `inspect`'s config as Docker's.
#[test]
fn engine_format_templates_as_docker() {
    let e = engine();
    check((|| {
        e.ok(&[
            "create", "--name", "fmt", "-e", "K=v", BUSYBOX, "echo", "hi",
        ])?;
        e.ok(&["create", "--name", "ep", "--entrypoint", "echo", BUSYBOX])?;
        let out = e.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])?;
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        ensure!(lines == ["ep Created", "fmt Created"], "{out:?}");
        let out = e.ok(&["ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}"])?;
        let head = out.lines().next().unwrap_or_default();
        ensure!(
            head.starts_with("CONTAINER ID") && head.ends_with("NAMES") && out.lines().count() == 3,
            "{out}"
        );
        let json = e.ok(&["ps", "-a", "--format", "{{json .}}"])?;
        for line in json.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            ensure!(v["ID"].as_str().map(str::len) == Some(12), "{line}");
        }
        let out = e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?;
        ensure!(out == "busybox:latest\n", "{out:?}");
        // inspect -f on each object; Config as Docker's: the command in effect, the
        // entrypoint (null when there is none).
        let out = e.ok(&[
            "inspect",
            "-f",
            "{{.Name}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Env}}",
            "fmt",
            "ep",
        ])?;
        ensure!(
            out == "/fmt [\"echo\",\"hi\"] null [\"PATH=/bin\",\"K=v\"]\n\
                    /ep null [\"echo\"] [\"PATH=/bin\"]\n",
            "{out:?}"
        );
        let out = e.ok(&["info", "-f", "{{.Driver}} {{.Containers}}"])?;
        ensure!(out == "overlay2 2\n", "{out:?}");
        e.ok(&["volume", "create", "--label", "k=v", "fmtvol"])?;
        ensure!(e.ok(&["volume", "ls", "--format", "{{.Name}} {{.Labels}}"])? == "fmtvol k=v\n");
        let mp = e.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "fmtvol"])?;
        ensure!(mp.trim().ends_with("/volumes/fmtvol/_data"), "{mp}");
        let v = e.ok(&["version", "-f", "{{.Server.Version}} {{.Client.Version}}"])?;
        ensure!(
            v.split_whitespace().count() == 2 && v.starts_with(|c: char| c.is_ascii_digit()),
            "{v}"
        );
        e.fails_one_line(&["ps", "--format", "{{.ID"], 1, "invalid --format template")?;
        Ok(())
    })());
}

/// More of `docker run`'s flags, each seen from inside the container or from the host, and
/// their bad values refused in one line.
#[test]
fn engine_more_run_flags_as_docker() {
    let e = engine();
    check((|| {
        let run = |flags: &[&str], script: &str| -> Result<String> {
            let mut args = vec!["run", "--rm"];
            args.extend_from_slice(flags);
            args.extend_from_slice(&[BUSYBOX, "sh", "-c", script]);
            e.ok(&args)
        };
        ensure!(run(&["--ulimit", "nofile=1024:2048"], "ulimit -n; ulimit -Hn")? == "1024\n2048\n");
        let shm = run(&["--shm-size", "8m"], "grep ' /dev/shm ' /proc/mounts")?;
        ensure!(shm.contains("size=8192k"), "{shm}");
        let out = run(
            &[
                "--sysctl",
                "kernel.shmmax=12345",
                "--sysctl",
                "net.ipv4.ip_forward=1",
            ],
            "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward",
        )?;
        ensure!(out == "12345\n1\n", "{out:?}");
        let groups = run(
            &["--group-add", "1234", "-u", "1000"],
            "grep Groups /proc/self/status",
        )?;
        ensure!(groups.split_whitespace().any(|g| g == "1234"), "{groups}");
        ensure!(run(&[], "echo $$")? == "1\n");
        ensure!(run(&["--pid", "host"], "echo $$")? != "1\n");
        let host_ipc = fs::read_link("/proc/self/ns/ipc")?;
        let ipc = run(&["--ipc", "host"], "readlink /proc/self/ns/ipc")?;
        ensure!(
            ipc.trim() == host_ipc.to_string_lossy(),
            "{ipc} vs {host_ipc:?}"
        );
        let host_name = fs::read_to_string("/proc/sys/kernel/hostname")?;
        ensure!(run(&["--uts", "host"], "hostname")? == host_name);
        ensure!(run(&[], "grep NoNewPrivs /proc/self/status")?
            .trim()
            .ends_with('0'));
        let nnp = run(
            &["--security-opt", "no-new-privileges"],
            "grep NoNewPrivs /proc/self/status",
        )?;
        ensure!(nnp.trim().ends_with('1'), "{nnp}");
        ensure!(run(&[], "grep Seccomp: /proc/self/status")?
            .trim()
            .ends_with('2'));
        let unconfined = run(
            &["--security-opt", "seccomp=unconfined"],
            "grep Seccomp: /proc/self/status",
        )?;
        ensure!(unconfined.trim().ends_with('0'), "{unconfined}");
        // A profile of Docker's format, from a file: mkdir is refused.
        let profile = e.scratch("seccomp")?.join("deny-mkdir.json");
        fs::write(
            &profile,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
               "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","comment":"no dirs"}]}"#,
        )?;
        let opt = format!("seccomp={}", profile.display());
        let out = run(
            &["--security-opt", &opt],
            "mkdir /x 2>/dev/null && echo made || echo refused",
        )?;
        ensure!(out == "refused\n", "{out:?}");
        // --device: the host's node, made where asked, and usable.
        let out = run(
            &[
                "--device",
                "/dev/null:/dev/mynull:rw",
                "--device",
                "/dev/zero:/dev/z:r",
            ],
            "busybox stat -c '%F %t:%T %a' /dev/mynull /dev/z; echo x > /dev/mynull && \
             echo written; head -c 3 /dev/z | busybox wc -c",
        )?;
        ensure!(
            out == "character special file 1:3 666\ncharacter special file 1:5 666\nwritten\n3\n",
            "{out:?}"
        );
        // Cgroup limits, read on the host in the container's cgroup.
        let id = e
            .ok(&[
                "run",
                "-d",
                "-m",
                "64m",
                "--memory-swap",
                "128m",
                "--cpu-shares",
                "512",
                "--oom-kill-disable",
                "--stop-signal",
                "USR1",
                "--stop-timeout",
                "7",
                BUSYBOX,
                "sh",
                "-c",
                "trap 'exit 10' USR1; while true; do sleep 0.1; done",
            ])?
            .trim()
            .to_string();
        let cg =
            |h: &str, f: &str| fs::read_to_string(format!("/sys/fs/cgroup/{h}/strata/{id}/{f}"));
        if std::path::Path::new("/sys/fs/cgroup/cpu").is_dir() {
            let shares = cg("cpu", "cpu.shares")?;
            ensure!(shares.trim() == "512", "{shares}");
            let oom = cg("memory", "memory.oom_control")?;
            ensure!(oom.contains("oom_kill_disable 1"), "{oom}");
        } else {
            // cgroup v2: shares become a weight (1 + (512 - 2) * 9999 / 262142 = 20).
            let weight = cg("", "cpu.weight")?;
            ensure!(weight.trim() == "20", "{weight}");
        }
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", &id])?)?;
        let h = &doc[0]["HostConfig"];
        ensure!(
            h["MemorySwap"] == 134_217_728i64
                && h["CpuShares"] == 512
                && h["OomKillDisable"] == true,
            "{h}"
        );
        ensure!(doc[0]["Config"]["StopSignal"] == "USR1" && doc[0]["Config"]["StopTimeout"] == 7);
        // `stop` sends the container's stop signal, which it traps.
        e.ok(&["stop", &id])?;
        ensure!(e.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id])? == "10\n");
        e.ok(&["rm", &id])?;
        // One that ignores its stop signal is killed after its own --stop-timeout.
        let id = e
            .ok(&[
                "run",
                "-d",
                "--stop-timeout",
                "1",
                BUSYBOX,
                "sh",
                "-c",
                "while true; do sleep 0.1; done",
            ])?
            .trim()
            .to_string();
        e.ok(&["stop", &id])?;
        ensure!(e.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id])? == "137\n");
        ensure!(
            e.log_tail().contains("did not stop after 1s"),
            "{}",
            e.log_tail()
        );
        e.ok(&["rm", &id])?;
        // --cidfile: the id written; a file that is there already refused before anything.
        let cidfile = e.scratch("cid")?.join("cid");
        let cid = cidfile.to_string_lossy().to_string();
        e.ok(&["run", "--rm", "--cidfile", &cid, BUSYBOX, "true"])?;
        ensure!(fs::read_to_string(&cidfile)?.len() == 64);
        e.fails_one_line(
            &["run", "--rm", "--cidfile", &cid, BUSYBOX, "true"],
            125,
            "container ID file found",
        )?;
        let bad: &[(&[&str], &str)] = &[
            (&["--ulimit", "nofile=10:5"], "soft limit is above"),
            (&["--ulimit", "bogus=1"], "bogus"),
            (&["--sysctl", "kernel.hostname=x"], "kernel.hostname"),
            (
                &["--sysctl", "net.ipv4.ip_forward=1", "--network", "host"],
                "net.ipv4.ip_forward",
            ),
            (&["--pid", "container:x"], "--pid"),
            (&["--uts", "host", "--hostname", "h"], "--hostname"),
            (&["--security-opt", "apparmor=p"], "AppArmor"),
            (
                &["--security-opt", "seccomp=/no/such.json"],
                "/no/such.json",
            ),
            (&["--memory-swap", "1g"], "-m"),
            (&["-m", "64m", "--memory-swap", "32m"], "not below"),
            (&["--stop-signal", "SIGNOPE"], "SIGNOPE"),
            (&["--device", "/dev/nosuchdevice"], "/dev/nosuchdevice"),
            (&["--device", "/etc/hostname"], "not a device"),
            (&["--device", "/dev/null:/dev/x:q"], "permissions"),
        ];
        for (flags, want) in bad {
            let mut args = vec!["run", "--rm"];
            args.extend_from_slice(flags);
            args.extend_from_slice(&[BUSYBOX, "true"]);
            e.fails_one_line(&args, 125, want)?;
        }
        ensure!(
            e.ok(&["ps", "-aq"])?.trim().is_empty(),
            "a refused run left a container"
        );
        Ok(())
    })());
}
