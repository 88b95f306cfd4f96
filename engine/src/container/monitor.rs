//! The per-container monitor: a small process (`strata-monitor`) that creates and starts the
//! container with `strata-runtime`, owns its stdio, reaps it and records how it ended. It runs
//! in a session of its own, so the container keeps running when `stratad` stops or dies.
//!
//! The engine starts it with a status pipe as fd 3. The monitor writes `ok <container pid>`
//! there once the container runs (or `error <message>`, and ends). When the container has
//! exited, it writes `exit.json` (code, OOM kill, time) into its state directory, then `exit`
//! on the status pipe, deletes the runtime's state, closes the pipe and exits.
//!
//! Its stdio: stdout and stderr are pipes (with a terminal, the pty master the runtime sends
//! to a console socket, all output as stdout); with `--stdin` the container's stdin is a pipe
//! (or the pty) fed by attached clients, otherwise `/dev/null`. Output goes to the container's
//! json-lines log and to every client attached through `attach.sock` (see [`super::attach`]);
//! `--attached` adds fd 4 as a client before the container starts.
//!
//! A monitor can also be started ahead of time as a *spare* (`--spare`): with its stdin a
//! sequenced-packet socket to the engine, it loads and waits until the engine sends one job —
//! its [`MonitorArgs`] as JSON with the status pipe (and the pre-attached client) as
//! SCM_RIGHTS — and then runs exactly as a monitor started for that container. Starting a
//! container then costs no process start; if the engine goes away first, the spare exits.
//!
//! A job can also *hold* the container (the engine's warm pool, see [`super::pool`]): the
//! monitor creates it, writes `created <pid>` on the status pipe and waits on the job socket.
//! A `go` message there (with the pre-attached client, if any) starts it, and the monitor goes
//! on as above with `ok <pid>`; the socket's end instead (the engine dropped it, or died)
//! deletes the container and ends the monitor.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::attach::{read_frame, FromMonitor, ShortPath, ToMonitor, SOCKET};

/// Where a monitor finds its container and writes what it learns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MonitorArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime_root: PathBuf,
    pub log: PathBuf,
    pub state_dir: PathBuf,
    /// The container has a terminal (`process.terminal` in its spec).
    pub tty: bool,
    /// Keep its stdin open for attached clients.
    pub stdin: bool,
    /// The terminal's first window size (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// Host ports to publish (`-p`), bound before the container is created.
    #[serde(default)]
    pub ports: Vec<super::ports::PortBinding>,
    /// How its output is logged (`--log-driver`, `--log-opt`).
    #[serde(default)]
    pub logging: super::logconf::LogConfig,
}

impl MonitorArgs {
    /// The arguments of a `strata-monitor` started for this container (with `--attached`
    /// when a client is passed as fd 4, which the caller adds).
    pub fn to_command_line(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--runtime-root".into(),
            self.runtime_root.clone().into(),
            "--log".into(),
            self.log.clone().into(),
            "--state-dir".into(),
            self.state_dir.clone().into(),
        ];
        if self.tty {
            a.push("--tty".into());
        }
        if self.stdin {
            a.push("--stdin".into());
        }
        if let Some((rows, cols)) = self.console_size {
            a.push("--console-size".into());
            a.push(format!("{rows}x{cols}").into());
        }
        if !self.ports.is_empty() {
            a.push("--ports".into());
            a.push(
                serde_json::to_string(&self.ports)
                    .unwrap_or_default()
                    .into(),
            );
        }
        if self.logging != super::logconf::LogConfig::default() {
            a.push("--logging".into());
            a.push(
                serde_json::to_string(&self.logging)
                    .unwrap_or_default()
                    .into(),
            );
        }
        a
    }
}

/// How a container ended, as the monitor records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: String,
}

