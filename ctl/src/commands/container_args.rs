//! The flags `create` and `run` share.

use strata_proto::engine::ContainerConfig;

use crate::client::{CmdResult, Failure};
use crate::units;

#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (NAME=VALUE, or NAME to pass this shell's value)
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User name or uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Overwrite the image's ENTRYPOINT
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short = 'm', long, allow_negative_numbers = true)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 0.5)
    #[arg(long, allow_negative_numbers = true)]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Limit the number of processes
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Bind mount a host path or a named volume (/host:/ctr[:ro], NAME:/ctr[:ro], /ctr)
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (type=volume|bind|tmpfs,source=…,target=…[,readonly])
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount the volumes of another container (NAME[:ro|rw])
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Mount a tmpfs (/path[:options])
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Add a host-to-IP mapping to /etc/hosts (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set a DNS server for /etc/resolv.conf
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Set a DNS search domain
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set a DNS option
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Restart policy: no, on-failure[:max-retries], always, unless-stopped
    #[arg(long = "restart", default_value = "no")]
    pub restart: String,
    /// Set metadata on the container (KEY=VALUE)
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Network mode: none (default), host or container:<name|id>
    #[arg(long, default_value = "none")]
    pub network: String,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give the container all capabilities and devices
    #[arg(long)]
    pub privileged: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// The image
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn env_value(kv: &str) -> Option<String> {
    if kv.contains('=') {
        Some(kv.to_string())
    } else {
        std::env::var(kv).ok().map(|v| format!("{kv}={v}"))
    }
}

impl ContainerArgs {
    /// The engine's container config.
    pub fn config(&self) -> CmdResult<ContainerConfig> {
        let bad = |m: String| Failure::new(m).with_code(125);
        let mut env = Vec::new();
        for f in &self.env_file {
            let text =
                std::fs::read_to_string(f).map_err(|e| bad(format!("read --env-file {f}: {e}")))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                env.extend(env_value(line));
            }
        }
        for e in &self.env {
            if e.starts_with('=') || e.is_empty() {
                return Err(bad(format!(
                    "invalid environment variable {e:?}: expected NAME=VALUE or NAME"
                )));
            }
            env.extend(env_value(e));
        }
        let memory = self
            .memory
            .as_deref()
            .map(units::parse_memory)
            .transpose()
            .map_err(|m| bad(format!("invalid -m/--memory: {m}")))?;
        let cpus = self
            .cpus
            .as_deref()
            .map(units::parse_cpus)
            .transpose()
            .map_err(bad)?;
        if let Some(p) = self.pids_limit {
            if p == 0 || p < -1 {
                return Err(bad(format!(
                    "invalid --pids-limit {p}: use a positive number, or -1 for unlimited"
                )));
            }
        }
        let container_mode = self
            .network
            .strip_prefix("container:")
            .is_some_and(|c| !c.is_empty());
        if !matches!(self.network.as_str(), "none" | "host") && !container_mode {
            return Err(bad(format!(
                "invalid --network {:?}: use none, host or container:<name|id>",
                self.network
            )));
        }
        Ok(ContainerConfig {
            image: self.image.clone(),
            name: self.name.clone().unwrap_or_default(),
            cmd: self.command.clone(),
            entrypoint_set: self.entrypoint.is_some(),
            entrypoint: self
                .entrypoint
                .iter()
                .filter(|e| !e.is_empty())
                .cloned()
                .collect(),
            env,
            working_dir: self.workdir.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            hostname: self.hostname.clone().unwrap_or_default(),
            memory: memory.unwrap_or(0),
            nano_cpus: cpus.unwrap_or(0),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            pids_limit: self.pids_limit.filter(|p| *p > 0).unwrap_or(0),
            binds: self.volume.clone(),
            read_only: self.read_only,
            network_mode: self.network.clone(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            auto_remove: self.rm,
            tty: self.tty,
            open_stdin: self.interactive,
            stdin_once: false,
            mounts: self.mount.clone(),
            volumes_from: self.volumes_from.clone(),
            tmpfs: self.tmpfs.clone(),
            extra_hosts: self.add_host.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            restart_policy: self.restart.clone(),
            labels: self.label.clone(),
        })
    }
}
