//! `strata exec [-d] [-i] [-t] [-e] [-w] [-u] [--privileged] [--detach-keys K] CONTAINER
//! COMMAND...`: exits with the command's code (126 when it cannot be run, 127 when it is not
//! found).

use strata_proto::engine::{exec_input, exec_output::Kind, ExecInput, ExecOutput, ExecRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::attach::{self, Down, Up, Wiring};
use crate::client::{Client, CmdResult, Failure};
use crate::tty::RawMode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start the command and return at once
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open and feed it to the command
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User name or uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Give the command every capability
    #[arg(long)]
    pub privileged: bool,
    /// Keys that detach from the command (default ctrl-p,ctrl-q)
    #[arg(
        long = "detach-keys",
        value_name = "KEYS",
        conflicts_with = "detach",
        requires = "interactive"
    )]
    pub detach_keys: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn up(u: Up) -> ExecInput {
    let kind = match u {
        Up::Stdin(d) => exec_input::Kind::Stdin(d),
        Up::StdinClose => exec_input::Kind::StdinClose(true),
        Up::Resize(rows, cols) => exec_input::Kind::Resize(strata_proto::engine::WindowSize {
            rows: rows.into(),
            cols: cols.into(),
        }),
    };
    ExecInput { kind: Some(kind) }
}

fn down(o: ExecOutput) -> Option<Down> {
    Some(match o.kind? {
        Kind::Stdout(b) => Down::Stdout(b),
        Kind::Stderr(b) => Down::Stderr(b),
        Kind::ExitCode(c) => Down::Exit(c),
        Kind::Detached(_) => Down::Detached,
    })
}

/// The exit code when the engine could not run the command: 127 for a program that is not
/// there, else 126.
fn code_of(s: &tonic::Status) -> i32 {
    if s.code() == tonic::Code::NotFound {
        127
    } else {
        126
    }
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let stdin = a.interactive && !a.detach;
    attach::check_tty(stdin, a.tty && !a.detach)?;
    let env = a
        .env
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    let req = ExecRequest {
        container: a.container,
        cmd: a.command,
        env,
        working_dir: a.workdir.unwrap_or_default(),
        user: a.user.unwrap_or_default(),
        detach: a.detach,
        tty: a.tty,
        interactive: a.interactive,
        size: attach::first_size(a.tty),
        detach_keys: a.detach_keys.unwrap_or_default(),
        privileged: a.privileged,
    };
    let wiring = Wiring {
        stdin,
        tty: a.tty && !a.detach,
        proxy_to: None,
    };
    let _raw = if wiring.tty && stdin {
        RawMode::enable().map_err(|e| Failure::new(format!("put the terminal in raw mode: {e}")))?
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(32);
    let _ = tx
        .send(ExecInput {
            kind: Some(exec_input::Kind::Start(req)),
        })
        .await;
    if stdin {
        attach::forward_stdin(tx.clone(), up);
    }
    let out = client
        .containers()
        .exec(ReceiverStream::new(rx))
        .await
        // The engine refused (no such container, not running, bad flags): 1, as Docker's CLI.
        .map_err(Failure::from)?
        .into_inner();
    attach::pump(client, &wiring, tx, up, out, down)
        .await
        .map_err(|s| {
            let code = code_of(&s);
            Failure::from(s).with_code(code)
        })
}
