//! `strata top CONTAINER [ps OPTIONS]`: the container's processes, as the host's `ps` shows
//! them (default `-ef`).

use strata_proto::engine::TopRequest;

use crate::client::{Client, CmdResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub container: String,
    /// Options for ps (default: -ef)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ps OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    let top = client
        .containers()
        .top(TopRequest {
            container: a.container,
            ps_args: a.ps_args,
        })
        .await?
        .into_inner();
    let mut rows = vec![top.titles];
    rows.extend(top.processes.into_iter().map(|p| p.fields));
    print!("{}", crate::table::render_rows(&rows));
    Ok(0)
}
