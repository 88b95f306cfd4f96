//! Re-running a test binary inside User-Mode Linux, whose kernel has a pure cgroup v2
//! hierarchy (the host is hybrid v1). Outside UML, [`run_inside`] boots `linux.uml` with the
//! host's filesystem as root and an init script that mounts cgroup2 and runs this test binary
//! with a filter; the inner run's exit code and output come back through files. It never
//! skips: if UML cannot boot, the calling test fails.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Set inside UML.
pub const IN_UML: &str = "STRATA_RUNTIME_IN_UML";

/// Whether this process runs inside UML.
pub fn inside() -> bool {
    std::env::var_os(IN_UML).is_some()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs this test binary with `args` inside UML; returns (exit code, stdout, stderr+console).
pub fn run_inside(args: &[&str], timeout: Duration) -> (i32, String, String) {
    assert!(
        std::path::Path::new("/usr/bin/linux.uml").exists(),
        "linux.uml missing: apt-get install user-mode-linux"
    );
    let dir = tempfile::Builder::new()
        .prefix("strata-rt-uml-")
        .tempdir()
        .unwrap();
    let out = dir.path().display().to_string();
    let exe = std::env::current_exe().unwrap().display().to_string();
    let cwd = std::env::current_dir().unwrap().display().to_string();
    let argv: Vec<String> = std::iter::once(quote(&exe))
        .chain(args.iter().map(|a| quote(a)))
        .collect();
    let script = format!(
        "#!/bin/sh\n\
         mount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev\n\
         mkdir -p /dev/pts /dev/shm\nmount -t devpts devpts /dev/pts\nmount -t tmpfs tmpfs /run\n\
         mount -t tmpfs tmpfs /dev/shm\nmount -t cgroup2 none /sys/fs/cgroup\nmkdir -p /run/tmp\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/run/tmp {IN_UML}=1 RUST_BACKTRACE=1\n\
         cd {cwd}\n{cmd} >{out}/stdout 2>{out}/stderr </dev/null\necho $? >{out}/status\nsync\npoweroff -f\n",
        cwd = quote(&cwd),
        cmd = argv.join(" "),
    );
    let init = dir.path().join("init");
    std::fs::write(&init, script).unwrap();
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let console = std::fs::File::create(dir.path().join("console")).unwrap();
    let _ = Command::new("timeout")
        .args([
            "--kill-after=10",
            &timeout.as_secs().to_string(),
            "/usr/bin/linux.uml",
        ])
        .args([
            "mem=1G",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            "con=null",
            "con0=null,fd:2",
        ])
        .arg(format!("init={}", init.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(console)
        .status()
        .expect("start linux.uml");
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
    let code = read("status").trim().parse().unwrap_or(-1);
    (
        code,
        read("stdout"),
        format!("{}\n--- console\n{}", read("stderr"), read("console")),
    )
}
