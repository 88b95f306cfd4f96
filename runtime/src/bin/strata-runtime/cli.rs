//! The command line, following runc's.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// strata-runtime: an OCI runtime for Strata, driven like runc.
#[derive(Debug, Parser)]
#[command(name = "strata-runtime", version, about)]
pub struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/strata-runtime")]
    pub root: PathBuf,
    /// Write log lines to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log line format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug lines too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (not supported: refused with an error).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// logrus text lines.
    Text,
    /// logrus JSON lines.
    Json,
}

/// Output formats of `ps` and `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
}

/// Options shared by `create` and `run`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The container id.
    pub id: String,
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container process's pid to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: strata-runtime never creates a session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra descriptors (3, 4, ...) to the container process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// The container id.
        id: String,
    },
    /// Print the OCI state of a container as JSON.
    State {
        /// The container id.
        id: String,
    },
    /// Send a signal (name or number, default SIGTERM) to a container.
    Kill {
        /// The container id.
        id: String,
        /// The signal.
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and what it holds.
    Delete {
        /// The container id.
        id: String,
        /// Kill it first if it still runs.
        #[arg(short, long)]
        force: bool,
    },
    /// Create, start and (unless detached) wait for a container, then delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start, leaving the container running.
        #[arg(short, long)]
        detach: bool,
    },
    /// Run another process in a running container.
    Exec {
        /// The container id.
        id: String,
        /// The command and its arguments (when no --process is given).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// A JSON file with the OCI process to run.
        #[arg(short, long)]
        process: Option<PathBuf>,
        /// Give the process a terminal (needs --console-socket).
        #[arg(short, long)]
        tty: bool,
        /// Return once the process runs.
        #[arg(short, long)]
        detach: bool,
        /// Write the process's pid to this file.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Unix socket that receives the pty master.
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Extra environment variables (KEY=VALUE).
        #[arg(short, long)]
        env: Vec<String>,
        /// UID[:GID] to run as.
        #[arg(short, long)]
        user: Option<String>,
        /// Additional groups.
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        /// Set no_new_privs.
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        /// Pass this many extra descriptors to the process.
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: i32,
    },
    /// Freeze every process of a container.
    Pause {
        /// The container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// The container id.
        id: String,
    },
    /// List the processes of a container.
    Ps {
        /// The container id.
        id: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List containers.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Change the resource limits of a running container.
    Update {
        /// The container id.
        id: String,
        /// A JSON file with OCI `linux.resources` ("-" for stdin); the flags below override it.
        #[arg(short, long)]
        resources: Option<PathBuf>,
        /// Memory limit in bytes.
        #[arg(long)]
        memory: Option<i64>,
        /// Memory plus swap limit in bytes (-1: unlimited).
        #[arg(long = "memory-swap")]
        memory_swap: Option<i64>,
        /// CPU shares (relative weight).
        #[arg(long = "cpu-share")]
        cpu_share: Option<u64>,
        /// CPU CFS quota in microseconds per period.
        #[arg(long = "cpu-quota")]
        cpu_quota: Option<i64>,
        /// CPU CFS period in microseconds.
        #[arg(long = "cpu-period")]
        cpu_period: Option<u64>,
        /// CPUs the container may run on (e.g. 0-1).
        #[arg(long = "cpuset-cpus")]
        cpuset_cpus: Option<String>,
        /// Memory nodes the container may use.
        #[arg(long = "cpuset-mems")]
        cpuset_mems: Option<String>,
        /// Maximum number of processes (0 or less: unlimited).
        #[arg(long = "pids-limit")]
        pids_limit: Option<i64>,
    },
    /// Print what this runtime supports (OCI features document).
    Features,
}
