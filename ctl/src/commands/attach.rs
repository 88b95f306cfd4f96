//! `strata attach [--no-stdin] [--detach-keys K] [--sig-proxy] CONTAINER`, and the
//! interactive session `run -i/-t`, `start -a` and `exec -i/-t` share: stdin (raw when it is a
//! terminal and the container has one), window sizes, signals passed on, output to stdout
//! and stderr, and the exit code (or 0 after the detach keys).

use std::io::Write;

use strata_proto::engine::{
    attach_input, attach_output, AttachInput, AttachRequest, InspectContainerRequest,
    KillContainerRequest, WindowSize,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::{Client, CmdResult, Failure};
use crate::tty::{self, RawMode, StdinEvent};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not attach stdin
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Keys that detach from the container (default ctrl-p,ctrl-q)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Pass the signals this command receives on to the container (not with a terminal)
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_name = "BOOL")]
    pub sig_proxy: bool,
    pub container: String,
}

/// What goes up a session's stream.
#[derive(Debug)]
pub enum Up {
    Stdin(Vec<u8>),
    StdinClose,
    Resize(u16, u16),
}

/// What comes down.
#[derive(Debug)]
pub enum Down {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
    Detached,
}

/// How a session is wired to this process.
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    /// Send stdin (and its end).
    pub stdin: bool,
    /// The process has a terminal: raw mode on a terminal stdin, window sizes.
    pub tty: bool,
    /// Pass INT, TERM, HUP, QUIT, USR1 and USR2 on to this container.
    pub proxy_to: Option<String>,
}

/// The signals a session listens for: passed on (sig-proxy), or, with a terminal in raw
/// mode, ending the session so that the terminal is restored.
pub fn signals(w: &Wiring) -> mpsc::Receiver<(i32, &'static str)> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::channel(8);
    if w.proxy_to.is_none() && !w.tty {
        return rx;
    }
    let set: &[(i32, &str)] = &[
        (libc::SIGINT, "INT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGQUIT, "QUIT"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
    ];
    for &(no, name) in set {
        if w.proxy_to.is_none() && matches!(no, libc::SIGUSR1 | libc::SIGUSR2) {
            continue;
        }
        let Ok(mut s) = signal(SignalKind::from_raw(no)) else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send((no, name)).await.is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// Sends stdin up the stream, as `wrap` makes the messages.
pub fn forward_stdin<U: Send + 'static>(tx: mpsc::Sender<U>, wrap: fn(Up) -> U) {
    let mut events = tty::read_stdin();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let (m, last) = match ev {
                StdinEvent::Data(d) => (Up::Stdin(d), false),
                StdinEvent::Closed => (Up::StdinClose, true),
            };
            if tx.send(wrap(m)).await.is_err() || last {
                return;
            }
        }
    });
}

