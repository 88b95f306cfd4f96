//! Attaching to a container's stdio, which its monitor owns (see [`super::monitor`]).
//!
//! The monitor listens on `attach.sock` in the container's directory and serves any number of
//! clients with a small framed protocol: each frame is a kind byte, a big-endian `u32` length
//! and the payload. Clients send [`ToMonitor`] frames (stdin data, stdin close, window size);
//! the monitor sends [`FromMonitor`] frames (stdout and stderr data, and the exit code last).
//!
//! The engine bridges the `Attach` RPC to that socket ([`Session`]) and handles the detach keys
//! there, as Docker's daemon does. So that `run -it` and `start -a` miss nothing, a start with
//! attach hands the monitor one end of a socket pair as a client that is attached before the
//! container starts ([`preattach`], taken by the start path).

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_proto::engine::{attach_output, AttachOutput};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt};

use super::record::{Record, State, Status};
use super::{ContainerError, Containers};

/// The monitor's socket, in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// The largest frame accepted (output is sent in chunks far smaller).
const MAX_FRAME: usize = 1 << 20;

/// Attach and exec failures, each mapping to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("invalid detach keys {keys:?}: {reason}; use a character or ctrl-<a-z, @, [, \\, ], ^ or _>, comma-separated, like ctrl-p,ctrl-q")]
    DetachKeys { keys: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl From<AttachError> for tonic::Status {
    fn from(e: AttachError) -> Self {
        e.to_status()
    }
}

impl AttachError {
    /// The gRPC status for this error.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            AttachError::Container(e) => e.to_status(),
            AttachError::DetachKeys { .. } | AttachError::Invalid(_) => {
                tonic::Status::invalid_argument(self.to_string())
            }
        }
    }
}

/// Frames a client sends to the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToMonitor {
    Stdin(Vec<u8>),
    /// The container's stdin is to be closed (a pipe's write end; nothing for a terminal).
    StdinClose,
    Resize {
        rows: u16,
        cols: u16,
    },
}

/// Frames the monitor sends to its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromMonitor {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The last frame: the container's exit code.
    Exit(i32),
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl ToMonitor {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToMonitor::Stdin(d) => frame(1, d),
            ToMonitor::StdinClose => frame(2, &[]),
            ToMonitor::Resize { rows, cols } => {
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                frame(3, &p)
            }
        }
    }

    /// `None` for a kind this side does not know (ignored, for compatibility).
    pub fn decode(kind: u8, payload: Vec<u8>) -> Option<Self> {
        match (kind, payload.len()) {
            (1, _) => Some(ToMonitor::Stdin(payload)),
            (2, _) => Some(ToMonitor::StdinClose),
            (3, 4) => Some(ToMonitor::Resize {
                rows: u16::from_be_bytes([payload[0], payload[1]]),
                cols: u16::from_be_bytes([payload[2], payload[3]]),
            }),
            _ => None,
        }
    }
}

impl FromMonitor {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FromMonitor::Stdout(d) => frame(1, d),
            FromMonitor::Stderr(d) => frame(2, d),
            FromMonitor::Exit(code) => frame(3, &code.to_be_bytes()),
        }
    }

    pub fn decode(kind: u8, payload: Vec<u8>) -> Option<Self> {
        match (kind, payload.len()) {
            (1, _) => Some(FromMonitor::Stdout(payload)),
            (2, _) => Some(FromMonitor::Stderr(payload)),
            (3, 4) => Some(FromMonitor::Exit(i32::from_be_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ]))),
            _ => None,
        }
    }
}

fn header(h: [u8; 5]) -> std::io::Result<(u8, usize)> {
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes is too large"),
        ));
    }
    Ok((h[0], len))
}

/// Reads one frame; `None` at a clean end of the stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 5];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (kind, len) = header(h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// [`read_frame`] for async readers.
pub async fn read_frame_async(
    r: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 5];
    match r.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (kind, len) = header(h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((kind, payload)))
}

/// A path naming `name` in the directory `dir` refers to, short enough for `sun_path` (108
/// bytes) however long the directory's own path is.
#[derive(Debug)]
pub struct ShortPath {
    _dir: OwnedFd,
    path: PathBuf,
}

