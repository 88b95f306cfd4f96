//! Shared helpers of the root tests: a busybox bundle in a temp dir, the binary, and guards
//! that remove containers, cgroups and state even when a test fails.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use oci_spec::runtime::Spec;
use strata_runtime::Container;

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata-runtime")
}

/// Fails loudly unless root: these tests must not quietly skip.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "root tests need root (run them as root, as CI does)"
    );
}

/// A unique id for a test.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// A bundle with a busybox rootfs, a state root, and cleanup on drop.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub spec: Spec,
    pub cgroup_path: String,
}

impl Bundle {
    /// A bundle running `script` with `sh -c`, Docker's defaults otherwise, hostname set and
    /// a cgroup path unique to the test.
    pub fn new(name: &str, script: &str) -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("strata-rt-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static must be installed");
        let list = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let id = unique(name);
        let cgroup_path = format!("/strata-test-{id}");
        let mut spec = strata_runtime::spec::docker_default_spec(vec![
            "sh".into(),
            "-c".into(),
            script.into(),
        ]);
        spec.set_hostname(Some(format!("h-{name}")));
        if let Some(l) = spec.linux_mut() {
            l.set_cgroups_path(Some(cgroup_path.clone().into()));
        }
        let mut root = spec.root().clone().unwrap_or_default();
        root.set_path("rootfs".into());
        root.set_readonly(Some(false));
        spec.set_root(Some(root));
        let b = Bundle {
            dir,
            id,
            spec,
            cgroup_path,
        };
        b.save();
        b
    }

    /// Writes config.json from `spec`.
    pub fn save(&self) {
        self.spec.save(self.path().join("config.json")).unwrap();
    }

    /// Edits the spec as JSON (for fields without convenient setters) and saves it.
    pub fn edit(&mut self, f: impl FnOnce(&mut serde_json::Value)) {
        let mut v = serde_json::to_value(&self.spec).unwrap();
        f(&mut v);
        self.spec = serde_json::from_value(v).unwrap();
        self.save();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// The state root of this test.
    pub fn root(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Runs the binary with `--root` and the given args. Output goes through files, not
    /// pipes: a created container inherits them and would keep a pipe open forever.
    pub fn cli(&self, args: &[&str]) -> Output {
        let root = self.root();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (o, e) = (
            self.path().join(format!(".out{n}")),
            self.path().join(format!(".err{n}")),
        );
        let status = Command::new(bin())
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .status()
            .expect("run strata-runtime");
        Output {
            status,
            stdout: std::fs::read(&o).unwrap(),
            stderr: std::fs::read(&e).unwrap(),
        }
    }

    /// `run` in the foreground; (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        let b = self.path().to_string_lossy().into_owned();
        let out = self.cli(&["run", "--bundle", &b, &self.id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The container's v1 or v2 cgroup directory for `controller`.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if v2 {
            Path::new("/sys/fs/cgroup").join(self.cgroup_path.trim_start_matches('/'))
        } else {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(self.cgroup_path.trim_start_matches('/'))
        }
    }

    /// Checks that nothing of the container is left: state, cgroup dirs, mounts.
    pub fn assert_nothing_left(&self) {
        assert!(
            !self.root().join(&self.id).exists(),
            "state directory left behind"
        );
        for c in ["memory", "pids", "cpu", "freezer", "devices", "cpuset"] {
            let d = self.cgroup_dir(c);
            assert!(!d.exists(), "cgroup {} left behind", d.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&*self.path().to_string_lossy()),
            "a mount under the bundle is left"
        );
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Ok(c) = Container::load(&self.root(), &self.id) {
            let _ = c.delete(true);
        }
        // Remove whatever a failed test left in the cgroup trees.
        for h in [
            "memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd",
            "unified", "",
        ] {
            let d = Path::new("/sys/fs/cgroup")
                .join(h)
                .join(self.cgroup_path.trim_start_matches('/'));
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

/// The spec as JSON path helper: `v["linux"]["resources"]`, creating objects on the way.
pub fn obj<'a>(v: &'a mut serde_json::Value, path: &[&str]) -> &'a mut serde_json::Value {
    let mut cur = v;
    for k in path {
        if cur.get(*k).is_none() {
            cur[*k] = serde_json::json!({});
        }
        cur = &mut cur[*k];
    }
    cur
}
