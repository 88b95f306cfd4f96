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
    /// Publish a container's TCP port(s) on the host ([IP:][HOST:]CONTAINER[/tcp], ranges A-B)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed TCP ports on random host ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports (PORT[-PORT][/tcp|udp])
    #[arg(long)]
    pub expose: Vec<String>,
    /// Logging driver: json-file (default) or none
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options (max-size=10m, max-file=3)
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Command to run to check health (with /bin/sh -c)
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s)
    #[arg(long = "health-interval", allow_hyphen_values = true)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s)
    #[arg(long = "health-timeout", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before failures count (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", allow_hyphen_values = true)]
    pub health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy (default 3)
    #[arg(long = "health-retries", allow_negative_numbers = true)]
    pub health_retries: Option<i32>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
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
    /// Ulimit options (name=soft[:hard], e.g. nofile=1024:2048)
    #[arg(long = "ulimit")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm (e.g. 128m; default 64m)
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Signal to stop the container (default: the image's, else SIGTERM)
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds to wait before killing the container at a stop (default 10)
    #[arg(long = "stop-timeout", allow_negative_numbers = true)]
    pub stop_timeout: Option<i32>,
    /// Namespaced kernel parameters (name=value)
    #[arg(long = "sysctl")]
    pub sysctl: Vec<String>,
    /// Additional groups to join (names or gids)
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// PID namespace: its own (default) or host
    #[arg(long = "pid")]
    pub pid: Option<String>,
    /// IPC namespace: its own (default) or host
    #[arg(long = "ipc")]
    pub ipc: Option<String>,
    /// UTS namespace: its own (default) or host
    #[arg(long = "uts")]
    pub uts: Option<String>,
    /// Security options: no-new-privileges[:true|false], seccomp=unconfined|PROFILE.json, label=disable
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Memory plus swap limit (e.g. 1g; -1 for unlimited swap)
    #[arg(long = "memory-swap", allow_negative_numbers = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Disable the OOM killer (with -m)
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Write the container id to this file
    #[arg(long = "cidfile")]
    pub cidfile: Option<String>,
    /// Add a host device (/dev/host[:/dev/in-container[:rwm]])
    #[arg(long = "device")]
    pub device: Vec<String>,
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
    /// Refuses a `--cidfile` that is there already, before anything is made (as Docker).
    pub fn check_cidfile(&self) -> CmdResult<()> {
        match &self.cidfile {
            Some(f) if std::path::Path::new(f).exists() => Err(Failure::new(format!(
                "container ID file found, make sure the other container isn't running or delete {f}"
            ))
            .with_code(125)),
            _ => Ok(()),
        }
    }

    /// Writes the new container's id to `--cidfile`, if given.
    pub fn write_cidfile(&self, id: &str) -> CmdResult<()> {
        if let Some(f) = &self.cidfile {
            std::fs::write(f, id)
                .map_err(|e| Failure::new(format!("write --cidfile {f}: {e}")).with_code(125))?;
        }
        Ok(())
    }

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
        let shm_size = self
            .shm_size
            .as_deref()
            .map(units::parse_memory)
            .transpose()
            .map_err(|m| bad(format!("invalid --shm-size: {m}")))?;
        let memory_swap = match self.memory_swap.as_deref() {
            None => 0,
            Some("-1") => -1,
            Some(v) => {
                units::parse_memory(v).map_err(|m| bad(format!("invalid --memory-swap: {m}")))?
            }
        };
        // Docker's CLI reads a seccomp profile from a file and sends its content.
        let mut security_opt = Vec::new();
        for o in &self.security_opt {
            match o.split_once(['=', ':']) {
                Some(("seccomp", p)) if p != "unconfined" => {
                    let profile = std::fs::read_to_string(p).map_err(|e| {
                        bad(format!(
                            "invalid --security-opt {o}: read the seccomp profile {p}: {e}"
                        ))
                    })?;
                    security_opt.push(format!("seccomp={profile}"));
                }
                _ => security_opt.push(o.clone()),
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
            ulimits: self.ulimit.clone(),
            shm_size: shm_size.unwrap_or(0),
            stop_signal: self.stop_signal.clone().unwrap_or_default(),
            stop_timeout: self.stop_timeout.unwrap_or(-1),
            sysctls: self.sysctl.clone(),
            group_add: self.group_add.clone(),
            pid_mode: self.pid.clone().unwrap_or_default(),
            ipc_mode: self.ipc.clone().unwrap_or_default(),
            uts_mode: self.uts.clone().unwrap_or_default(),
            security_opt,
            memory_swap,
            cpu_shares: self.cpu_shares.unwrap_or(0),
            oom_kill_disable: self.oom_kill_disable,
            devices: self.device.clone(),
            publish: self.publish.clone(),
            log_driver: self.log_driver.clone().unwrap_or_default(),
            log_opts: self.log_opt.clone(),
            health_cmd: self.health_cmd.clone().unwrap_or_default(),
            health_interval: duration("--health-interval", &self.health_interval)?,
            health_timeout: duration("--health-timeout", &self.health_timeout)?,
            health_start_period: duration("--health-start-period", &self.health_start_period)?,
            health_retries: self.health_retries.unwrap_or(0),
            no_healthcheck: self.no_healthcheck,
            init: self.init,
            expose: self.expose.clone(),
            publish_all: self.publish_all,
        })
    }
}

/// A duration flag's nanoseconds (0 when not given).
fn duration(flag: &str, v: &Option<String>) -> CmdResult<i64> {
    match v {
        Some(v) => units::parse_duration(v)
            .map_err(|m| Failure::new(format!("invalid {flag}: {m}")).with_code(125)),
        None => Ok(0),
    }
}
