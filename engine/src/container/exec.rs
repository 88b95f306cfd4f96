//! `strata exec`: another process in a running container, through `strata-runtime exec`, with
//! the container's own settings (capabilities, environment, user) unless told otherwise.
//!
//! With a terminal (`-t`) the runtime sends the process's pty master to a console socket of
//! ours; otherwise the process inherits the runtime's pipes. Input (`-i`), window sizes and the
//! detach keys come from the RPC's input stream. When the runtime cannot start the command, the
//! stream ends with an error: NotFound for a missing program (the CLI exits 127), another code
//! for one that cannot be run (126).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata_proto::engine::{exec_output::Kind, ExecOutput};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

use super::attach::{parse_detach_keys, AttachError, DetachScanner, Input};
use super::record::{Record, Settings, Status};
use super::{user, ContainerError, Containers};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub detach: bool,
    /// Give it a terminal.
    pub tty: bool,
    /// Feed its stdin from the input stream.
    pub interactive: bool,
    /// The terminal's first size (rows, columns).
    pub size: Option<(u16, u16)>,
    pub detach_keys: String,
    /// Every capability, as a privileged container has.
    pub privileged: bool,
    /// Killed after this long (a health check's probe).
    pub timeout: Option<Duration>,
}

type Tx = mpsc::Sender<Result<ExecOutput, tonic::Status>>;

fn find_runtime() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("strata-runtime")));
    beside.filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join("strata-runtime"))
            .find(|p| p.is_file())
    })
}

fn out(kind: Kind) -> Result<ExecOutput, tonic::Status> {
    Ok(ExecOutput { kind: Some(kind) })
}

/// A pty master for async reads and writes.
struct Pty(AsyncFd<OwnedFd>);

impl Pty {
    fn new(master: OwnedFd) -> std::io::Result<Pty> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the AsyncFd owns the master, which stays open and the same for its whole
        // life.
        Ok(Pty(unsafe { AsyncFd::register(master) }?))
    }

    /// Reads what is there; 0 once the process side is gone (EIO).
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut g = self.0.readable().await?;
            match g.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(Into::into)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut g = self.0.writable().await?;
            match g.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, rows: u16, cols: u16) {
        if let Err(e) = strata_runtime::tty::set_size(self.0.get_ref().as_raw_fd(), rows, cols) {
            tracing::debug!(%e, "resizing an exec's terminal failed");
        }
    }
}