/// Where the monitor writes the host ports it bound (`-p`), before it reports the start.
pub fn ports_file(state_dir: &Path) -> PathBuf {
    state_dir.join("ports.json")
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

/// A log line longer than this is written in pieces (as Docker's json-file logger does).
const MAX_LOG_LINE: usize = 16 * 1024;

/// The attached clients and the container's stdin, shared by the monitor's threads.
#[derive(Debug)]
struct Hub {
    clients: Mutex<Clients>,
    /// The write end of the container's stdin pipe, or the pty master; `None` once closed.
    stdin: Mutex<Option<File>>,
    /// The pty master, for window sizes.
    pty: Option<OwnedFd>,
    tty: bool,
    log: Mutex<LogFile>,
}

/// The container's json-lines log, rotated as its configuration says.
#[derive(Debug)]
struct LogFile {
    /// `None` with the `none` driver, or after the log could not be reopened.
    file: Option<File>,
    path: PathBuf,
    size: u64,
    config: super::logconf::LogConfig,
}

impl LogFile {
    fn open(path: &Path, config: super::logconf::LogConfig) -> Result<LogFile, String> {
        let mut log = LogFile {
            file: None,
            path: path.to_path_buf(),
            size: 0,
            config,
        };
        if !config.none {
            log.reopen()
                .map_err(|e| format!("open log {}: {e}", path.display()))?;
        }
        Ok(log)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    /// Appends one line; rotates once the log has reached its size.
    fn write(&mut self, line: &[u8]) {
        let Some(f) = self.file.as_mut() else { return };
        if let Err(e) = f.write_all(line) {
            tracing::error!(%e, "writing the container log failed");
            return;
        }
        self.size += line.len() as u64;
        if self.config.max_size > 0 && self.size >= self.config.max_size {
            self.file = None;
            let rotated = super::logconf::rotate(&self.path, self.config.max_files)
                .and_then(|()| self.reopen());
            if let Err(e) = rotated {
                tracing::error!(%e, "rotating the container log failed");
                let _ = self.reopen();
            }
        }
    }
}

#[derive(Debug, Default)]
struct Clients {
    next: u64,
    list: Vec<(u64, UnixStream)>,
    /// Set once the container has exited: late clients get the exit at once.
    exit: Option<i32>,
}

impl Hub {
    /// Sends a frame to every client; one that cannot take it is dropped.
    fn broadcast(&self, frame: &[u8]) {
        let mut c = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        c.list.retain_mut(|(_, s)| s.write_all(frame).is_ok());
    }

    fn log(&self, stream: &str, line: &[u8]) {
        let line = LogLine {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: stream.into(),
            time: strata_runtime::state::now_rfc3339(),
        };
        let mut out = serde_json::to_vec(&line).unwrap_or_default();
        out.push(b'\n');
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(&out);
    }

    /// Serves a new client: its input on a thread of its own, output from now on.
    fn add(self: &Arc<Self>, conn: UnixStream) {
        let input = match conn.try_clone() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(%e, "an attach connection could not be served");
                return;
            }
        };
        let id = {
            let mut c = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(code) = c.exit {
                let mut conn = conn;
                let _ = conn.write_all(&FromMonitor::Exit(code).encode());
                return;
            }
            c.next += 1;
            let id = c.next;
            c.list.push((id, conn));
            id
        };
        let hub = self.clone();
        std::thread::spawn(move || hub.serve_input(input, id));
    }

    fn serve_input(&self, mut conn: UnixStream, id: u64) {
        while let Ok(Some((kind, payload))) = read_frame(&mut conn) {
            match ToMonitor::decode(kind, payload) {
                Some(ToMonitor::Stdin(d)) => {
                    let mut sink = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(f) = sink.as_mut() {
                        if let Err(e) = f.write_all(&d) {
                            tracing::debug!(%e, "the container's stdin is closed");
                            *sink = None;
                        }
                    }
                }
                // A terminal has no end of input but the bytes typed (^D).
                Some(ToMonitor::StdinClose) if !self.tty => {
                    *self.stdin.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Some(ToMonitor::Resize { rows, cols }) => {
                    if let Some(m) = &self.pty {
                        if let Err(e) = strata_runtime::tty::set_size(m.as_raw_fd(), rows, cols) {
                            tracing::debug!(%e, "resizing the terminal failed");
                        }
                    }
                }
                _ => {}
            }
        }
        let mut c = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        c.list.retain(|(i, _)| *i != id);
    }

    /// The container exited and all its output was sent: every client gets the code.
    fn finish(&self, code: i32) {
        let mut c = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        c.exit = Some(code);
        let f = FromMonitor::Exit(code).encode();
        for (_, mut s) in c.list.drain(..) {
            let _ = s.write_all(&f);
        }
    }
}

/// Copies one of the container's outputs to the clients (as it comes) and to the log (a line
/// at a time).
fn pump(mut src: File, stream: &'static str, hub: Arc<Hub>) {
    use std::io::Read;
    let mut buf = vec![0u8; 32 * 1024];
    let mut line = Vec::new();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: the pty's other side is closed.
            Err(_) => break,
        };
        let data = buf[..n].to_vec();
        let f = if stream == "stderr" {
            FromMonitor::Stderr(data)
        } else {
            FromMonitor::Stdout(data)
        };
        hub.broadcast(&f.encode());
        line.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(p) = line[start..].iter().position(|b| *b == b'\n') {
            hub.log(stream, &line[start..start + p + 1]);
            start += p + 1;
        }
        line.drain(..start);
        if line.len() >= MAX_LOG_LINE {
            hub.log(stream, &line);
            line.clear();
        }
    }
    if !line.is_empty() {
        hub.log(stream, &line);
    }
}

