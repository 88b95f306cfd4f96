//! A real containerd (Debian's 1.6) run on its own temporary root, state and socket, with a
//! Strata plugin loaded as a proxy snapshotter.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A containerd daemon; dropping it stops it, its shims and its mounts.
pub struct Containerd {
    child: Option<Child>,
    dir: PathBuf,
    address: PathBuf,
}

impl Containerd {
    /// Starts containerd under `dir` with `snapshotter` → `plugin_socket` as a proxy plugin.
    pub fn start(dir: &Path, snapshotter: &str, plugin_socket: &Path) -> Result<Self> {
        for tool in ["containerd", "ctr", "runc"] {
            if which(tool).is_none() {
                bail!("{tool} is not installed (apt-get install containerd runc): this test needs the real peer");
            }
        }
        fs::create_dir_all(dir)?;
        let address = dir.join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[proxy_plugins]
  [proxy_plugins.{snapshotter}]
    type = "snapshot"
    address = "{plugin}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            address = address.display(),
            plugin = plugin_socket.display(),
        );
        let config_path = dir.join("config.toml");
        fs::write(&config_path, config)?;
        let log = fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start containerd")?;
        let c = Containerd {
            child: Some(child),
            dir: dir.to_path_buf(),
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.ctr(&["version"])
                .map(|o| o.status.success())
                .unwrap_or(false)
            {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!("containerd did not come up within 30s; log:\n{}", c.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `ctr` against this daemon.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.address)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("run ctr")
    }

    /// Runs `ctr` and fails with its output unless it succeeds; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let o = self.ctr(args)?;
        if !o.status.success() {
            bail!(
                "ctr {} failed ({}):\n{}{}\ncontainerd log tail:\n{}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                self.log()
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The last lines of containerd's log.
    pub fn log(&self) -> String {
        let all = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Kill the shims this daemon started (their command line names our socket's dir).
        let _ = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                &format!("containerd-shim.*{}", self.address.display()),
            ])
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        strata_tests::mounts::unmount_all_under(&self.dir);
    }
}
