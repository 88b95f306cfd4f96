//! Root tests of bad input: each gives a clear error and leaves nothing behind (no cgroup
//! directory, no state directory, no mount, no process).

mod common;
#[path = "common/uml.rs"]
mod uml;

use common::{obj, Bundle};

fn create(b: &Bundle) -> (bool, String) {
    let bundle = b.path().to_string_lossy().into_owned();
    let out = b.cli(&["create", "--bundle", &bundle, &b.id]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No process of the host runs with its root inside the bundle.
fn assert_no_process_in(b: &Bundle) {
    let rootfs = b.rootfs();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(root) = std::fs::read_link(e.path().join("root")) {
            assert_ne!(
                root,
                rootfs,
                "process {:?} still runs in the container",
                e.file_name()
            );
        }
    }
}

fn assert_clean_failure(b: &Bundle, expect: &str) {
    let (ok, err) = create(b);
    assert!(!ok, "create should fail");
    assert!(
        err.contains(expect),
        "error should mention {expect:?}: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    b.assert_nothing_left();
    assert_no_process_in(b);
}

#[test]
fn root_malformed_config() {
    let b = Bundle::new("badjson", "true");
    std::fs::write(b.path().join("config.json"), "{ \"ociVersion\": ").unwrap();
    assert_clean_failure(&b, "malformed spec");
}

#[test]
fn root_missing_rootfs() {
    let b = Bundle::new("norootfs", "true");
    std::fs::remove_dir_all(b.rootfs()).unwrap();
    assert_clean_failure(&b, "rootfs");
}

#[test]
fn root_unknown_namespace_type() {
    let mut b = Bundle::new("badns", "true");
    b.save();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.path().join("config.json")).unwrap()).unwrap();
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "bogus"}));
    std::fs::write(b.path().join("config.json"), v.to_string()).unwrap();
    assert_clean_failure(&b, "bogus");
    b.edit(|_| {});
}

#[test]
fn root_invalid_id() {
    let mut b = Bundle::new("badid", "true");
    b.id = "../escape".into();
    assert_clean_failure(&b, "invalid container id");
}

#[test]
fn root_duplicate_id_keeps_the_first() {
    let b = Bundle::new("dup", "sleep 30");
    let (ok, err) = create(&b);
    assert!(ok, "{err}");
    let (ok, err) = create(&b);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let state: serde_json::Value =
        serde_json::from_slice(&b.cli(&["state", &b.id]).stdout).unwrap();
    assert_eq!(
        state["status"], "created",
        "the first container is untouched"
    );
    assert!(b.cli(&["delete", &b.id]).status.success());
    b.assert_nothing_left();
}

#[test]
fn root_limit_the_host_cannot_honour() {
    let mut b = Bundle::new("badcpus", "true");
    b.edit(|v| obj(v, &["linux", "resources", "cpu"])["cpus"] = serde_json::json!("63"));
    assert_clean_failure(&b, "cpuset.cpus");
}

#[test]
fn root_missing_program_fails_at_create() {
    let b = Bundle::new("noprog", "true");
    let mut b = b;
    b.edit(|v| v["process"]["args"] = serde_json::json!(["/no/such/program"]));
    assert_clean_failure(&b, "executable file not found");
}

#[test]
fn root_failure_halfway_through_the_rootfs() {
    // The first mounts succeed, then a bind source is missing: the half-built container
    // (its process, cgroup, mounts and state) must all go.
    let mut b = Bundle::new("halfway", "true");
    b.edit(|v| {
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/data", "type": "bind", "source": "/no/such/source", "options": ["rbind"]}));
    });
    assert_clean_failure(&b, "/no/such/source");
}

#[test]
fn root_runtime_killed_during_create_is_cleaned_by_force_delete() {
    let mut b = Bundle::new("crash", "true");
    let marker = b.path().join("in-hook");
    let m = marker.to_string_lossy().into_owned();
    b.edit(|v| v["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {m}; sleep 2")]}]}));
    let bundle = b.path().to_string_lossy().into_owned();
    let mut child = std::process::Command::new(common::bin())
        .arg("--root")
        .arg(b.root())
        .args(["create", "--bundle", &bundle, &b.id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "hook never ran");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&b.cli(&["state", &b.id]).stdout).unwrap();
    assert_eq!(state["status"], "creating");
    let out = b.cli(&["delete", "--force", &b.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.assert_nothing_left();
    assert_no_process_in(&b);
}

#[test]
fn root_systemd_cgroup_is_refused() {
    let b = Bundle::new("systemd", "true");
    let out = b.cli(&["--systemd-cgroup", "state", &b.id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--systemd-cgroup is not supported"));
}

/// The same tests on a pure cgroup v2 kernel (UML), re-run inside.
#[test]
fn root_uml_bad_input_on_cgroup_v2() {
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
            "root_uml_bad_input_on_cgroup_v2",
            "root_",
        ],
        std::time::Duration::from_secs(600),
    );
    assert!(
        code == 0 && out.contains("test result: ok"),
        "inside UML (exit {code}):\n{out}\n{err}"
    );
    assert!(out.contains("10 passed"), "all ten tests must run: {out}");
}