fn pipe() -> std::io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// Puts `f` on descriptor `fd` (without close-on-exec, so the container inherits it).
fn install(f: &impl AsRawFd, fd: i32) -> std::io::Result<()> {
    // SAFETY: dup2 onto a standard descriptor of this process, before any thread of ours
    // runs; both fds are valid for the duration of the call.
    if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the monitor; `status` is the pipe to the engine, `attached` a client to serve from
/// the start; with `hold` (the job socket), the container is created and waits for the
/// engine's `go` there. Returns the process's exit code.
pub fn run(
    args: &MonitorArgs,
    status: OwnedFd,
    attached: Option<OwnedFd>,
    hold: Option<OwnedFd>,
) -> i32 {
    let mut status = File::from(status);
    match start(args, attached, hold, &mut status) {
        Ok(mut m) => {
            let _ = writeln!(status, "ok {}", m.container.pid());
            let exit = m.container.wait();
            for r in m.pumps.drain(..) {
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
            // New clients are refused from here on; those attached learn the code.
            let _ = fs::remove_file(args.state_dir.join(SOCKET));
            // The engine can go on with the exit while the runtime's state is deleted; the
            // pipe's end tells it that is done (before it removes or starts the container).
            let _ = writeln!(status, "exit");
            m.hub.finish(code);
            if let Err(e) = m.container.delete(true) {
                tracing::error!(%e, "deleting the runtime state failed");
            }
            drop(status);
            0
        }
        Err(e) => {
            let _ = fs::remove_file(args.state_dir.join(SOCKET));
            let msg = e.replace('\n', " ");
            let _ = writeln!(status, "error {msg}");
            1
        }
    }
}

/// A started container and what serves it.
struct Monitored {
    container: strata_runtime::Container,
    pumps: Vec<std::thread::JoinHandle<()>>,
    hub: Arc<Hub>,
}

/// Binds a unix socket in `dir`, replacing a stale one.
fn bind_in(dir: &Path, name: &str) -> Result<UnixListener, String> {
    let p = ShortPath::new(dir, name).map_err(|e| format!("open {}: {e}", dir.display()))?;
    let _ = fs::remove_file(p.path());
    UnixListener::bind(p.path()).map_err(|e| format!("bind {}/{name}: {e}", dir.display()))
}

/// Receives the pty master the container's init sent to the console socket.
fn receive_master(console: UnixListener) -> Result<OwnedFd, String> {
    console
        .set_nonblocking(true)
        .map_err(|e| format!("console socket: {e}"))?;
    // The runtime connected and the init sent the master before `create` returned.
    let (conn, _) = console
        .accept()
        .map_err(|e| format!("console socket: no connection from the runtime: {e}"))?;
    conn.set_nonblocking(false)
        .and_then(|_| conn.set_read_timeout(Some(std::time::Duration::from_secs(30))))
        .map_err(|e| format!("console socket: {e}"))?;
    strata_runtime::tty::recv_fd(conn.as_raw_fd()).map_err(|e| e.to_string())
}

fn start(
    args: &MonitorArgs,
    attached: Option<OwnedFd>,
    hold: Option<OwnedFd>,
    status: &mut File,
) -> Result<Monitored, String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let log = LogFile::open(&args.log, args.logging)?;
    let listener = bind_in(&args.state_dir, SOCKET)?;
    // Published ports first: one in use fails the start before anything is made.
    let published = super::proxy::bind(&args.ports)?;
    let null = File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    let dup = |f: &OwnedFd| {
        f.try_clone()
            .map(File::from)
            .map_err(|e| format!("dup: {e}"))
    };
    let mut opts = strata_runtime::CreateOptions {
        // Joined just after the start, off its path (see `join_unified_later`).
        defer_hybrid_unified: true,
        ..Default::default()
    };
    let (container, sources, stdin, pty) = if args.tty {
        let console = bind_in(&args.state_dir, "console.sock")?;
        let console_path = ShortPath::new(&args.state_dir, "console.sock")
            .map_err(|e| format!("open {}: {e}", args.state_dir.display()))?;
        opts.console_socket = Some(console_path.path().to_path_buf());
        install(&null, 0)
            .and_then(|_| install(&null, 1))
            .and_then(|_| install(&null, 2))
            .map_err(|e| format!("dup2: {e}"))?;
        let created =
            strata_runtime::Container::create(&args.runtime_root, &args.id, &args.bundle, &opts);
        let _ = fs::remove_file(console_path.path());
        let container = created.map_err(|e| e.to_string())?;
        let master = match receive_master(console) {
            Ok(m) => m,
            Err(e) => {
                let _ = container.delete(true);
                return Err(e);
            }
        };
        if let Some((rows, cols)) = args.console_size {
            if let Err(e) = strata_runtime::tty::set_size(master.as_raw_fd(), rows, cols) {
                tracing::warn!(%e, "setting the terminal's size failed");
            }
        }
        let out = dup(&master)?;
        let stdin = if args.stdin {
            Some(dup(&master)?)
        } else {
            None
        };
        (container, vec![(out, "stdout")], stdin, Some(master))
    } else {
        let (out_r, out_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let (in_r, in_w) = if args.stdin {
            let (r, w) = pipe().map_err(|e| format!("pipe: {e}"))?;
            (r, Some(w))
        } else {
            (null.try_clone().map_err(|e| format!("dup: {e}"))?, None)
        };
        install(&in_r, 0)
            .and_then(|_| install(&out_w, 1))
            .and_then(|_| install(&err_w, 2))
            .map_err(|e| format!("dup2: {e}"))?;
        drop((in_r, out_w, err_w));
        let created =
            strata_runtime::Container::create(&args.runtime_root, &args.id, &args.bundle, &opts);
        // The container holds its own copies now; ours must go so the pipes end when it does.
        let restored = install(&null, 0)
            .and_then(|_| install(&null, 1))
            .and_then(|_| install(&null, 2));
        let container = created.map_err(|e| e.to_string())?;
        restored.map_err(|e| format!("dup2: {e}"))?;
        (
            container,
            vec![(out_r, "stdout"), (err_r, "stderr")],
            in_w,
            None,
        )
    };
    let mut container = container;
    if !published.bindings.is_empty() {
        let served = File::open(format!("/proc/{}/ns/net", container.pid()))
            .map_err(|e| format!("open the container's network namespace: {e}"))
            .and_then(|netns| {
                let json = serde_json::to_vec(&published.bindings).unwrap_or_default();
                fs::write(ports_file(&args.state_dir), json)
                    .map_err(|e| format!("record the published ports: {e}"))?;
                Ok(netns)
            });
        match served {
            Ok(netns) => published.serve(netns),
            Err(e) => {
                let _ = container.delete(true);
                return Err(e);
            }
        }
    }
    let hub = Arc::new(Hub {
        clients: Mutex::default(),
        stdin: Mutex::new(stdin),
        pty,
        tty: args.tty,
        log: Mutex::new(log),
    });
    let attached = match hold {
        None => attached,
        Some(sock) => {
            let _ = writeln!(status, "created {}", container.pid());
            match receive_go(&sock) {
                Ok(Some(attached)) => attached,
                Ok(None) => {
                    let _ = container.delete(true);
                    return Err("released by the engine before its start".into());
                }
                Err(e) => {
                    let _ = container.delete(true);
                    return Err(format!("waiting for the engine's start: {e}"));
                }
            }
        }
    };
    if let Some(fd) = attached {
        hub.add(UnixStream::from(fd));
    }
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(e.to_string());
    }
    join_unified_later(&container);
    let pumps = sources
        .into_iter()
        .map(|(src, stream)| {
            let hub = hub.clone();
            std::thread::spawn(move || pump(src, stream, hub))
        })
        .collect();
    let h = hub.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(c) => h.add(c),
                Err(e) => tracing::warn!(%e, "accepting an attach connection failed"),
            }
        }
    });
    Ok(Monitored {
        container,
        pumps,
        hub,
    })
}

