//! Root test with the real peer: containerd 1.6's runc shim (io.containerd.runc.v2) runs a
//! busybox image through `strata-runtime` (`ctr run --runc-binary`), on a containerd started
//! with its own config, root, state and socket in a temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    address: PathBuf,
}

impl Containerd {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-rt-ctrd-")
            .tempdir()
            .unwrap();
        let address = dir.path().join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{a}\"\n[ttrpc]\n  address = \"{a}.ttrpc\"\n",
            r = dir.path().display(),
            a = address.display()
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd must be installed (apt-get install containerd)");
        let c = Containerd {
            child,
            dir,
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.address)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The shims this daemon started name its socket on their command line.
        let needle = self.address.display().to_string();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle) && pid != std::process::id() as i32 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("root"))
            .status();
    }
}

fn sh(cmd: &str, dir: &Path) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}");
}

/// A docker-archive tarball of a one-layer busybox image, made with tar and sha256sum.
fn busybox_archive(dir: &Path, reference: &str) -> PathBuf {
    let b = common::Bundle::new("ctrimg", "true");
    let rootfs = b.rootfs();
    sh(&format!("tar -C {} -cf layer.tar .", rootfs.display()), dir);
    let out = Command::new("sha256sum")
        .arg(dir.join("layer.tar"))
        .output()
        .unwrap();
    let diff = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(dir.join(&diff)).unwrap();
    std::fs::rename(dir.join("layer.tar"), dir.join(&diff).join("layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [reference], "Layers": [format!("{diff}/layer.tar")]}]);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    sh(
        &format!("tar -cf image.tar manifest.json config.json {diff}"),
        dir,
    );
    dir.join("image.tar")
}

#[test]
fn root_containerd_runs_busybox_through_strata_runtime() {
    common::require_root();
    let c = Containerd::start();
    let work = c.dir.path().join("image");
    std::fs::create_dir_all(&work).unwrap();
    let reference = "docker.io/strata-test/busybox:latest";
    let archive = busybox_archive(&work, reference);
    let out = c.ctr(&["images", "import", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "import: {}{}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    let id = common::unique("ctr");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        common::bin(),
        reference,
        &id,
        "sh",
        "-c",
        "echo hello from strata; echo pid=$$; exit 7",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello from strata"),
        "stdout: {stdout}\nstderr: {}\nlog: {}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    assert!(stdout.contains("pid=1"), "{stdout}");
    assert_eq!(
        out.status.code(),
        Some(7),
        "ctr run returns the container's exit code"
    );
    // A detached task, killed by containerd through `strata-runtime kill`, then removed.
    let id2 = common::unique("ctr2");
    let out = c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        common::bin(),
        reference,
        &id2,
        "sleep",
        "100",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    let tasks = String::from_utf8_lossy(&c.ctr(&["tasks", "ls"]).stdout).into_owned();
    assert!(tasks.contains(&id2) && tasks.contains("RUNNING"), "{tasks}");
    let out = c.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = String::from_utf8_lossy(&c.ctr(&["tasks", "ls"]).stdout).into_owned();
        if tasks.contains("STOPPED") || !tasks.contains(&id2) {
            break;
        }
        assert!(Instant::now() < deadline, "task not stopped: {tasks}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.ctr(&["tasks", "delete", &id2]).status.success());
    assert!(c.ctr(&["containers", "delete", &id2]).status.success());
}