impl ShortPath {
    /// Opens `dir` (`O_PATH`); the path stays valid in this process while the value lives.
    pub fn new(dir: &Path, name: &str) -> std::io::Result<ShortPath> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()));
        Ok(ShortPath { _dir: fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Docker's detach keys: comma-separated, each a single character or `ctrl-<x>` for x in
/// `@`, a–z, `[`, `\`, `]`, `^`, `_` (control codes 0–31); "" means ctrl-p,ctrl-q.
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>, AttachError> {
    let spec = if keys.is_empty() {
        "ctrl-p,ctrl-q"
    } else {
        keys
    };
    let bad = |reason: String| AttachError::DetachKeys {
        keys: keys.to_string(),
        reason,
    };
    let mut out = Vec::new();
    for key in spec.split(',') {
        let b = key.as_bytes();
        if b.len() == 1 {
            out.push(b[0]);
            continue;
        }
        let ctrl = key
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("ctrl-"))
            .and_then(|_| key.get(5..))
            .filter(|k| k.len() == 1)
            .map(|k| k.as_bytes()[0].to_ascii_lowercase());
        match ctrl {
            Some(c @ b'a'..=b'z') => out.push(c - b'a' + 1),
            Some(b'@') => out.push(0),
            Some(c @ (b'[' | b'\\' | b']' | b'^' | b'_')) => out.push(c - b'@'),
            _ if key.is_empty() => return Err(bad("an empty key".into())),
            _ => return Err(bad(format!("unknown key {key:?}"))),
        }
    }
    Ok(out)
}

/// Finds the detach keys in a client's input, as Docker's escape proxy does: bytes that may
/// start the sequence are held back until it is complete (detach) or broken (they are sent).
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachScanner { keys, matched: 0 }
    }

    /// The bytes to pass on, and whether the sequence was completed (what follows it is
    /// dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            // The held bytes were not the sequence after all; this byte may start it again.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// A client the monitor of a starting container is to serve from the start.
#[derive(Debug)]
pub struct PreAttached {
    /// The monitor's end of the socket pair.
    pub conn: OwnedFd,
    /// The terminal's first window size.
    pub size: Option<(u16, u16)>,
}

fn pending() -> &'static Mutex<HashMap<String, PreAttached>> {
    static PENDING: std::sync::OnceLock<Mutex<HashMap<String, PreAttached>>> =
        std::sync::OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// Registers the client the next start of container `id` hands its monitor.
pub fn preattach(id: &str, p: PreAttached) {
    pending()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), p);
}

/// Takes the client registered for container `id`, if any (the start path, and the attach
/// after its start, so none is left behind).
pub fn take_preattached(id: &str) -> Option<PreAttached> {
    pending()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id)
}

/// Input from a client of the `Attach` or `Exec` RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin(Vec<u8>),
    StdinClose,
    Resize(u16, u16),
}

/// The input messages of an `Attach` call after its first (an error ends them).
pub fn attach_input(
    s: tonic::Streaming<strata_proto::engine::AttachInput>,
) -> impl Stream<Item = Input> + Unpin + Send {
    use strata_proto::engine::attach_input::Kind;
    s.map_while(Result::ok).filter_map(|m| match m.kind? {
        Kind::Stdin(d) => Some(Input::Stdin(d)),
        Kind::StdinClose(_) => Some(Input::StdinClose),
        Kind::Resize(w) => window_size(Some(&w)).map(|(r, c)| Input::Resize(r, c)),
        Kind::Open(_) => None,
    })
}

/// The input messages of an `Exec` call after its first.
pub fn exec_input(
    s: tonic::Streaming<strata_proto::engine::ExecInput>,
) -> impl Stream<Item = Input> + Unpin + Send {
    use strata_proto::engine::exec_input::Kind;
    s.map_while(Result::ok).filter_map(|m| match m.kind? {
        Kind::Stdin(d) => Some(Input::Stdin(d)),
        Kind::StdinClose(_) => Some(Input::StdinClose),
        Kind::Resize(w) => window_size(Some(&w)).map(|(r, c)| Input::Resize(r, c)),
        Kind::Start(_) => None,
    })
}

/// What an attach asks for (the `AttachRequest`).
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Start the container, attached from its first byte.
    pub start: bool,
    pub detach_keys: String,
    pub size: Option<(u16, u16)>,
    /// The exit code comes once the container has been removed (`run --rm`).
    pub wait_removed: bool,
}

/// A window size from the API (`None` when unset or zero).
pub fn window_size(s: Option<&strata_proto::engine::WindowSize>) -> Option<(u16, u16)> {
    s.filter(|s| s.rows > 0 && s.cols > 0).map(|s| {
        (
            s.rows.min(u16::MAX as u32) as u16,
            s.cols.min(u16::MAX as u32) as u16,
        )
    })
}

/// An open attachment, ready to be bridged.
#[derive(Debug)]
pub struct Session {
    containers: Arc<Containers>,
    rec: Record,
    conn: tokio::net::UnixStream,
    scanner: DetachScanner,
    opts: AttachOptions,
    state: watch::Receiver<State>,
}

fn not_running(rec: &Record, status: Status) -> ContainerError {
    ContainerError::State {
        name: rec.name.clone(),
        status: status.as_str(),
        hint: if status == Status::Paused {
            "unpause it first"
        } else {
            "start it first"
        },
    }
}

