//! The subcommands, one file each.

mod attach;
mod commit;
mod container;
mod container_args;
mod cp;
mod create;
mod diff;
mod events;
mod exec;
mod history;
mod image;
mod image_util;
mod images;
mod import;
mod info;
mod inspect;
mod kill;
mod load;
mod logs;
mod pause;
mod port;
mod prune;
mod ps;
mod rename;
mod restart;
mod rm;
mod rmi;
mod run;
mod save;
mod start;
mod stats;
mod stop;
mod system;
mod tag;
mod top;
mod version;
mod volume;
mod wait;

use std::path::Path;

use clap::Subcommand;

use crate::client::{Client, CmdResult};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start a container, streaming its output (or detached with -d)
    Run(run::Args),
    /// Create a container without starting it
    Create(create::Args),
    /// Start created or stopped containers
    Start(start::Args),
    /// Stop running containers (SIGTERM, then SIGKILL after a timeout)
    Stop(stop::Args),
    /// Send a signal to running containers
    Kill(kill::Args),
    /// Remove containers
    Rm(rm::Args),
    /// Run a command in a running container
    Exec(exec::Args),
    /// Attach to a running container's stdin, stdout and stderr
    Attach(attach::Args),
    /// Stop and start containers again
    Restart(restart::Args),
    /// Freeze all processes of containers
    Pause(pause::Args),
    /// Thaw paused containers
    Unpause(pause::Args),
    /// Rename a container
    Rename(rename::Args),
    /// List containers
    Ps(ps::Args),
    /// Show a container's output
    Logs(logs::Args),
    /// Wait for containers to stop and print their exit codes
    Wait(wait::Args),
    /// Show low-level information on containers or images, as JSON
    Inspect(inspect::Args),
    /// List images
    Images(images::Args),
    /// Load images from a Docker `save` tarball or an OCI archive (file or stdin)
    Load(load::Args),
    /// Save images to a Docker `save` tarball (or an OCI archive with --format oci)
    Save(save::Args),
    /// Make a one-layer image from a root filesystem tarball
    Import(import::Args),
    /// Remove images
    Rmi(rmi::Args),
    /// Give an image another name
    Tag(tag::Args),
    /// Show the history of an image
    History(history::Args),
    /// Make an image from a container's changes
    Commit(commit::Args),
    /// Show engine and storage information
    Info(info::Args),
    /// Stream the engine's events (container, image and volume)
    Events(events::Args),
    /// Show the client's and the engine's versions
    Version(version::Args),
    /// Manage volumes (create, ls, inspect, rm, prune)
    Volume(volume::Args),
    /// Show a container's processes (ps options after the name; default -ef)
    Top(top::Args),
    /// Show the host ports a container's ports are published on
    Port(port::Args),
    /// Show containers' CPU, memory, network, block I/O and pids
    Stats(stats::Args),
    /// Copy files between a container and the host (CONTAINER:PATH on one side)
    Cp(cp::Args),
    /// Show what changed in a container's filesystem (A added, C changed, D deleted)
    Diff(diff::Args),
    /// Manage containers (prune, ls, rm, start, stop, logs, inspect, top, stats, cp, diff)
    Container(container::Args),
    /// Manage images (prune, ls, rm, tag, history)
    Image(image::Args),
    /// Manage the engine (prune, info, events)
    System(system::Args),
}

/// Runs a command; returns the process exit code.
pub async fn run(cmd: Command, address: &Path) -> CmdResult<i32> {
    if let Command::Version(a) = &cmd {
        return version::run(a, address).await;
    }
    let client = Client::connect(address).await?;
    match cmd {
        Command::Run(a) => run::run(a, &client).await,
        Command::Create(a) => create::run(a, &client).await,
        Command::Start(a) => start::run(a, &client).await,
        Command::Stop(a) => stop::run(a, &client).await,
        Command::Kill(a) => kill::run(a, &client).await,
        Command::Rm(a) => rm::run(a, &client).await,
        Command::Exec(a) => exec::run(a, &client).await,
        Command::Attach(a) => attach::run(a, &client).await,
        Command::Restart(a) => restart::run(a, &client).await,
        Command::Pause(a) => pause::pause(a, &client).await,
        Command::Unpause(a) => pause::unpause(a, &client).await,
        Command::Rename(a) => rename::run(a, &client).await,
        Command::Ps(a) => ps::run(a, &client).await,
        Command::Logs(a) => logs::run(a, &client).await,
        Command::Wait(a) => wait::run(a, &client).await,
        Command::Inspect(a) => inspect::run(a, &client).await,
        Command::Images(a) => images::run(a, &client).await,
        Command::Load(a) => load::run(a, &client).await,
        Command::Save(a) => save::run(a, &client).await,
        Command::Import(a) => import::run(a, &client).await,
        Command::Rmi(a) => rmi::run(a, &client).await,
        Command::Tag(a) => tag::run(a, &client).await,
        Command::History(a) => history::run(a, &client).await,
        Command::Commit(a) => commit::run(a, &client).await,
        Command::Info(a) => info::run(a, &client).await,
        Command::Events(a) => events::run(a, &client).await,
        Command::Volume(a) => volume::run(a, &client).await,
        Command::Top(a) => top::run(a, &client).await,
        Command::Port(a) => port::run(a, &client).await,
        Command::Stats(a) => stats::run(a, &client).await,
        Command::Cp(a) => cp::run(a, &client).await,
        Command::Diff(a) => diff::run(a, &client).await,
        Command::Container(a) => container::run(a, &client).await,
        Command::Image(a) => image::run(a, &client).await,
        Command::System(a) => system::run(a, &client).await,
        Command::Version(_) => Ok(0),
    }
}

/// Runs `f` for each target, printing each name on success as Docker does; the exit code is 1
/// if any failed (each failure printed on its own line).
pub async fn for_each<F, Fut>(targets: &[String], mut f: F) -> CmdResult<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = CmdResult<()>>,
{
    let mut failed = false;
    for t in targets {
        match f(t.clone()).await {
            Ok(()) => println!("{t}"),
            Err(e) => {
                eprintln!("strata: {}", e.message);
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}
