//! A `stratad` for end-to-end tests: its own root, run root and socket, the `strata` command
//! line pointed at it, and a busybox image made from Debian's `busybox-static`. Dropping it
//! removes its containers, stops the engine and its plugin, and unmounts and deletes all it made.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::harness::{find_binary, unique_name};
use crate::image::{busybox_layer, docker_archive};

/// A started engine with the busybox test image loaded; the test fails if it cannot be had.
pub fn engine() -> Engine {
    let e = Engine::start(&[]).unwrap_or_else(|e| panic!("{e:?}"));
    e.load_busybox().unwrap_or_else(|err| panic!("{err:?}"));
    e
}

/// Fails the test with the whole error chain of `r`.
pub fn check(r: Result<()>) {
    if let Err(e) = r {
        panic!("{e:?}");
    }
}

/// The reference the busybox test image is loaded as.
pub const BUSYBOX: &str = "busybox:latest";

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    /// `--root`.
    pub root: PathBuf,
    /// `--run-root` (short, for socket paths).
    pub run_root: PathBuf,
    /// The API socket.
    pub address: PathBuf,
    /// Extra `stratad` arguments, kept for restarts.
    args: Vec<String>,
}

impl Engine {
    /// Starts `stratad` with `args` added (e.g. `--storage-driver aufs`).
    pub fn start(args: &[&str]) -> Result<Engine> {
        let mut e = Engine::unstarted(args)?;
        e.spawn()?;
        Ok(e)
    }

    /// An engine's directories, with the daemon not started yet (see [`Engine::spawn`]).
    pub fn unstarted(args: &[&str]) -> Result<Engine> {
        let base = std::env::var_os("STRATA_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("se-")
            .tempdir_in(base)
            .context("make the engine's temp dir")?;
        let run_root = PathBuf::from("/run").join(unique_name("se-"));
        let e = Engine {
            child: None,
            root: dir.path().join("root"),
            address: run_root.join("strata.sock"),
            run_root,
            dir: Some(dir),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        fs::create_dir_all(&e.root)?;
        Ok(e)
    }

    fn log_path(&self) -> PathBuf {
        self.root.with_file_name("stratad.log")
    }

    /// Starts the daemon with different arguments than before.
    pub fn spawn_with(&mut self, args: &[&str]) -> Result<()> {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.spawn()
    }

    /// Starts the daemon on the same root, without waiting for it.
    fn launch(&self) -> Result<Child> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        Command::new(find_binary("stratad"))
            .arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start stratad")
    }

    /// Starts the daemon and SIGKILLs it `after` that long, during its start (or at once if it
    /// has exited already), as a crash while it recovers would. The daemon must not be running.
    pub fn start_and_kill(&mut self, after: Duration) -> Result<()> {
        ensure!(self.child.is_none(), "stratad is running");
        let mut child = self.launch()?;
        std::thread::sleep(after);
        // It may have exited already; kill fails then, and wait still reaps it.
        let _ = child.kill();
        child.wait().context("wait for the killed stratad")?;
        Ok(())
    }

    /// (Re)starts the daemon on the same root and waits for its socket to answer.
    pub fn spawn(&mut self) -> Result<()> {
        self.child = Some(self.launch()?);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!("stratad exited at start ({st}):\n{}", self.log_tail());
                }
            }
            if self.address.exists()
                && self
                    .strata(&["version"])
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "stratad did not answer within 60s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the daemon's log.
    pub fn log_tail(&self) -> String {
        let s = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A `strata ARGS` command against this engine, to be spawned as the caller wants it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(find_binary("strata"));
        c.arg("--address").arg(&self.address).args(args);
        c
    }

    /// Runs `strata` against this engine.
    pub fn strata(&self, args: &[&str]) -> Result<Output> {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .context("run strata")
    }