/// Connects to the monitor of a running container.
pub async fn connect(bundle: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let p = ShortPath::new(bundle, SOCKET)?;
    tokio::net::UnixStream::connect(p.path()).await
}

impl Containers {
    /// Attaches to a container (starting it first when asked); the session then bridges it.
    pub async fn attach(
        self: &Arc<Self>,
        query: &str,
        mut opts: AttachOptions,
    ) -> Result<Session, AttachError> {
        let keys = parse_detach_keys(&opts.detach_keys)?;
        let rec = self.resolve(query)?;
        let state = self.subscribe(&rec);
        opts.stdin &= rec.settings.open_stdin;
        let conn = if opts.start && !matches!(rec.state.status, Status::Running | Status::Paused) {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| ContainerError::Runtime(format!("socketpair: {e}")))?;
            preattach(
                &rec.id,
                PreAttached {
                    conn: theirs.into(),
                    size: opts.size,
                },
            );
            self.emit(&rec, "attach");
            let started = self.start(&rec.id).await;
            take_preattached(&rec.id);
            started?;
            ours.set_nonblocking(true)
                .and_then(|_| tokio::net::UnixStream::from_std(ours))
                .map_err(|e| ContainerError::Runtime(format!("attach: {e}")))?
        } else {
            if rec.state.status != Status::Running {
                return Err(not_running(&rec, rec.state.status).into());
            }
            let mut conn = connect(&self.bundle(&rec.id)).await.map_err(|e| {
                let now = self
                    .records
                    .get(&rec.id)
                    .ok()
                    .flatten()
                    .map_or(Status::Dead, |r| r.state.status);
                // The monitor records the exit before it stops answering.
                let ended = super::monitor::read_exit(&self.bundle(&rec.id)).is_some();
                if now == Status::Running && !ended {
                    ContainerError::Runtime(format!(
                        "attach to container {}: its monitor does not answer: {e}",
                        rec.name
                    ))
                } else {
                    not_running(&rec, if ended { Status::Exited } else { now })
                }
            })?;
            self.emit(&rec, "attach");
            if let Some((rows, cols)) = opts.size {
                let f = ToMonitor::Resize { rows, cols }.encode();
                conn.write_all(&f)
                    .await
                    .map_err(|e| ContainerError::Runtime(format!("attach: {e}")))?;
            }
            conn
        };
        Ok(Session {
            containers: self.clone(),
            rec,
            conn,
            scanner: DetachScanner::new(keys),
            opts,
            state,
        })
    }
}

/// How the monitor's side of a session ended.
enum Ended {
    Exit(i32),
    MonitorGone,
    ClientGone,
}

/// Waits until the container's exit is recorded (and, with `removed`, until it is removed);
/// returns its exit code.
pub async fn settle(
    containers: &Containers,
    id: &str,
    mut state: watch::Receiver<State>,
    removed: bool,
    fallback: i32,
) -> i32 {
    let mut code = None;
    loop {
        let st = state.borrow_and_update().clone();
        match st.status {
            Status::Running | Status::Paused => {}
            Status::Dead => return st.exit_code,
            // Exited (or waiting for its restart policy): this run is over.
            _ => {
                if !removed {
                    return st.exit_code;
                }
                code = Some(st.exit_code);
            }
        }
        if removed && containers.records.get(id).ok().flatten().is_none() {
            return code.unwrap_or(fallback);
        }
        if state.changed().await.is_err() {
            return code.unwrap_or(fallback);
        }
    }
}

fn output(kind: attach_output::Kind) -> Result<AttachOutput, tonic::Status> {
    Ok(AttachOutput { kind: Some(kind) })
}

