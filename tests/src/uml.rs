//! Runs a command inside User-Mode Linux: a real Linux 6.1 kernel as a process, with the host's
//! filesystem as its root, device-mapper, XFS quota and a pure cgroup v2 hierarchy — what the
//! host kernel of our machines lacks (see shared/ENVIRONMENT.md).
//!
//! A test that needs such a kernel re-runs its own test binary inside UML:
//!
//! ```no_run
//! # fn body() -> anyhow::Result<()> { Ok(()) }
//! #[test]
//! fn needs_dm() {
//!     strata_tests::uml::in_uml("needs_dm", &strata_tests::uml::DM_MODULES, body);
//! }
//! ```
//!
//! Outside UML, [`in_uml`] boots the kernel and runs `<this test binary> --exact <name>` in it
//! with `STRATA_IN_UML=1`, then fails unless that inner run passed; inside, it runs the body.
//! If UML cannot boot, the test fails: it never skips.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// The kernel binary from Debian's `user-mode-linux` package.
pub const UML_KERNEL: &str = "/usr/bin/linux.uml";
/// Set inside UML by the init script.
pub const IN_UML_ENV: &str = "STRATA_IN_UML";

/// Modules for device-mapper thin pools, in load order, plus loop.
pub const DM_MODULES: [&str; 6] = [
    "drivers/md/dm-mod.ko",
    "drivers/md/dm-bufio.ko",
    "drivers/md/persistent-data/dm-persistent-data.ko",
    "drivers/md/dm-bio-prison.ko",
    "drivers/md/dm-thin-pool.ko",
    "drivers/block/loop.ko",
];
/// Loop devices and overlayfs.
pub const LOOP_OVERLAY_MODULES: [&str; 2] = ["drivers/block/loop.ko", "fs/overlayfs/overlay.ko"];

/// Whether this process runs inside UML (started by [`run`]).
pub fn inside() -> bool {
    std::env::var_os(IN_UML_ENV).is_some()
}

/// What a command run in UML did.
#[derive(Debug)]
pub struct UmlOutput {
    /// Its exit code.
    pub status: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// The kernel's console.
    pub console: String,
}

fn module_dir() -> Result<PathBuf> {
    let base = Path::new("/usr/lib/uml/modules");
    let version = fs::read_dir(base)
        .with_context(|| format!("read {} (apt-get install user-mode-linux)", base.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .with_context(|| format!("no module directory under {}", base.display()))?;
    Ok(version.join("kernel"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Boots UML with `modules` loaded and runs `argv` in `cwd` with `env`; waits at most `timeout`.
pub fn run(
    argv: &[String],
    env: &[(String, String)],
    modules: &[&str],
    timeout: Duration,
) -> Result<UmlOutput> {
    ensure!(
        Path::new(UML_KERNEL).is_file(),
        "{UML_KERNEL} is missing: apt-get install user-mode-linux kmod"
    );
    let modules_dir = module_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("strata-uml-")
        .tempdir()
        .context("make a UML scratch dir")?;
    let out = dir.path();
    let cwd = std::env::current_dir().context("current dir")?;
    let mut script = String::from("#!/bin/sh\n");
    script.push_str(
        "mount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev\n\
         mkdir -p /dev/pts /dev/shm\nmount -t devpts devpts /dev/pts\nmount -t tmpfs tmpfs /run\n\
         mount -t tmpfs tmpfs /dev/shm\nmount -t cgroup2 none /sys/fs/cgroup\nmkdir -p /run/tmp\n",
    );
    for m in modules {
        let path = modules_dir.join(m);
        script.push_str(&format!(
            "insmod {} >>{}/console 2>&1\n",
            quote(&path.to_string_lossy()),
            out.display()
        ));
    }
    script.push_str("export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/run/tmp DM_DISABLE_UDEV=1\n");
    script.push_str(&format!("export {IN_UML_ENV}=1\n"));
    for (k, v) in env {
        script.push_str(&format!("export {k}={}\n", quote(v)));
    }
    script.push_str(&format!("cd {}\n", quote(&cwd.to_string_lossy())));
    let cmd: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    script.push_str(&format!(
        "{} >{o}/stdout 2>{o}/stderr </dev/null\necho $? >{o}/status\nsync\npoweroff -f\n",
        cmd.join(" "),
        o = out.display()
    ));
    let init = out.join("init");
    fs::write(&init, script)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;

    let console = fs::File::create(out.join("kernel.log"))?;
    let status = Command::new("timeout")
        .arg("--kill-after=10")
        .arg(timeout.as_secs().to_string())
        .arg(UML_KERNEL)
        .args([
            "mem=2G",
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
        .context("start linux.uml")?;
    let read = |name: &str| fs::read_to_string(out.join(name)).unwrap_or_default();
    let console = format!("{}{}", read("console"), read("kernel.log"));
    let code = read("status");
    let Ok(code) = code.trim().parse::<i32>() else {
        let tail: Vec<&str> = console.lines().collect();
        bail!(
            "the command did not finish inside UML (linux.uml exited {status}, timeout {timeout:?}); console tail:\n{}",
            tail[tail.len().saturating_sub(40)..].join("\n")
        );
    };
    Ok(UmlOutput {
        status: code,
        stdout: read("stdout"),
        stderr: read("stderr"),
        console,
    })
}

/// Runs `body` inside UML: outside, boots UML and runs this test (`name`) there; inside, runs
/// the body. Panics with the inner output when the inner run fails.
pub fn in_uml(name: &str, modules: &[&str], body: impl FnOnce() -> Result<()>) {
    if inside() {
        if let Err(e) = body() {
            panic!("{e:?}");
        }
        return;
    }
    let result = (|| -> Result<()> {
        let exe = std::env::current_exe().context("find the test binary")?;
        let argv = vec![
            exe.to_string_lossy().into_owned(),
            "--exact".into(),
            name.into(),
            "--test-threads=1".into(),
            "--nocapture".into(),
        ];
        let mut env = Vec::new();
        for key in ["STRATA_BIN_DIR", "RUST_BACKTRACE", "RUST_LOG"] {
            if let Ok(v) = std::env::var(key) {
                env.push((key.to_string(), v));
            }
        }
        let out = run(&argv, &env, modules, Duration::from_secs(900))?;
        ensure!(
            out.status == 0 && out.stdout.contains("1 passed"),
            "{name} failed inside UML (exit {}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e:?}");
    }
}