    /// Runs `strata`, requires success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.strata(args)?;
        ensure!(
            o.status.success(),
            "strata {} failed ({}):\nstdout: {}\nstderr: {}\nstratad log:\n{}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Runs `strata`, requires failure; returns (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> Result<(i32, String)> {
        let o = self.strata(args)?;
        ensure!(
            !o.status.success(),
            "strata {} should have failed; stdout: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout)
        );
        Ok((
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    }

    /// Runs `strata`, requires it to fail with exit `code` and one line on stderr that starts
    /// with `strata: ` and contains `want`.
    pub fn fails_one_line(&self, args: &[&str], code: i32, want: &str) -> Result<()> {
        let (got, err) = self.fails(args)?;
        ensure!(
            got == code,
            "strata {}: exit {got}, want {code}",
            args.join(" ")
        );
        ensure!(
            err.lines().count() == 1 && err.starts_with("strata: ") && err.contains(want),
            "strata {}: want one line with {want:?}, got:\n{err}",
            args.join(" ")
        );
        Ok(())
    }

    /// `strata run --rm FLAGS busybox true` is refused in one line (exit 125) naming `want`,
    /// and leaves no container.
    pub fn refuses_run(&self, flags: &[&str], want: &str) -> Result<()> {
        let mut args = vec!["run", "--rm"];
        args.extend(flags);
        args.extend([BUSYBOX, "true"]);
        self.fails_one_line(&args, 125, want)?;
        ensure!(
            self.ok(&["ps", "-aq"])?.trim().is_empty(),
            "the refused run {flags:?} left a container"
        );
        Ok(())
    }

    /// A scratch directory beside the root.
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let p = self.root.with_file_name(name);
        fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// Loads the busybox test image as `busybox:latest`.
    pub fn load_busybox(&self) -> Result<()> {
        let archive = self.scratch("images")?.join("busybox.tar");
        docker_archive(
            &archive,
            "docker.io/library/busybox:latest",
            &[busybox_layer(Vec::new())?],
            &["sh"],
        )?;
        self.ok(&["load", "-i", &archive.to_string_lossy()])?;
        Ok(())
    }

    /// Commits a container that added a file and deleted one, and checks that a container of
    /// the new image sees both changes (the deletion must survive as a whiteout).
    pub fn commit_keeps_changes(&self) -> Result<()> {
        self.ok(&[
            "run",
            "--name",
            "changed",
            BUSYBOX,
            "sh",
            "-c",
            "echo committed > /hello && rm /bin/ls",
        ])?;
        self.ok(&["commit", "changed", "changed:v1"])?;
        let out = self.ok(&[
            "run",
            "--rm",
            "changed:v1",
            "sh",
            "-c",
            "cat /hello && test ! -e /bin/ls && echo gone",
        ])?;
        ensure!(out == "committed\ngone\n", "the committed image: {out:?}");
        Ok(())
    }

    /// SIGTERM; waits for the exit.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("stratad is not running")
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!(
                    "stratad did not stop within 30s of SIGTERM:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// The containers directory of the root.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
}

/// Kills every process whose command line mentions `needle`.
/// Kills the processes whose command line names `needle`, or that work under it (a monitor
/// that started as the engine's spare names no container; it works in the container's
/// directory).
fn kill_matching(needle: &Path) {
    let _ = Command::new("pkill")
        .arg("-KILL")
        .arg("-f")
        .arg(needle.as_os_str())
        .status();
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    for p in procs.filter_map(|p| p.ok()) {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(needle)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Removes the cgroups of the containers under `containers` (left when a monitor was killed).
fn remove_cgroups(containers: &Path) {
    let Ok(entries) = fs::read_dir(containers) else {
        return;
    };
    let ids: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = hierarchies
        .filter_map(|h| h.ok().map(|h| h.path()))
        .collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        for id in &ids {
            let cg = root.join("strata").join(id);
            if !cg.is_dir() {
                continue;
            }
            // A frozen process acts on SIGKILL only once thawed (freezer v1, cgroup v2).
            let _ = fs::write(cg.join("freezer.state"), "THAWED");
            let _ = fs::write(cg.join("cgroup.freeze"), "0");
            for pid in fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(50));
            let _ = fs::remove_dir(&cg);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Ok(ids) = self.ok(&["ps", "-aq", "--no-trunc"]) {
                for id in ids.lines().filter(|l| !l.is_empty()) {
                    let _ = self.strata(&["rm", "-f", id]);
                }
            }
            let _ = self.stop();
        }
        // After a crash or a failed stop: monitors, containers and the plugin.
        kill_matching(&self.root);
        kill_matching(&self.run_root);
        std::thread::sleep(Duration::from_millis(100));
        remove_cgroups(&self.containers_dir());
        if let Some(dir) = &self.dir {
            crate::mounts::unmount_all_under(dir.path());
        }
        crate::mounts::unmount_all_under(&self.run_root);
        let _ = fs::remove_dir_all(&self.run_root);
    }
}