/// Reads a chunk from an optional pipe (never ready when there is none).
async fn read_opt(
    r: &mut Option<impl AsyncRead + Unpin>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// What the input task tells the output side.
enum Signal {
    Detached,
}

/// The runtime's message when it could not start the command, and the exit code for it.
fn start_failure(stderr: &[u8]) -> (String, i32) {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("strata-runtime exec failed");
    let msg = line
        .trim()
        .trim_start_matches("strata-runtime: ")
        .trim_start_matches("container init failed: ")
        .trim_start_matches("exec: ")
        .to_string();
    let code = super::command_failure_code(&msg).unwrap_or(126);
    (msg, code)
}

impl Containers {
    fn exec_event(&self, rec: &Record, action: &str, exec_id: &str, code: Option<i32>) {
        let labels = rec.settings.labels.iter().map(|l| match l.split_once('=') {
            Some((k, v)) => (k, v.to_string()),
            None => (l.as_str(), String::new()),
        });
        let attrs = [
            ("name", rec.name.clone()),
            ("image", rec.image_ref.clone()),
            ("execID", exec_id.to_string()),
        ];
        let code = code.map(|c| ("exitCode", c.to_string()));
        self.events.emit(
            "container",
            action,
            &rec.id,
            attrs.into_iter().chain(code).chain(labels),
        );
    }

    /// The process description: the container's, with the exec's command and overrides.
    fn exec_process(&self, rec: &Record, spec: &ExecSpec) -> Result<Value, AttachError> {
        let bundle = self.bundle(&rec.id);
        let config: Value = std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ContainerError::Runtime(format!("read the spec of container {}", rec.name))
            })?;
        let mut process = config["process"].clone();
        process["args"] = serde_json::json!(spec.cmd);
        process["terminal"] = Value::Bool(spec.tty);
        let mut env: Vec<String> = process["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        for e in &spec.env {
            let key = e.split('=').next().unwrap_or_default();
            if key.is_empty() {
                return Err(ContainerError::Spec(super::spec::SpecError::Env(e.clone())).into());
            }
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if spec.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process["env"] = serde_json::json!(env);
        if !spec.working_dir.is_empty() {
            process["cwd"] = Value::String(spec.working_dir.clone());
        }
        if !spec.user.is_empty() {
            let u = user::resolve(&spec.user, &bundle.join("rootfs")).map_err(|message| {
                AttachError::Invalid(format!("exec in container {}: {message}", rec.name))
            })?;
            process["user"] = serde_json::json!({ "uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids });
        }
        if spec.privileged {
            let all = super::spec::capabilities(&Settings {
                privileged: true,
                ..Default::default()
            })
            .map_err(ContainerError::Spec)?;
            process["capabilities"] =
                serde_json::json!({ "bounding": all, "effective": all, "permitted": all });
        }
        Ok(process)
    }

    /// Starts `spec` in the container; output and the exit code go to `tx`, `input` feeds its
    /// stdin and window size.
    pub async fn exec<S>(
        self: &Arc<Self>,
        query: &str,
        spec: ExecSpec,
        input: S,
        tx: Tx,
    ) -> Result<(), AttachError>
    where
        S: Stream<Item = Input> + Unpin + Send + 'static,
    {
        let keys = parse_detach_keys(&spec.detach_keys)?;
        let rec = self.resolve(query)?;
        if rec.state.status != Status::Running {
            let hint = if rec.state.status == Status::Paused {
                "unpause it first"
            } else {
                "start it first"
            };
            return Err(ContainerError::State {
                name: rec.name,
                status: rec.state.status.as_str(),
                hint,
            }
            .into());
        }
        if spec.cmd.is_empty() {
            return Err(AttachError::Invalid("exec: a command is required".into()));
        }
        let process = self.exec_process(&rec, &spec)?;
        // Beside the runtime's state: a short path, for the console socket.
        let base = self.runtime_root.parent().unwrap_or(&self.runtime_root);
        let dir = tempfile::Builder::new()
            .prefix("exec-")
            .tempdir_in(base)
            .map_err(|source| ContainerError::Io {
                op: "create a temporary directory in",
                path: base.to_path_buf(),
                source,
            })?;
        let process_file = dir.path().join("process.json");
        std::fs::write(
            &process_file,
            serde_json::to_vec(&process).unwrap_or_default(),
        )
        .map_err(|source| ContainerError::Io {
            op: "write",
            path: process_file.clone(),
            source,
        })?;
        let pid_file = dir.path().join("pid");
        let console_path = dir.path().join("console.sock");
        let console = if spec.tty {
            Some(
                tokio::net::UnixListener::bind(&console_path).map_err(|source| {
                    ContainerError::Io {
                        op: "bind",
                        path: console_path.clone(),
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        let runtime = find_runtime().ok_or_else(|| {
            ContainerError::Runtime(
                "strata-runtime is not installed next to stratad or on PATH".into(),
            )
        })?;
        let mut cmd = tokio::process::Command::new(runtime);
        cmd.arg("--root")
            .arg(&self.runtime_root)
            .arg("exec")
            .arg("--process")
            .arg(&process_file)
            .arg("--pid-file")
            .arg(&pid_file);
        if spec.tty {
            cmd.arg("--tty").arg("--console-socket").arg(&console_path);
        }
        if spec.detach {
            cmd.arg("--detach");
        }
        let piped_in = spec.interactive && !spec.tty && !spec.detach;
        let piped_out = !spec.tty && !spec.detach;
        cmd.arg(&rec.id)
            .stdin(if piped_in {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if piped_out {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        let exec_id = hex::encode(rand::random::<[u8; 32]>());
        let what = spec.cmd.join(" ");
        self.exec_event(&rec, &format!("exec_create: {what}"), &exec_id, None);
        let mut child = cmd
            .spawn()
            .map_err(|e| ContainerError::Runtime(format!("run strata-runtime exec: {e}")))?;
        self.exec_event(&rec, &format!("exec_start: {what}"), &exec_id, None);
        let mut stderr = child.stderr.take();
        let mut runtime_err = Vec::new();
        let pty = match console {
            Some(l) => {
                let accepted = tokio::select! {
                    a = l.accept() => a.ok(),
                    _ = child.wait() => None,
                };
                let master = match accepted {
                    Some((conn, _)) => {
                        let std = conn.into_std().and_then(|c| {
                            c.set_nonblocking(false)?;
                            c.set_read_timeout(Some(Duration::from_secs(30)))?;
                            Ok(c)
                        });
                        std.ok()
                            .and_then(|c| strata_runtime::tty::recv_fd(c.as_raw_fd()).ok())
                    }
                    None => None,
                };
                match master.map(Pty::new) {
                    Some(Ok(p)) => Some(Arc::new(p)),
                    _ => {
                        let _ = child.kill().await;
                        if let Some(e) = stderr.as_mut() {
                            let _ = e.read_to_end(&mut runtime_err).await;
                        }
                        let (msg, code) = start_failure(&runtime_err);
                        self.exec_event(&rec, "exec_die", &exec_id, Some(code));
                        return Err(AttachError::Invalid(format!(
                            "exec in container {}: {msg}",
                            rec.name
                        )));
                    }
                }
            }
            None => None,
        };
        if let (Some(p), Some((rows, cols))) = (&pty, spec.size) {
            p.resize(rows, cols);
        }
        let me = self.clone();
        let ctx = Running {
            rec,
            exec_id,
            pid_file,
            detach: spec.detach,
            deadline: spec.timeout.map(|t| tokio::time::Instant::now() + t),
            _dir: dir,
        };
        let stdin = child.stdin.take();
        let scanner = (spec.interactive && !spec.detach).then(|| DetachScanner::new(keys));
        let (sig_tx, sig_rx) = mpsc::channel(1);
        if !spec.detach {
            tokio::spawn(feed_input(input, stdin, pty.clone(), scanner, sig_tx));
        }
        tokio::spawn(async move {
            me.finish_exec(ctx, child, stderr, pty, sig_rx, tx).await;
        });
        Ok(())
    }

    /// Copies the output until the process ends, then reports how it ended.
    async fn finish_exec(
        &self,
        ctx: Running,
        mut child: tokio::process::Child,
        mut stderr: Option<tokio::process::ChildStderr>,
        pty: Option<Arc<Pty>>,
        mut signals: mpsc::Receiver<Signal>,
        tx: Tx,
    ) {
        let mut stdout = child.stdout.take();
        let tty = pty.is_some();
        // Output goes to the client while `live`; `tx` is dropped once the client detached.
        let mut tx = Some(tx);
        let mut live = !ctx.detach;
        let mut status = None;
        // The runtime's own messages come first on stderr: without a terminal they share it
        // with the process, so stderr is held until the process is known to run.
        let mut held = Vec::new();
        let mut started = false;
        let mut pty_open = pty.is_some() && !ctx.detach;
        let mut ob = vec![0u8; 32 * 1024];
        let mut eb = vec![0u8; 32 * 1024];
        let mut pb = vec![0u8; 32 * 1024];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut deadline = ctx.deadline;
        loop {
            let ran = ctx.pid_file.exists();
            if status.is_some() && (stdout.is_none() && stderr.is_none() && !pty_open)
                || (ctx.detach && status.is_some() && ran)
            {
                break;
            }
            let chunk = tokio::select! {
                s = child.wait(), if status.is_none() => {
                    status = Some(s);
                    None
                }
                n = read_opt(&mut stdout, &mut ob) => match n {
                    Ok(n) if n > 0 => Some(Kind::Stdout(ob[..n].to_vec())),
                    _ => { stdout = None; None }
                },
                n = read_opt(&mut stderr, &mut eb) => match n {
                    Ok(n) if n > 0 => {
                        held.extend_from_slice(&eb[..n]);
                        started = started || (!tty && ran);
                        started.then(|| Kind::Stderr(std::mem::take(&mut held)))
                    }
                    _ => { stderr = None; None }
                },
                n = async { match &pty { Some(p) => p.read(&mut pb).await, None => std::future::pending().await } }, if pty_open => match n {
                    Ok(n) if n > 0 => Some(Kind::Stdout(pb[..n].to_vec())),
                    _ => { pty_open = false; None }
                },
                // A process that left children holding its terminal: once it has exited, what
                // they write is not waited for.
                _ = tokio::time::sleep(Duration::from_millis(100)), if status.is_some() && pty_open => {
                    pty_open = false;
                    None
                }
                _ = tick.tick(), if !started && !held.is_empty() && !tty => {
                    started = ran;
                    started.then(|| Kind::Stderr(std::mem::take(&mut held)))
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() && status.is_none() => {
                    deadline = None;
                    let pid = std::fs::read_to_string(&ctx.pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok());
                    if let Some(pid) = pid.filter(|p| *p > 0) {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
                    None
                }
                Some(Signal::Detached) = signals.recv(), if tx.is_some() => {
                    self.exec_event(&ctx.rec, "exec_detach", &ctx.exec_id, None);
                    if let Some(t) = tx.take() {
                        let _ = t.send(out(Kind::Detached(true))).await;
                    }
                    live = false;
                    None
                }
            };
            if let (Some(kind), true, Some(t)) = (chunk, live, &tx) {
                live = t.send(out(kind)).await.is_ok();
            }
        }
        if ctx.detach {
            // Drain what the detached process writes: its terminal, or the runtime's stderr
            // it inherited.
            let (p, e) = (pty.clone(), stderr.take());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                if let Some(p) = p {
                    while matches!(p.read(&mut buf).await, Ok(n) if n > 0) {}
                }
                if let Some(mut e) = e {
                    while matches!(e.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
        let code = match status {
            Some(Ok(s)) => s.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
            }),
            _ => 255,
        };
        if code != 0 && !ctx.pid_file.exists() {
            // The runtime itself failed: the command never ran.
            let (msg, code) = start_failure(&held);
            self.exec_event(&ctx.rec, "exec_die", &ctx.exec_id, Some(code));
            let message = format!("exec in container {}: {msg}", ctx.rec.name);
            let status = if code == 127 {
                tonic::Status::not_found(message)
            } else {
                tonic::Status::failed_precondition(message)
            };
            if let Some(t) = tx {
                let _ = t.send(Err(status)).await;
            }
            return;
        }
        if let (false, false, true, Some(t)) = (held.is_empty(), tty, live, &tx) {
            let _ = t.send(out(Kind::Stderr(std::mem::take(&mut held)))).await;
        }
        if ctx.detach {
            // `--detach` returned once the process ran; its end is not ours to see.
            if let Some(t) = tx {
                let _ = t.send(out(Kind::ExitCode(0))).await;
            }
            return;
        }
        self.exec_event(&ctx.rec, "exec_die", &ctx.exec_id, Some(code));
        if let Some(t) = tx {
            let _ = t.send(out(Kind::ExitCode(code))).await;
        }
    }
}

/// A started exec, as its output side needs it.
struct Running {
    rec: Record,
    exec_id: String,
    pid_file: PathBuf,
    detach: bool,
    /// When the process is killed, if it still runs.
    deadline: Option<tokio::time::Instant>,
    /// The process description, pid file and console socket (removed when dropped).
    _dir: tempfile::TempDir,
}

/// Feeds the client's input to the process: stdin (through the detach scanner) and window
/// sizes. Detaching stops the input; the process goes on.
async fn feed_input<S>(
    mut input: S,
    mut stdin: Option<tokio::process::ChildStdin>,
    pty: Option<Arc<Pty>>,
    mut scanner: Option<DetachScanner>,
    signals: mpsc::Sender<Signal>,
) where
    S: Stream<Item = Input> + Unpin,
{
    while let Some(m) = input.next().await {
        match m {
            Input::Stdin(d) => {
                let Some(sc) = scanner.as_mut() else { continue };
                let (data, detach) = sc.feed(&d);
                let written = match (&pty, stdin.as_mut()) {
                    _ if data.is_empty() => Ok(()),
                    (Some(p), _) => p.write_all(&data).await,
                    (None, Some(s)) => s.write_all(&data).await,
                    (None, None) => Ok(()),
                };
                if written.is_err() {
                    stdin = None;
                }
                if detach {
                    let _ = signals.send(Signal::Detached).await;
                    return;
                }
            }
            Input::StdinClose => stdin = None,
            Input::Resize(rows, cols) => {
                if let Some(p) = &pty {
                    p.resize(rows, cols);
                }
            }
        }
    }
}
