//! Root tests of the lifecycle: exit codes, signals, state, exec, hooks, the library API.
//! Run with `cargo test -p strata-runtime --test root_lifecycle` (as root).

mod common;
#[path = "common/uml.rs"]
mod uml;

use std::time::Duration;

use common::Bundle;
use nix::sys::signal::Signal;
use strata_runtime::{Container, CreateOptions, Status};

#[test]
fn root_exit_code_is_passed_through() {
    let b = Bundle::new("exit3", "exit 3");
    let (code, _, err) = b.run();
    assert_eq!(code, 3, "stderr: {err}");
    b.assert_nothing_left();
}

#[test]
fn root_sigkill_is_reported_as_137() {
    let b = Bundle::new("sigkill", "sleep 100");
    let mut c = Container::create(&b.root(), &b.id, b.path(), &CreateOptions::default()).unwrap();
    assert_eq!(c.status(), Status::Created);
    c.start().unwrap();
    assert_eq!(c.status(), Status::Running);
    assert_eq!(c.try_wait().unwrap(), None, "still running");
    c.kill(Signal::SIGKILL, false).unwrap();
    let st = c.wait().unwrap();
    assert_eq!(st.code, 137);
    assert_eq!(st.signal, Some(9));
    assert!(!st.oom_killed);
    assert_eq!(c.status(), Status::Stopped);
    c.delete(false).unwrap();
    b.assert_nothing_left();
}

#[test]
fn root_library_stdio_and_exec() {
    use std::os::fd::AsRawFd;
    let b = Bundle::new(
        "stdio",
        "echo to-out; echo to-err >&2; read line; echo got=$line; sleep 30",
    );
    let input = b.path().join("in");
    std::fs::write(&input, "hello\n").unwrap();
    let (i, o, e) = (
        std::fs::File::open(&input).unwrap(),
        std::fs::File::create(b.path().join("out")).unwrap(),
        std::fs::File::create(b.path().join("err")).unwrap(),
    );
    let opts = CreateOptions {
        stdio: Some([i.as_raw_fd(), o.as_raw_fd(), e.as_raw_fd()]),
        ..Default::default()
    };
    let mut c = Container::create(&b.root(), &b.id, b.path(), &opts).unwrap();
    c.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(b.path().join("out"))
        .unwrap()
        .contains("got=")
    {
        assert!(std::time::Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(b.path().join("out")).unwrap(),
        "to-out\ngot=hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.path().join("err")).unwrap(),
        "to-err\n"
    );
    // exec through the library, with its own stdout, waited for as a child.
    let out2 = std::fs::File::create(b.path().join("exec-out")).unwrap();
    let mut p = b.spec.process().clone().unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "echo exec; exit 4".into(),
    ]));
    let eopts = strata_runtime::ExecOptions {
        stdio: Some([i.as_raw_fd(), out2.as_raw_fd(), out2.as_raw_fd()]),
        ..Default::default()
    };
    let pid = c.exec(&p, &eopts).unwrap();
    assert_eq!(strata_runtime::wait_pid(pid).unwrap().code, 4);
    assert_eq!(
        std::fs::read_to_string(b.path().join("exec-out")).unwrap(),
        "exec\n"
    );
    c.kill(Signal::SIGKILL, true).unwrap();
    assert_eq!(c.wait().unwrap().code, 137);
    c.delete(false).unwrap();
    b.assert_nothing_left();
}