impl Session {
    /// Bridges the client's input and the monitor's output until the container exits (the
    /// last message is its exit code), the client detaches (`detached`) or goes away.
    pub async fn run<S>(self, mut input: S, tx: mpsc::Sender<Result<AttachOutput, tonic::Status>>)
    where
        S: Stream<Item = Input> + Unpin + Send,
    {
        let Session {
            containers,
            rec,
            conn,
            mut scanner,
            opts,
            state,
        } = self;
        let (mut rd, mut wr) = conn.into_split();
        let out = tx.clone();
        let (want_out, want_err) = (opts.stdout, opts.stderr);
        // Output has a task of its own, so that a client's input blocked on a full pipe never
        // holds the container's output back.
        let mut reader = tokio::spawn(async move {
            loop {
                let (kind, payload) = match read_frame_async(&mut rd).await {
                    Ok(Some(f)) => f,
                    _ => return Ended::MonitorGone,
                };
                let msg = match FromMonitor::decode(kind, payload) {
                    Some(FromMonitor::Stdout(d)) if want_out => attach_output::Kind::Stdout(d),
                    Some(FromMonitor::Stderr(d)) if want_err => attach_output::Kind::Stderr(d),
                    Some(FromMonitor::Exit(code)) => return Ended::Exit(code),
                    _ => continue,
                };
                if out.send(output(msg)).await.is_err() {
                    return Ended::ClientGone;
                }
            }
        });
        let mut stdin_open = opts.stdin;
        let mut input_open = true;
        let ended = loop {
            tokio::select! {
                r = &mut reader => break r.unwrap_or(Ended::MonitorGone),
                m = input.next(), if input_open => {
                    let frame = match m {
                        Some(Input::Stdin(d)) if stdin_open => {
                            let (data, detach) = scanner.feed(&d);
                            if detach {
                                reader.abort();
                                containers.emit(&rec, "detach");
                                let _ = tx.send(output(attach_output::Kind::Detached(true))).await;
                                return;
                            }
                            (!data.is_empty()).then_some(ToMonitor::Stdin(data))
                        }
                        Some(Input::Stdin(_)) => None,
                        Some(Input::Resize(rows, cols)) => Some(ToMonitor::Resize { rows, cols }),
                        Some(Input::StdinClose) | None => {
                            input_open &= m.is_some();
                            let close = stdin_open && rec.settings.stdin_once;
                            stdin_open = false;
                            close.then_some(ToMonitor::StdinClose)
                        }
                    };
                    if let Some(f) = frame {
                        if let Err(e) = wr.write_all(&f.encode()).await {
                            tracing::debug!(%e, id = rec.id, "writing to the monitor failed");
                        }
                    }
                }
                _ = tx.closed() => {
                    // The client went away: with StdinOnce its stdin ends with it.
                    reader.abort();
                    if stdin_open && rec.settings.stdin_once {
                        let _ = wr.write_all(&ToMonitor::StdinClose.encode()).await;
                    }
                    return;
                }
            }
        };
        if matches!(ended, Ended::ClientGone) && stdin_open && rec.settings.stdin_once {
            let _ = wr.write_all(&ToMonitor::StdinClose.encode()).await;
        }
        drop(wr);
        let fallback = match ended {
            Ended::ClientGone => return,
            Ended::Exit(code) => code,
            Ended::MonitorGone => 255,
        };
        let code = settle(&containers, &rec.id, state, opts.wait_removed, fallback).await;
        let _ = tx.send(output(attach_output::Kind::ExitCode(code))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(parse_detach_keys("").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a").unwrap(), vec![b'a']);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@").unwrap(), vec![0]);
        assert_eq!(parse_detach_keys("ctrl-[").unwrap(), vec![27]);
        assert_eq!(parse_detach_keys("ctrl-\\,ctrl-]").unwrap(), vec![28, 29]);
        assert_eq!(parse_detach_keys("ctrl-^,ctrl-_").unwrap(), vec![30, 31]);
        assert_eq!(parse_detach_keys("CTRL-Z").unwrap(), vec![26]);
        for bad in ["ctrl-1", "ctrl-", "foo", "a,,b", "ctrl-pq"] {
            let e = parse_detach_keys(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid detach keys"), "{bad}: {e}");
        }
    }

    #[test]
    fn scanner_holds_a_prefix_and_detaches_on_the_sequence() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(&[16]), (vec![], false));
        assert_eq!(s.feed(b"x"), (vec![16, b'x'], false));
        assert_eq!(s.feed(&[b'y', 16]), (vec![b'y'], false));
        assert_eq!(s.feed(&[17, b'z']), (vec![], true));
        // A repeated first key keeps the sequence open.
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(&[16, 16, 17]), (vec![16], true));
        let mut s = DetachScanner::new(vec![b'q']);
        assert_eq!(s.feed(b"abqc"), (b"ab".to_vec(), true));
    }

    #[test]
    fn frames_round_trip() {
        for f in [
            ToMonitor::Stdin(b"hi".to_vec()),
            ToMonitor::StdinClose,
            ToMonitor::Resize {
                rows: 40,
                cols: 120,
            },
        ] {
            let bytes = f.encode();
            let (k, p) = read_frame(&mut &bytes[..]).unwrap().unwrap();
            assert_eq!(ToMonitor::decode(k, p), Some(f));
        }
        for f in [
            FromMonitor::Stdout(b"out".to_vec()),
            FromMonitor::Stderr(vec![]),
            FromMonitor::Exit(-3),
        ] {
            let bytes = f.encode();
            let (k, p) = read_frame(&mut &bytes[..]).unwrap().unwrap();
            assert_eq!(FromMonitor::decode(k, p), Some(f));
        }
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        let huge = [1u8, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &huge[..]).is_err());
    }
}
