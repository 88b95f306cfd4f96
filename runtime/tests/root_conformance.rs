//! Root conformance test against the reference: the same Docker-like bundle run by runc and
//! by strata-runtime must give the container the same view (ids, hostname, capabilities,
//! no_new_privs, seccomp mode, rlimits, umask, /dev, the mount table, oom_score_adj, env).
//! Known, intended differences are normalised away and listed here:
//! - on hybrid hosts strata-runtime also mounts the unified (cgroup2) hierarchy read-only
//!   under /sys/fs/cgroup/unified, which runc 1.1 leaves out;
//! - strata-runtime makes the /sys/fs/cgroup tmpfs itself read-only when the mount asks for
//!   `ro`; runc leaves the tmpfs writable and only the hierarchies read-only.

mod common;

use std::process::{Command, Stdio};

use common::Bundle;

const SCRIPT: &str =
    "id; hostname; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; ulimit -a; umask; \
    ls -la /dev | sed -e 's/  */ /g' | cut -d' ' -f1,3,4,5,6,10-; \
    cut -d' ' -f5,6,9,11 /proc/self/mountinfo | sort; cat /proc/self/oom_score_adj; env | sort";

fn normalise(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("/sys/fs/cgroup/unified") && *l != "unified")
        .map(|l| {
            if l.starts_with("/sys/fs/cgroup ") {
                l.replacen(" rw,", " ro,", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn root_same_container_view_as_runc() {
    let mut b = Bundle::new("conf", SCRIPT);
    b.edit(|v| {
        v["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000}]);
        v["process"]["oomScoreAdj"] = serde_json::json!(100);
        v["process"]["noNewPrivileges"] = serde_json::json!(true);
        v["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let (code, ours, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let runc_root = b.path().join("runc-state");
    let out_file = b.path().join("runc.out");
    let status = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(format!("{}-runc", b.id))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .expect("runc must be installed (apt-get install runc)");
    assert!(status.success(), "runc run failed");
    let theirs = std::fs::read_to_string(&out_file).unwrap();
    let (ours, theirs) = (normalise(&ours), normalise(&theirs));
    if ours != theirs {
        let diff: Vec<String> = theirs
            .lines()
            .zip(ours.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("runc:   {a}\nstrata: {b}"))
            .collect();
        panic!(
            "the container view differs from runc's:\n{}\n--- runc\n{theirs}\n--- strata\n{ours}",
            diff.join("\n")
        );
    }
}