/// How long after its start a container joins the unified hierarchy of a hybrid host.
const UNIFIED_JOIN_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Moves the container into the unified hierarchy of a hybrid host, in the background: the
/// `cgroup.procs` write waits for an RCU grace period when the kernel's threadgroup lock is
/// idle, which the start need not wait for. A container that has already ended is fine.
fn join_unified_later(container: &strata_runtime::Container) {
    let Some(cg) = container.cgroup().cloned() else {
        return;
    };
    if cg.mode != strata_runtime::cgroups::CgroupMode::Hybrid {
        return;
    }
    let pid = container.pid();
    let me = std::process::id() as i32;
    std::thread::spawn(move || {
        // Not at once: the write cannot be interrupted, and this process cannot end until it
        // is done, so a container that is over within moments skips it (its processes were
        // only tracked there). Children its first process made before stay where they are.
        std::thread::sleep(UNIFIED_JOIN_DELAY);
        // Only while the pid is still our running (not yet reaped) child: pids are handed out
        // in order up to pid_max, so it cannot name another process between this check and the
        // write a moment later.
        let running_child =
            strata_runtime::state::proc_stat(pid).is_some_and(|s| s.alive() && s.ppid == me);
        if !running_child {
            return;
        }
        if let Err(e) = cg.join_unified(pid) {
            tracing::debug!(%e, pid, "joining the unified cgroup hierarchy failed");
        }
    });
}

