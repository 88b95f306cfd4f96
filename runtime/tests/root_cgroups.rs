//! Root tests of the cgroup limits, observed from outside (cgroup files) and inside.
//! On this host they drive cgroup v1 (hybrid mode); inside UML (pure v2) the same tests run
//! against cgroup v2.

mod common;
#[path = "common/uml.rs"]
mod uml;

use std::time::{Duration, Instant};

use common::{obj, Bundle};
use strata_runtime::{Container, CreateOptions, Status};

/// The CPU measurements and the UML run (which keeps a CPU busy) must not overlap.
static CPU_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    CPU_SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn started(b: &Bundle) -> Container {
    let mut c =
        Container::create(&b.root(), &b.id, b.path(), &CreateOptions::default()).expect("create");
    c.start().expect("start");
    c
}

#[test]
fn root_memory_limit_oom_kill_is_reported() {
    let mut b = Bundle::new("oom", "tail /dev/zero");
    b.edit(|v| {
        obj(v, &["linux", "resources", "memory"])["limit"] = serde_json::json!(32 << 20);
        obj(v, &["linux", "resources", "memory"])["swap"] = serde_json::json!(32 << 20);
    });
    let mut c = started(&b);
    let st = c.wait().unwrap();
    assert_eq!(st.code, 137, "{st:?}");
    assert!(st.oom_killed, "the OOM kill must be reported: {st:?}");
    c.delete(false).unwrap();
    b.assert_nothing_left();
}

#[test]
fn root_oom_kill_is_notified_while_it_happens() {
    let mut b = Bundle::new("oomwatch", "sleep 0.3; tail /dev/zero");
    b.edit(|v| {
        obj(v, &["linux", "resources", "memory"])["limit"] = serde_json::json!(32 << 20);
        obj(v, &["linux", "resources", "memory"])["swap"] = serde_json::json!(32 << 20);
    });
    let mut c = Container::create(&b.root(), &b.id, b.path(), &CreateOptions::default()).unwrap();
    let mut watcher = c.cgroup().unwrap().watch_oom().unwrap();
    let waiter = std::thread::spawn(move || watcher.wait());
    c.start().unwrap();
    let got = waiter.join().unwrap().unwrap();
    assert!(
        got.is_some_and(|n| n >= 1),
        "OOM kill not notified: {got:?}"
    );
    let st = c.wait().unwrap();
    assert!(st.oom_killed);
    c.delete(false).unwrap();
    b.assert_nothing_left();
}

#[test]
fn root_pids_limit_stops_a_fork_bomb() {
    let mut b = Bundle::new(
        "pids",
        "i=0; while [ $i -lt 50 ]; do (sleep 30 &) 2>/dev/null; i=$((i+1)); done; sleep 30",
    );
    b.edit(|v| obj(v, &["linux", "resources", "pids"])["limit"] = serde_json::json!(10));
    let c = started(&b);
    std::thread::sleep(Duration::from_millis(800));
    let pids = c.pids().unwrap();
    assert!(
        pids.len() <= 10,
        "{} processes over a limit of 10",
        pids.len()
    );
    assert!(
        pids.len() >= 5,
        "the bomb should have filled the limit: {}",
        pids.len()
    );
    let dir = b.cgroup_dir("pids");
    let events = std::fs::read_to_string(dir.join("pids.events")).unwrap();
    let max: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(max > 0, "forks must have been refused: {events}");
    c.delete(true).unwrap();
    b.assert_nothing_left();
}

