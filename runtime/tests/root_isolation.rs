//! Root tests of isolation: pid 1, hostname, network, masked and read-only paths,
//! capabilities, no_new_privs, rlimits, user and groups, user namespaces.

mod common;
#[path = "common/uml.rs"]
mod uml;

use common::{obj, Bundle};

#[test]
fn root_pid1_hostname_and_loopback_only() {
    let b = Bundle::new(
        "iso",
        "echo pid=$$; hostname; ls /sys/class/net; cat /proc/self/mountinfo | wc -l",
    );
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "h-iso");
    assert_eq!(lines[2], "lo", "only lo in a new net namespace: {out}");
    assert_eq!(lines.len(), 4, "{out}");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let ours: usize = lines[3].trim().parse().unwrap();
    assert_ne!(ours, host_mounts, "own mount table");
}

#[test]
fn root_masked_and_readonly_paths() {
    let mut b = Bundle::new("paths", "cat /etc/secret; echo; ls /secretdir; echo x > /data/f && echo WROTE; echo 1 > /proc/sys/kernel/shm_rmid_forced && echo SYSWROTE; true");
    std::fs::write(b.rootfs().join("etc/secret"), "TOPSECRET").unwrap();
    std::fs::create_dir_all(b.rootfs().join("secretdir")).unwrap();
    std::fs::write(b.rootfs().join("secretdir/inner"), "x").unwrap();
    std::fs::create_dir_all(b.rootfs().join("data")).unwrap();
    b.edit(|v| {
        let l = obj(v, &["linux"]);
        l["maskedPaths"].as_array_mut().unwrap().extend([
            serde_json::json!("/etc/secret"),
            serde_json::json!("/secretdir"),
        ]);
        l["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("/data"));
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("TOPSECRET"), "masked file readable: {out}");
    assert!(!out.contains("inner"), "masked dir listed: {out}");
    assert!(!out.contains("WROTE"), "read-only path writable: {out}");
    assert!(!out.contains("SYSWROTE"), "/proc/sys writable: {out}");
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn root_default_capabilities_and_no_new_privs() {
    let mut b = Bundle::new(
        "caps",
        "grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status",
    );
    b.edit(|v| v["process"]["noNewPrivileges"] = serde_json::json!(true));
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let field = |name: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let eff = field("CapEff:");
    assert_eq!(
        eff & (1 << 21),
        0,
        "CAP_SYS_ADMIN must not be granted by default"
    );
    assert_ne!(eff & (1 << 0), 0, "CAP_CHOWN is in Docker's set");
    assert_eq!(field("CapBnd:"), eff);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn root_rlimits_user_and_groups() {
    let mut b = Bundle::new(
        "user",
        "ulimit -n; id -u; id -g; id -G; touch /tmp/f; stat -c %u:%g /tmp/f; umask",
    );
    b.edit(|v| {
        v["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
        v["process"]["user"] =
            serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 23});
    });
    std::fs::set_permissions(
        b.rootfs().join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "123");
    assert_eq!(lines[1], "1000");
    assert_eq!(lines[2], "1001");
    let groups: Vec<&str> = lines[3].split_whitespace().collect();
    assert!(groups.contains(&"10") && groups.contains(&"20"), "{out}");
    assert_eq!(lines[4], "1000:1001");
    assert_eq!(lines[5], "0027");
}

#[test]
fn root_user_namespace_with_mappings() {
    let mut b = Bundle::new("userns", "id -u; cat /proc/self/uid_map");
    b.edit(|v| {
        let l = obj(v, &["linux"]);
        l["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        l["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        l["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        // cgroup v1 hierarchies cannot be mounted from a user namespace.
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "cgroup");
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, vec!["0", "200000", "65536"]);
    // exec joins the user namespace first, then the others. (The image's /tmp belongs to
    // the host's root, which is unmapped: open it up so the container's root can write.)
    std::fs::set_permissions(
        b.rootfs().join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    b.edit(|v| v["process"]["args"] = serde_json::json!(["sleep", "30"]));
    let bundle = b.path().to_string_lossy().into_owned();
    assert!(b
        .cli(&["run", "-d", "--bundle", &bundle, &b.id])
        .status
        .success());
    let out = b.cli(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; touch /tmp/by-exec",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("0\n") && text.contains("200000"), "{text}");
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(b.rootfs().join("tmp/by-exec")).unwrap(),
    );
    assert_eq!(
        owner, 200000,
        "root in the container is uid 200000 on the host"
    );
    assert!(b.cli(&["delete", "-f", &b.id]).status.success());
}

#[test]
fn root_seccomp_profile_is_enforced() {
    let mut b = Bundle::new("seccomp", "mkdir /tmp/blocked || echo DENIED; uname -s");
    b.edit(|v| {
        obj(v, &["linux"])["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("DENIED"),
        "mkdir must be refused by the filter: {out} {err}"
    );
    assert!(out.contains("Linux"), "other syscalls are allowed: {out}");
    assert!(!b.rootfs().join("tmp/blocked").exists());
}

#[test]
fn root_sysctl_and_readonly_root() {
    let mut b = Bundle::new("sysctl", "cat /proc/sys/net/ipv4/ip_forward; touch /newfile || echo ROFS; touch /tmp/x && echo TMPOK");
    b.edit(|v| {
        obj(v, &["linux"])["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        v["root"]["readonly"] = serde_json::json!(true);
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "1",
        "sysctl applied in the container's net namespace: {out}"
    );
    assert!(out.contains("ROFS"), "read-only root: {out}");
    assert!(
        out.contains("TMPOK"),
        "a tmpfs on a read-only root stays writable: {out}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim()
            .len(),
        1
    );
}

#[test]
fn root_join_namespaces_by_path() {
    let a = Bundle::new("nsa", "sleep 30");
    let mut c =
        strata_runtime::Container::create(&a.root(), &a.id, a.path(), &Default::default()).unwrap();
    c.start().unwrap();
    let pid = c.pid();
    let mut b = Bundle::new("nsb", "hostname; readlink /proc/self/ns/net");
    b.edit(|v| {
        v.as_object_mut().unwrap().remove("hostname");
        for ns in v["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "uts" || ns["type"] == "network" {
                let name = if ns["type"] == "uts" { "uts" } else { "net" };
                ns["path"] = serde_json::json!(format!("/proc/{pid}/ns/{name}"));
            }
        }
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "h-nsa",
        "joined the first container's uts namespace: {out}"
    );
    let a_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        lines[1],
        a_net.to_string_lossy(),
        "joined the first container's net namespace"
    );
    c.delete(true).unwrap();
}

/// The same tests on a pure cgroup v2 kernel (UML), re-run inside.
#[test]
fn root_uml_isolation_on_cgroup_v2() {
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
            "root_uml_isolation_on_cgroup_v2",
            "root_",
        ],
        std::time::Duration::from_secs(600),
    );
    assert!(
        code == 0 && out.contains("test result: ok"),
        "inside UML (exit {code}):\n{out}\n{err}"
    );
    assert!(out.contains("8 passed"), "all eight tests must run: {out}");
}