/// A job for a spare monitor.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    args: MonitorArgs,
    /// The second descriptor is a pre-attached client.
    attached: bool,
    /// Create the container and wait for `go` on the job socket before starting it.
    #[serde(default)]
    hold: bool,
}

/// What a spare monitor received: its container, the status pipe, a pre-attached client, and
/// whether to hold the container until the engine's `go`.
#[derive(Debug)]
pub struct Received {
    pub args: MonitorArgs,
    pub status: OwnedFd,
    pub attached: Option<OwnedFd>,
    pub hold: bool,
}

/// Sends `msg` with `fds` (SCM_RIGHTS) as one packet on `sock`.
fn send_with_fds(
    sock: &impl AsRawFd,
    msg: &[u8],
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(msg)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsg: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsg, MsgFlags::empty(), None)?;
    if n != msg.len() {
        return Err(std::io::Error::other("short send to a container monitor"));
    }
    Ok(())
}

/// Sends a spare monitor (on `sock`) its container: `status` is the pipe it reports on,
/// `attached` a client to serve from the start; with `hold`, it creates the container and
/// waits for [`send_go`].
pub fn send_job(
    sock: &impl AsRawFd,
    args: &MonitorArgs,
    status: &impl AsRawFd,
    attached: Option<std::os::fd::RawFd>,
    hold: bool,
) -> std::io::Result<()> {
    let job = serde_json::to_vec(&Job {
        args: args.clone(),
        attached: attached.is_some(),
        hold,
    })
    .map_err(std::io::Error::other)?;
    let mut fds = vec![status.as_raw_fd()];
    fds.extend(attached);
    send_with_fds(sock, &job, &fds)
}