#[test]
fn root_cli_create_start_state_kill_by_name_delete() {
    let b = Bundle::new("cli", "trap 'exit 42' TERM; while :; do sleep 0.05; done");
    let bundle = b.path().to_string_lossy().into_owned();
    let pidfile = b.path().join("pid");
    let out = b.cli(&[
        "create",
        "--bundle",
        &bundle,
        "--pid-file",
        &pidfile.to_string_lossy(),
        &b.id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&b.cli(&["state", &b.id]).stdout).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    assert_eq!(state["id"], b.id.as_str());
    assert!(b.cli(&["start", &b.id]).status.success());
    let state: serde_json::Value =
        serde_json::from_slice(&b.cli(&["state", &b.id]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    // Deleting a running container needs --force.
    let out = b.cli(&["delete", &b.id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    assert!(b.cli(&["kill", &b.id, "TERM"]).status.success());
    let mut stopped = false;
    for _ in 0..200 {
        let state: serde_json::Value =
            serde_json::from_slice(&b.cli(&["state", &b.id]).stdout).unwrap();
        if state["status"] == "stopped" {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(stopped, "SIGTERM by name did not stop the container");
    // The container process is this test's grandchild's sibling: reap nothing, just delete.
    assert!(b.cli(&["delete", &b.id]).status.success());
    let out = b.cli(&["state", &b.id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    b.assert_nothing_left();
}

#[test]
fn root_exec_joins_the_container() {
    let b = Bundle::new("exec", "sleep 100");
    let bundle = b.path().to_string_lossy().into_owned();
    assert!(b
        .cli(&["run", "--detach", "--bundle", &bundle, &b.id])
        .status
        .success());
    let out = b.cli(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("h-exec"), "{text}");
    assert!(text.contains("sleep 100"), "{text}");
    let ps = b.cli(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(pids.len(), 1);
    // exec --process with a JSON process, detached, with a pid file.
    let proc_file = b.path().join("p.json");
    std::fs::write(
        &proc_file,
        r#"{"args":["sleep","50"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
    )
    .unwrap();
    let pidf = b.path().join("exec.pid");
    let out = b.cli(&[
        "exec",
        "--process",
        &proc_file.to_string_lossy(),
        "--detach",
        "--pid-file",
        &pidf.to_string_lossy(),
        &b.id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let epid: i32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ps = b.cli(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(pids.contains(&epid), "{pids:?} lacks {epid}");
    let list = String::from_utf8_lossy(&b.cli(&["list"]).stdout).into_owned();
    assert!(list.contains(&b.id) && list.contains("running"), "{list}");
    assert!(b.cli(&["delete", "--force", &b.id]).status.success());
    b.assert_nothing_left();
}

#[test]
fn root_run_forwards_signals() {
    let b = Bundle::new(
        "fwd",
        "trap 'exit 42' TERM; echo ready > /tmp/ready; while :; do sleep 0.05; done",
    );
    let bundle = b.path().to_string_lossy().into_owned();
    let mut child = std::process::Command::new(common::bin())
        .arg("--root")
        .arg(b.root())
        .args(["run", "--bundle", &bundle, &b.id])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = b.rootfs().join("tmp/ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "container did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(42),
        "SIGTERM reached the container, whose exit code is run's"
    );
    b.assert_nothing_left();
}

#[test]
fn root_kill_all_ps_list_features_and_force_delete_of_paused() {
    let b = Bundle::new("killall", "sleep 100 & sleep 100 & sleep 100 & wait");
    let bundle = b.path().to_string_lossy().into_owned();
    assert!(b
        .cli(&["run", "-d", "--bundle", &bundle, &b.id])
        .status
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let pids: Vec<i32> =
            serde_json::from_slice(&b.cli(&["ps", "-f", "json", &b.id]).stdout).unwrap();
        if pids.len() == 4 || std::time::Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 4, "sh and three sleeps: {pids:?}");
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&b.cli(&["list", "-f", "json"]).stdout).unwrap();
    assert!(
        list.iter()
            .any(|c| c["id"] == b.id.as_str() && c["status"] == "running"),
        "{list:?}"
    );
    let features: serde_json::Value = serde_json::from_slice(&b.cli(&["features"]).stdout).unwrap();
    assert!(features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "user"));
    assert!(features["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    // Pause, then delete --force: the frozen processes must still die.
    assert!(b.cli(&["pause", &b.id]).status.success());
    assert!(b.cli(&["kill", "--all", &b.id, "KILL"]).status.success());
    assert!(b.cli(&["delete", "--force", &b.id]).status.success());
    for p in pids {
        assert!(
            strata_runtime::state::process_start_time(p).is_none(),
            "process {p} survived"
        );
    }
    b.assert_nothing_left();
}

#[test]
fn root_errors_are_logged_for_containerd() {
    let b = Bundle::new("logs", "true");
    let log = b.path().join("log.json");
    let out = b.cli(&[
        "--log",
        &log.to_string_lossy(),
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "strata-runtime: container no-such-container does not exist"
    );
    let line = std::fs::read_to_string(&log).unwrap();
    let entry: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(entry["level"], "error");
    assert_eq!(entry["msg"], "container no-such-container does not exist");
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    // Deleting a missing container with --force is not an error (runc's behaviour).
    assert!(b
        .cli(&["delete", "--force", "no-such-container"])
        .status
        .success());
}

#[test]
fn root_hooks_get_the_state() {
    let mut b = Bundle::new("hooks", "true");
    let out = b.path().join("hook-out");
    let o = out.to_string_lossy().into_owned();
    b.edit(|v| {
        v["hooks"] = serde_json::json!({
            "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}.prestart")]}],
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}.createRuntime")]}],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}.poststart")]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}.poststop")], "timeout": 5}],
            // In the container's mount namespace before pivot_root (path in the runtime's
            // namespace), and after it (path inside the container).
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}.createContainer")]}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/startContainer"]}],
        });
    });
    let (code, _, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let inside = b
        .rootfs()
        .join("tmp/startContainer")
        .to_string_lossy()
        .into_owned();
    for (kind, file) in [
        ("prestart", format!("{o}.prestart")),
        ("createRuntime", format!("{o}.createRuntime")),
        ("createContainer", format!("{o}.createContainer")),
        ("startContainer", inside),
        ("poststart", format!("{o}.poststart")),
        ("poststop", format!("{o}.poststop")),
    ] {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{kind} hook did not run: {e}"));
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(state["id"], b.id.as_str(), "{kind}");
    }
}

#[test]
fn root_no_pivot_uses_move_and_chroot() {
    let b = Bundle::new(
        "nopivot",
        "test -e /bin/busybox && ! test -e /work && echo INSIDE",
    );
    let bundle = b.path().to_string_lossy().into_owned();
    let out = b.cli(&["run", "--no-pivot", "--bundle", &bundle, &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("INSIDE"));
    b.assert_nothing_left();
}

#[test]
fn root_failing_prestart_hook_fails_create_and_cleans_up() {
    let mut b = Bundle::new("badhook", "true");
    b.edit(|v| v["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/false"}]}));
    let (code, _, err) = b.run();
    assert_eq!(code, 1);
    assert!(err.contains("prestart hook"), "{err}");
    b.assert_nothing_left();
}

/// The lifecycle on a pure cgroup v2 kernel (UML): the same tests, re-run inside.
#[test]
fn root_uml_lifecycle_on_cgroup_v2() {
    if uml::inside() {
        // This test is the one that boots UML and runs the others inside it; inside, it has
        // nothing to run (the inner run also --skips it), so it never boots UML recursively.
        return;
    }
    common::require_root();
    let (code, out, err) = uml::run_inside(
        &[
            "--test-threads=1",
            "--skip",
            "root_uml_lifecycle_on_cgroup_v2",
            "root_",
        ],
        Duration::from_secs(600),
    );
    assert!(
        code == 0 && out.contains("test result: ok"),
        "inside UML (exit {code}):\n{out}\n{err}"
    );
    assert!(
        out.contains("13 passed"),
        "all thirteen tests must run: {out}"
    );
}

#[test]
fn root_init_annotation_makes_an_init_pid_1() {
    let mut b = Bundle::new(
        "init",
        "cat /proc/1/comm; tr '\\0' ' ' </proc/1/cmdline; echo; echo $$; exit 5",
    );
    b.edit(|v| v["annotations"] = serde_json::json!({ "org.strata.init": "true" }));
    let (code, out, err) = b.run();
    assert_eq!(code, 5, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "strata-init", "{out}");
    assert!(lines[1].starts_with("strata-init -- sh -c "), "{out}");
    // The process itself is pid 2, the init's child.
    assert_eq!(lines[2], "2", "{out}");
    b.assert_nothing_left();
}

#[test]
fn root_init_forwards_signals() {
    let mut b = Bundle::new("initsig", "sleep 100");
    b.edit(|v| v["annotations"] = serde_json::json!({ "org.strata.init": "true" }));
    let mut c = Container::create(&b.root(), &b.id, b.path(), &CreateOptions::default()).unwrap();
    c.start().unwrap();
    // sleep as pid 1 would not get SIGTERM; as the init's child, it dies of it.
    c.kill(Signal::SIGTERM, false).unwrap();
    let st = c.wait().unwrap();
    assert_eq!(st.code, 128 + 15);
    c.delete(false).unwrap();
    b.assert_nothing_left();
}
