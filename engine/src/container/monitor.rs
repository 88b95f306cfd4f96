//! The per-container monitor: a small process (`strata-monitor`) that creates and starts the
//! container with `strata-runtime`, owns its stdout and stderr and writes them to the
//! container's json-lines log, reaps it and records how it ended. It runs in a session of its
//! own, so the container keeps running when `stratad` stops or dies.
//!
//! The engine starts it with a status pipe as fd 3. The monitor writes one line there —
//! `ok <container pid>` once the container runs, or `error <message>` — and closes it. When
//! the container has exited, it writes `exit.json` (code, OOM kill, time) into its state
//! directory, deletes the runtime's state and exits.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Where a monitor finds its container and writes what it learns.
#[derive(Debug, Clone)]
pub struct MonitorArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime_root: PathBuf,
    pub log: PathBuf,
    pub state_dir: PathBuf,
}

/// How a container ended, as the monitor records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: String,
}

/// The exit file of a container's state directory.
pub fn exit_file(state_dir: &Path) -> PathBuf {
    state_dir.join("exit.json")
}

/// Reads the exit record, if the monitor wrote one.
pub fn read_exit(state_dir: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&fs::read(exit_file(state_dir)).ok()?).ok()
}

/// One line of Docker's json-file log format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Copies a pipe into the log, a line at a time.
fn pump(pipe: File, stream: &'static str, log: Arc<Mutex<File>>) {
    let mut r = BufReader::with_capacity(64 * 1024, pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = LogLine {
                    log: String::from_utf8_lossy(&buf).into_owned(),
                    stream: stream.into(),
                    time: strata_runtime::state::now_rfc3339(),
                };
                let mut out = serde_json::to_vec(&line).unwrap_or_default();
                out.push(b'\n');
                let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = f.write_all(&out) {
                    tracing::error!(%e, "writing the container log failed");
                }
            }
        }
    }
}

fn pipe() -> std::io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// Puts `f` on descriptor `fd` (without close-on-exec, so the container inherits it).
fn install(f: &impl AsRawFd, fd: i32) -> std::io::Result<()> {
    // SAFETY: dup2 onto a standard descriptor of this single-threaded process; both fds are
    // valid for the duration of the call.
    if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the monitor; `status` is the pipe to the engine. Returns the process's exit code.
pub fn run(args: &MonitorArgs, status: OwnedFd) -> i32 {
    let mut status = File::from(status);
    match start(args) {
        Ok((mut container, readers)) => {
            let _ = writeln!(status, "ok {}", container.pid());
            drop(status);
            let exit = container.wait();
            for r in readers {
                let _ = r.join();
            }
            let (code, oom) = match exit {
                Ok(s) => (s.code, s.oom_killed),
                Err(e) => {
                    tracing::error!(%e, "waiting for the container failed");
                    (255, false)
                }
            };
            let rec = ExitRecord {
                exit_code: code,
                oom_killed: oom,
                finished_at: strata_runtime::state::now_rfc3339(),
            };
            let tmp = args.state_dir.join("exit.json.tmp");
            let written = fs::write(&tmp, serde_json::to_vec(&rec).unwrap_or_default())
                .and_then(|_| fs::rename(&tmp, exit_file(&args.state_dir)));
            if let Err(e) = written {
                tracing::error!(%e, "recording the exit status failed");
            }
            if let Err(e) = container.delete(true) {
                tracing::error!(%e, "deleting the runtime state failed");
            }
            0
        }
        Err(e) => {
            let msg = e.replace('\n', " ");
            let _ = writeln!(status, "error {msg}");
            1
        }
    }
}

type Started = (strata_runtime::Container, Vec<std::thread::JoinHandle<()>>);

fn start(args: &MonitorArgs) -> Result<Started, String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .map_err(|e| format!("open log {}: {e}", args.log.display()))?;
    let log = Arc::new(Mutex::new(log));
    let (out_r, out_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let null = File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    install(&null, 0)
        .and_then(|_| install(&out_w, 1))
        .and_then(|_| install(&err_w, 2))
        .map_err(|e| format!("dup2: {e}"))?;
    drop((out_w, err_w));
    let opts = strata_runtime::CreateOptions::default();
    let created =
        strata_runtime::Container::create(&args.runtime_root, &args.id, &args.bundle, &opts);
    // The container holds its own copies now; ours must go so the pipes end when it does.
    let restored = install(&null, 1).and_then(|_| install(&null, 2));
    let mut container = created.map_err(|e| e.to_string())?;
    restored.map_err(|e| format!("dup2: {e}"))?;
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(e.to_string());
    }
    let readers = vec![
        {
            let log = log.clone();
            std::thread::spawn(move || pump(out_r, "stdout", log))
        },
        std::thread::spawn(move || pump(err_r, "stderr", log)),
    ];
    Ok((container, readers))
}

/// The status descriptor the engine passes.
pub const STATUS_FD: i32 = 3;

/// Takes ownership of the status descriptor.
///
/// # Safety
/// Call once, at the start of the monitor process, where fd 3 is the engine's status pipe.
pub unsafe fn status_fd() -> OwnedFd {
    // SAFETY: the caller guarantees fd 3 is the open status pipe and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(STATUS_FD) }
}