/// The message that starts a held container.
const GO: &[u8] = b"go";

/// Starts the container a monitor holds (see [`send_job`]), with `attached` as a client from
/// the start.
pub fn send_go(sock: &impl AsRawFd, attached: Option<std::os::fd::RawFd>) -> std::io::Result<()> {
    let fds: Vec<_> = attached.into_iter().collect();
    send_with_fds(sock, GO, &fds)
}

/// Waits for the engine's `go` on the job socket: `None` if the socket ended first.
fn receive_go(sock: &OwnedFd) -> std::io::Result<Option<Option<OwnedFd>>> {
    let mut buf = [0u8; 16];
    let (n, mut fds) = receive(sock, &mut buf)?;
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if &buf[..n] != GO {
        return Err(std::io::Error::other("an unknown message from the engine"));
    }
    Ok(Some(fds.pop()))
}

/// Receives one packet and the descriptors that came with it.
fn receive(sock: &OwnedFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: descriptors just received with SCM_RIGHTS belong to this process and
            // nothing else owns them.
            fds.extend(
                got.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// The biggest job message a spare accepts.
const MAX_JOB: usize = 64 * 1024;

/// Waits for the engine's job on a spare monitor's socket. `None`: the engine went away.
pub fn receive_job(sock: &OwnedFd) -> std::io::Result<Option<Received>> {
    let mut buf = vec![0u8; MAX_JOB];
    let (n, mut fds) = receive(sock, &mut buf)?;
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let job: Job = serde_json::from_slice(&buf[..n]).map_err(std::io::Error::other)?;
    if fds.is_empty() || (job.attached && fds.len() < 2) {
        return Err(std::io::Error::other(
            "a monitor job came without its descriptors",
        ));
    }
    let attached = if job.attached {
        Some(fds.remove(1))
    } else {
        None
    };
    Ok(Some(Received {
        args: job.args,
        status: fds.remove(0),
        attached,
        hold: job.hold,
    }))
}

/// The status descriptor the engine passes.
pub const STATUS_FD: i32 = 3;

/// The pre-attached client's descriptor, with `--attached`.
pub const ATTACH_FD: i32 = 4;

/// Takes ownership of the status descriptor and keeps it from the container and its hooks
/// (its end tells the engine that this monitor is done).
///
/// # Safety
/// Call once, at the start of the monitor process, where fd 3 is the engine's status pipe.
pub unsafe fn status_fd() -> OwnedFd {
    // SAFETY: the caller guarantees fd 3 is the open status pipe and nothing else owns it.
    close_on_exec(unsafe { OwnedFd::from_raw_fd(STATUS_FD) })
}

/// Marks `fd` close-on-exec (an inherited descriptor of this process's own).
fn close_on_exec(fd: OwnedFd) -> OwnedFd {
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    fd
}

/// Takes ownership of the pre-attached client's descriptor and keeps it from the container.
///
/// # Safety
/// Call once, at the start of the monitor process, where fd 4 is the engine's socket.
pub unsafe fn attach_fd() -> OwnedFd {
    // SAFETY: the caller guarantees fd 4 is the open client socket and nothing else owns it.
    close_on_exec(unsafe { OwnedFd::from_raw_fd(ATTACH_FD) })
}