#[test]
fn root_cpu_quota_holds_a_busy_loop_near_half_a_cpu() {
    let _serial = serial();
    let mut b = Bundle::new("cpu", "while :; do :; done");
    b.edit(|v| {
        let cpu = obj(v, &["linux", "resources", "cpu"]);
        cpu["quota"] = serde_json::json!(50_000);
        cpu["period"] = serde_json::json!(100_000);
    });
    let c = started(&b);
    let cg = c.cgroup().unwrap().clone();
    std::thread::sleep(Duration::from_millis(300));
    let (u0, t0) = (cg.cpu_usage_ns().unwrap(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (u1, t1) = (cg.cpu_usage_ns().unwrap(), Instant::now());
    let share = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    assert!(
        (0.25..=0.75).contains(&share),
        "busy loop got {share:.2} of a CPU under a 0.5 quota"
    );
    c.delete(true).unwrap();
    b.assert_nothing_left();
}

#[test]
fn root_cpuset_pins_the_container() {
    let mut b = Bundle::new("cpuset", "grep Cpus_allowed_list /proc/self/status");
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let last = cpus.trim().rsplit(['-', ',']).next().unwrap().to_string();
    b.edit(|v| obj(v, &["linux", "resources", "cpu"])["cpus"] = serde_json::json!(last.clone()));
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.split_whitespace().nth(1), Some(last.as_str()), "{out}");
}

#[test]
fn root_device_rule_denies_a_block_device() {
    let mut b = Bundle::new(
        "devices",
        "head -c 1 /dev/testblk > /dev/null && echo READ; echo ok > /dev/null && echo NULL",
    );
    b.edit(|v| {
        // A loop device node made in the container, denied by the device rules (deny all,
        // then the defaults are allowed).
        obj(v, &["linux"])["devices"] = serde_json::json!([{"path": "/dev/testblk", "type": "b", "major": 7, "minor": 0, "fileMode": 0o660}]);
        obj(v, &["linux", "resources"])["devices"] = serde_json::json!([{"allow": false, "access": "rwm"}]);
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("READ"),
        "the block device must be denied: {out}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(out.contains("NULL"), "/dev/null stays allowed: {out}");
}

#[test]
fn root_update_changes_limits_of_a_running_container() {
    let mut b = Bundle::new("update", "sleep 30");
    b.edit(|v| obj(v, &["linux", "resources", "pids"])["limit"] = serde_json::json!(10));
    let c = started(&b);
    let out = b.cli(&[
        "update",
        "--pids-limit",
        "20",
        "--memory",
        "67108864",
        &b.id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |ctrl: &str, v1: &str, v2: &str| {
        let dir = b.cgroup_dir(ctrl);
        std::fs::read_to_string(dir.join(v1))
            .or_else(|_| std::fs::read_to_string(dir.join(v2)))
            .unwrap()
    };
    assert_eq!(read("pids", "pids.max", "pids.max").trim(), "20");
    assert_eq!(
        read("memory", "memory.limit_in_bytes", "memory.max").trim(),
        "67108864"
    );
    let rules = b.path().join("r.json");
    std::fs::write(&rules, r#"{"devices":[{"allow":true,"access":"rwm"}]}"#).unwrap();
    let out = b.cli(&["update", "--resources", &rules.to_string_lossy(), &b.id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("device rules cannot be updated"));
    c.delete(true).unwrap();
    b.assert_nothing_left();
}

#[test]
fn root_pause_freezes_and_resume_thaws() {
    let _serial = serial();
    let b = Bundle::new("pause", "while :; do :; done");
    let mut c = started(&b);
    let cg = c.cgroup().unwrap().clone();
    c.pause().unwrap();
    assert_eq!(c.status(), Status::Paused);
    let u0 = cg.cpu_usage_ns().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let u1 = cg.cpu_usage_ns().unwrap();
    assert!(
        u1 - u0 < 10_000_000,
        "a frozen container used {} ms of CPU",
        (u1 - u0) / 1_000_000
    );
    // The CLI sees it too.
    let state: serde_json::Value =
        serde_json::from_slice(&b.cli(&["state", &b.id]).stdout).unwrap();
    assert_eq!(state["status"], "paused");
    assert!(b.cli(&["resume", &b.id]).status.success());
    assert_eq!(c.status(), Status::Running);
    std::thread::sleep(Duration::from_millis(300));
    let u2 = cg.cpu_usage_ns().unwrap();
    assert!(u2 - u1 > 50_000_000, "a thawed busy loop must run again");
    c.delete(true).unwrap();
    b.assert_nothing_left();
}

/// The same limits on a pure cgroup v2 kernel: this binary's tests re-run inside UML (which
/// has the cpu, io, memory and pids controllers but no cpuset, so the cpuset test is left out
/// there; the device rules run as an eBPF program).
#[test]
fn root_uml_cgroup_v2_suite() {
    if uml::inside() {
        // This test is the one that boots UML and runs the others inside it; inside, it has
        // nothing to run (the inner run also --skips it), so it never boots UML recursively.
        return;
    }
    common::require_root();
    let _serial = serial();
    let (code, out, err) = uml::run_inside(
        &[
            "--test-threads=1",
            "--skip",
            "root_uml_cgroup_v2_suite",
            "--skip",
            "root_cpuset",
            "root_",
        ],
        Duration::from_secs(600),
    );
    assert!(
        code == 0 && out.contains("test result: ok"),
        "inside UML (exit {code}):\n{out}\n{err}"
    );
    assert!(
        out.contains("7 passed"),
        "all seven v2 tests must run: {out}"
    );
}
