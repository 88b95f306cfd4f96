//! `strata exec [-d] [-e] [-w] [-u] CONTAINER COMMAND...`: exits with the command's code.

use std::io::Write;

use strata_proto::engine::{exec_input, exec_output::Kind, ExecInput, ExecRequest};

use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start the command and return at once
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User name or uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
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
        ..Default::default()
    };
    let first = ExecInput {
        kind: Some(exec_input::Kind::Start(req)),
    };
    let mut s = client
        .containers()
        .exec(tokio_stream::once(first))
        .await
        .map_err(|s| Failure::from(s).with_code(126))?
        .into_inner();
    while let Some(m) = s.message().await? {
        match m.kind {
            Some(Kind::Stdout(b)) => {
                let mut o = std::io::stdout().lock();
                o.write_all(&b)?;
                o.flush()?;
            }
            Some(Kind::Stderr(b)) => std::io::stderr().lock().write_all(&b)?,
            Some(Kind::ExitCode(c)) => return Ok(c),
            Some(Kind::Detached(_)) => return Ok(0),
            None => {}
        }
    }
    Err(Failure::new(
        "the engine ended the exec without an exit code",
    ))
}