/// Runs an open session until the exit code (or a detach); `tx` carries input up, `rx`
/// brings output down.
pub async fn pump<U, D>(
    client: &Client,
    w: &Wiring,
    tx: mpsc::Sender<U>,
    wrap: fn(Up) -> U,
    mut rx: tonic::Streaming<D>,
    unwrap: fn(D) -> Option<Down>,
) -> Result<i32, tonic::Status>
where
    U: Send + 'static,
{
    use tokio::signal::unix::{signal, SignalKind};
    let mut winch = if w.tty {
        signal(SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut sigs = signals(w);
    loop {
        tokio::select! {
            m = rx.message() => match m?.map(unwrap) {
                Some(Some(Down::Stdout(b))) => {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(&b);
                    let _ = o.flush();
                }
                Some(Some(Down::Stderr(b))) => {
                    let _ = std::io::stderr().lock().write_all(&b);
                }
                Some(Some(Down::Exit(c))) => return Ok(c),
                Some(Some(Down::Detached)) => return Ok(0),
                Some(None) => {}
                None => {
                    return Err(tonic::Status::unknown(
                        "the engine ended the stream without an exit code",
                    ))
                }
            },
            Some(()) = async { match winch.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                if let Some((rows, cols)) = tty::size() {
                    let _ = tx.send(wrap(Up::Resize(rows, cols))).await;
                }
            }
            Some((no, name)) = sigs.recv() => match &w.proxy_to {
                Some(c) => {
                    let req = KillContainerRequest { container: c.clone(), signal: name.into() };
                    if let Err(s) = client.containers().kill(req).await {
                        eprintln!("strata: pass SIG{name} on: {}", s.message());
                    }
                }
                // A terminal in raw mode is restored on the way out.
                None => return Ok(128 + no),
            },
        }
    }
}

/// How an attach ended badly.
#[derive(Debug)]
pub enum SessionError {
    /// The engine refused the attach (or the start): nothing ran.
    Open(tonic::Status),
    /// The stream broke.
    Stream(tonic::Status),
}

impl From<SessionError> for Failure {
    fn from(e: SessionError) -> Failure {
        match e {
            SessionError::Open(s) | SessionError::Stream(s) => Failure::from(s),
        }
    }
}

/// An `Attach` call: what to attach and how.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub container: String,
    pub wiring: Wiring,
    pub start: bool,
    pub detach_keys: String,
    pub wait_removed: bool,
}

fn up_attach(u: Up) -> AttachInput {
    let kind = match u {
        Up::Stdin(d) => attach_input::Kind::Stdin(d),
        Up::StdinClose => attach_input::Kind::StdinClose(true),
        Up::Resize(rows, cols) => attach_input::Kind::Resize(WindowSize {
            rows: rows.into(),
            cols: cols.into(),
        }),
    };
    AttachInput { kind: Some(kind) }
}

fn down_attach(o: strata_proto::engine::AttachOutput) -> Option<Down> {
    Some(match o.kind? {
        attach_output::Kind::Stdout(b) => Down::Stdout(b),
        attach_output::Kind::Stderr(b) => Down::Stderr(b),
        attach_output::Kind::ExitCode(c) => Down::Exit(c),
        attach_output::Kind::Detached(_) => Down::Detached,
    })
}

/// The first window size to send, with a terminal.
pub fn first_size(tty: bool) -> Option<WindowSize> {
    tty.then(tty::size).flatten().map(|(r, c)| WindowSize {
        rows: r.into(),
        cols: c.into(),
    })
}

/// Attaches (starting the container first with `start`) and runs the session.
pub async fn session(client: &Client, s: Session) -> Result<i32, SessionError> {
    let _raw = if s.wiring.tty && s.wiring.stdin {
        RawMode::enable().map_err(|e| {
            SessionError::Open(tonic::Status::internal(format!(
                "put the terminal in raw mode: {e}"
            )))
        })?
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(32);
    let open = AttachRequest {
        container: s.container.clone(),
        stdin: s.wiring.stdin,
        stdout: true,
        stderr: true,
        start: s.start,
        detach_keys: s.detach_keys.clone(),
        size: first_size(s.wiring.tty),
        wait_removed: s.wait_removed,
    };
    let _ = tx
        .send(AttachInput {
            kind: Some(attach_input::Kind::Open(open)),
        })
        .await;
    if s.wiring.stdin {
        forward_stdin(tx.clone(), up_attach);
    }
    let out = client
        .containers()
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(SessionError::Open)?
        .into_inner();
    pump(client, &s.wiring, tx, up_attach, out, down_attach)
        .await
        .map_err(SessionError::Stream)
}

/// As Docker: typing into a terminal needs one on stdin.
pub fn check_tty(stdin: bool, tty: bool) -> CmdResult<()> {
    if stdin && tty && !tty::stdin_is_terminal() {
        return Err(Failure::new("the input device is not a TTY"));
    }
    Ok(())
}

/// The container's terminal and stdin settings, from inspect.
pub async fn container_io(client: &Client, container: &str) -> CmdResult<(bool, bool)> {
    let doc = client
        .containers()
        .inspect(InspectContainerRequest {
            container: container.to_string(),
        })
        .await?
        .into_inner()
        .json;
    let v: serde_json::Value = serde_json::from_str(&doc)
        .map_err(|e| Failure::new(format!("inspect {container}: {e}")))?;
    let flag = |k: &str| v["Config"][k].as_bool().unwrap_or(false);
    Ok((flag("Tty"), flag("OpenStdin")))
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let (tty, open_stdin) = container_io(client, &a.container).await?;
    let stdin = open_stdin && !a.no_stdin;
    check_tty(stdin, tty)?;
    let s = Session {
        container: a.container.clone(),
        wiring: Wiring {
            stdin,
            tty,
            proxy_to: (a.sig_proxy && !tty).then(|| a.container.clone()),
        },
        start: false,
        detach_keys: a.detach_keys.unwrap_or_default(),
        wait_removed: false,
    };
    Ok(session(client, s).await?)
}
