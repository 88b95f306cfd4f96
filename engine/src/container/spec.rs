//! The OCI runtime spec of a container, from its image's config and the `create` flags, with
//! Docker's defaults: its capability set, masked and read-only paths, default devices (the
//! runtime adds them), a seccomp profile, and namespaces for pid, ipc, uts, mount, cgroup and
//! (unless `--network host`) net, or another container's net (`--network container:`); the
//! mounts the start path prepared (volumes, binds, tmpfs, the network files) over the defaults.

use serde_json::{json, Value};

use super::record::Settings;

/// The parts of an image config a container spec is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
    /// The image's `VOLUME`s: each becomes an anonymous volume unless a mount is there.
    pub volumes: Vec<String>,
    /// The image's `HEALTHCHECK`.
    pub healthcheck: Option<super::health::HealthConfig>,
    /// The image's `ExposedPorts` keys (`80/tcp`).
    pub exposed: Vec<String>,
}

/// A spec that cannot be built from the flags.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("no command: the image has no ENTRYPOINT or CMD and none was given")]
    NoCommand,
    #[error("invalid network mode {0:?}: expected none, host or container:<name|id>")]
    Network(String),
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error("invalid environment variable {0:?}: expected NAME=VALUE or NAME")]
    Env(String),
    #[error(
        "invalid user {0:?}: expected uid[:gid] (numbers) or a name from the image's /etc/passwd"
    )]
    User(String),
    /// A flag's value that cannot be used (the message names the flag and the value).
    #[error("{0}")]
    Invalid(String),
    /// A flag's value that cannot be used, with why.
    #[error("invalid {flag} {value:?}: {why}")]
    Option {
        flag: &'static str,
        value: String,
        why: String,
    },
}

fn bad(flag: &'static str, value: &str, why: impl Into<String>) -> SpecError {
    SpecError::Option {
        flag,
        value: value.to_string(),
        why: why.into(),
    }
}

/// `--ulimit` names and their rlimits.
const ULIMITS: [(&str, &str); 15] = [
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// The process's rlimits from `--ulimit name=soft[:hard]` (-1: unlimited).
fn rlimits(s: &Settings) -> Result<Vec<Value>, SpecError> {
    let mut out: Vec<Value> = Vec::new();
    for u in &s.ulimits {
        let why = "expected name=soft[:hard] with a name of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending or stack";
        let (name, values) = u.split_once('=').ok_or_else(|| bad("--ulimit", u, why))?;
        let kind = ULIMITS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .ok_or_else(|| bad("--ulimit", u, why))?;
        let (soft, hard) = values.split_once(':').unwrap_or((values, values));
        let num = |v: &str| -> Result<u64, SpecError> {
            match v.parse::<i64>() {
                Ok(-1) => Ok(u64::MAX),
                Ok(n) if n >= 0 => Ok(n as u64),
                _ => Err(bad(
                    "--ulimit",
                    u,
                    "limits are numbers (or -1 for unlimited)",
                )),
            }
        };
        let (soft, hard) = (num(soft)?, num(hard)?);
        if soft > hard {
            return Err(bad("--ulimit", u, "the soft limit is above the hard limit"));
        }
        out.retain(|r| r["type"] != kind);
        out.push(json!({ "type": kind, "soft": soft, "hard": hard }));
    }
    Ok(out)
}

/// Sysctls a container may set: those of its IPC namespace, its UTS namespace's domain name
/// and (with a network namespace of its own) `net.*`.
fn sysctls(s: &Settings) -> Result<serde_json::Map<String, Value>, SpecError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let mut out = serde_json::Map::new();
    for kv in &s.sysctls {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| bad("--sysctl", kv, "expected name=value"))?;
        let ipc = IPC.contains(&k) || k.starts_with("fs.mqueue.");
        let allowed = if ipc {
            s.ipc_mode != "host"
        } else if k.starts_with("net.") {
            // Only in a network namespace of its own, not the host's or another container's.
            s.network_mode != "host" && !s.network_mode.starts_with("container:")
        } else if k == "kernel.domainname" {
            s.uts_mode != "host"
        } else {
            false
        };
        if !allowed {
            return Err(bad(
                "--sysctl",
                kv,
                "not a kernel parameter of the container's own namespaces (IPC: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*; network: net.*; UTS: kernel.domainname)",
            ));
        }
        out.insert(k.to_string(), json!(v));
    }
    Ok(out)
}

/// What `--security-opt` asks for.
#[derive(Debug, Default)]
struct Security {
    no_new_privileges: bool,
    /// `Some(None)`: unconfined; `Some(Some(profile))`: this profile, in the OCI form.
    seccomp: Option<Option<Value>>,
}

fn security(s: &Settings) -> Result<Security, SpecError> {
    let mut sec = Security::default();
    for o in &s.security_opt {
        let (key, value) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", None | Some("true")) => sec.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => sec.no_new_privileges = false,
            ("seccomp", Some("unconfined")) => sec.seccomp = Some(None),
            ("seccomp", Some(profile)) => {
                sec.seccomp = Some(Some(seccomp_profile(profile).map_err(|why| {
                    bad("--security-opt", "seccomp=…", format!("the seccomp profile: {why}"))
                })?))
            }
            // No SELinux labels are set, so disabling them asks for what is the case.
            ("label", Some("disable")) => {}
            ("apparmor", _) | ("label", _) => {
                return Err(bad(
                    "--security-opt",
                    o,
                    "AppArmor and SELinux are not supported by strata-runtime (label=disable is)",
                ))
            }
            _ => {
                return Err(bad(
                    "--security-opt",
                    o,
                    "use no-new-privileges[:true|false], seccomp=unconfined|PROFILE.json or label=disable",
                ))
            }
        }
    }
    Ok(sec)
}

/// A Docker seccomp profile (JSON) as the OCI spec's `linux.seccomp`: `archMap` becomes the
/// architectures; rules conditional on capabilities or kernels (`includes`/`excludes`) are
/// refused rather than applied unconditionally.
fn seccomp_profile(text: &str) -> Result<Value, String> {
    let mut p: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(obj) = p.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    if let Some(map) = obj.remove("archMap") {
        let mut arches = Vec::new();
        for a in map.as_array().into_iter().flatten() {
            arches.extend(a.get("architecture").cloned());
            arches.extend(
                a["subArchitectures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        obj.insert("architectures".into(), Value::Array(arches));
    }
    for rule in obj
        .get_mut("syscalls")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(r) = rule.as_object_mut() else {
            return Err("a syscall rule is not an object".into());
        };
        for k in ["includes", "excludes"] {
            if r.remove(k)
                .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            {
                return Err(format!("rules with {k} are not supported"));
            }
        }
        r.remove("comment");
        if let Some(name) = r.remove("name") {
            r.insert("names".into(), json!([name]));
        }
    }
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(p.clone())
        .map_err(|e| e.to_string())?;
    Ok(p)
}

/// A host device for the container, from `--device /dev/host[:/dev/in-container[:rwm]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Device {
    host: String,
    path: String,
    kind: &'static str,
    major: u64,
    minor: u64,
    mode: u32,
    access: String,
}

/// The `--device`s, each looked up on the host (a character or block device, symlinks
/// followed, as Docker does).
fn devices(s: &Settings) -> Result<Vec<Device>, SpecError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for d in &s.devices {
        let parts: Vec<&str> = d.split(':').collect();
        let (host, path, access) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if p.chars().all(|c| "rwm".contains(c)) && !p.starts_with('/') => (*h, *h, *p),
            [h, p] => (*h, *p, "rwm"),
            [h, p, a] => (*h, *p, *a),
            _ => {
                return Err(bad(
                    "--device",
                    d,
                    "expected /dev/host[:/dev/in-container[:rwm]]",
                ))
            }
        };
        if !host.starts_with('/') || !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(bad(
                "--device",
                d,
                "both paths must be absolute, without \"..\"",
            ));
        }
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(bad("--device", d, "the permissions are some of r, w and m"));
        }
        let meta = std::fs::metadata(host).map_err(|e| bad("--device", d, e.to_string()))?;
        let kind = if meta.file_type().is_char_device() {
            "c"
        } else if meta.file_type().is_block_device() {
            "b"
        } else {
            return Err(bad("--device", d, format!("{host} is not a device")));
        };
        let rdev = meta.rdev();
        out.push(Device {
            host: host.to_string(),
            path: path.to_string(),
            kind,
            major: libc::major(rdev) as u64,
            minor: libc::minor(rdev) as u64,
            mode: meta.mode() & 0o7777,
            access: access.to_string(),
        });
    }
    Ok(out)
}

/// `HostConfig.Devices` as Docker's API objects (what the flags name; `[]` if a device is
/// gone from the host meanwhile).
pub fn devices_doc(s: &Settings) -> Value {
    let list: Vec<Value> = devices(s)
        .unwrap_or_default()
        .iter()
        .map(|d| json!({ "PathOnHost": d.host, "PathInContainer": d.path, "CgroupPermissions": d.access }))
        .collect();
    json!(list)
}

/// Refuses, before anything is made, the values of the flags that only go into the spec.
pub fn check_options(s: &Settings) -> Result<(), SpecError> {
    super::ports::parse_all(&s.publish).map_err(SpecError::Invalid)?;
    for e in &s.expose {
        super::ports::parse_expose(e).map_err(SpecError::Invalid)?;
    }
    super::logconf::parse(&s.log_driver, &s.log_opts).map_err(SpecError::Invalid)?;
    super::health::check(s).map_err(SpecError::Invalid)?;
    if s.network_mode.starts_with("container:") && (!s.publish.is_empty() || s.publish_all) {
        let (flag, value) = match s.publish.first() {
            Some(p) => ("--publish", p.as_str()),
            None => ("--publish-all", "true"),
        };
        return Err(bad(
            flag,
            value,
            "conflicting options: port publishing and --network container: (publish on the container whose network it joins)",
        ));
    }
    rlimits(s)?;
    sysctls(s)?;
    security(s)?;
    devices(s)?;
    for (flag, mode) in [
        ("--pid", &s.pid_mode),
        ("--ipc", &s.ipc_mode),
        ("--uts", &s.uts_mode),
    ] {
        if !matches!(mode.as_str(), "" | "host") {
            return Err(bad(
                flag,
                mode,
                "use host (or leave it out for the container's own)",
            ));
        }
    }
    if s.uts_mode == "host" && !s.hostname.is_empty() {
        return Err(bad("--uts", "host", "conflicts with --hostname"));
    }
    if s.shm_size < 0 {
        return Err(bad(
            "--shm-size",
            &s.shm_size.to_string(),
            "a size is not negative",
        ));
    }
    if s.memory_swap != 0 && s.memory == 0 {
        return Err(bad(
            "--memory-swap",
            &s.memory_swap.to_string(),
            "set a memory limit (-m) with it",
        ));
    }
    if s.memory_swap > 0 && s.memory_swap < s.memory {
        return Err(bad(
            "--memory-swap",
            &s.memory_swap.to_string(),
            "it is memory plus swap, so not below the memory limit",
        ));
    }
    if s.cpu_shares < 0 {
        return Err(bad(
            "--cpu-shares",
            &s.cpu_shares.to_string(),
            "shares are positive",
        ));
    }
    if !s.stop_signal.is_empty() && strata_runtime::parse_signal(&s.stop_signal).is_none() {
        return Err(bad(
            "--stop-signal",
            &s.stop_signal,
            "use a name like TERM or SIGINT, or a number",
        ));
    }
    Ok(())
}

/// The container's entrypoint and command, as Docker's config has them: the flags', else the
/// image's (a new entrypoint drops the image's CMD, as Docker does).
pub fn entrypoint_and_cmd(img: &ImageDefaults, s: &Settings) -> (Vec<String>, Vec<String>) {
    let entrypoint = s
        .entrypoint
        .clone()
        .unwrap_or_else(|| img.entrypoint.clone());
    let cmd = if !s.cmd.is_empty() {
        s.cmd.clone()
    } else if s.entrypoint.is_some() {
        Vec::new()
    } else {
        img.cmd.clone()
    };
    (entrypoint, cmd)
}

/// The process a container runs: entrypoint + cmd as Docker combines them.
pub fn command(img: &ImageDefaults, s: &Settings) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = entrypoint_and_cmd(img, s);
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// Merges the image's environment, the flags' and a default PATH.
pub fn environment(img: &ImageDefaults, s: &Settings) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: &str| {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.to_string());
    };
    for e in &img.env {
        set(e);
    }
    for e in &s.env {
        let key = e.split('=').next().unwrap_or_default();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(SpecError::Env(e.clone()));
        }
        // `-e NAME` (no value) is resolved by the client from its environment; one that
        // arrives bare was unset there, and is left out, as Docker does.
        if e.contains('=') {
            set(e);
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    Ok(env)
}

/// All capabilities the kernel knows, by Docker's names (without the CAP_ prefix); the index
/// is the capability's kernel number.
const ALL_CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capabilities.
const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

fn cap_name(c: &str) -> Result<String, SpecError> {
    let up = c.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    if bare == "ALL" || ALL_CAPS.contains(&bare) {
        Ok(bare.to_string())
    } else {
        Err(SpecError::Capability(c.to_string()))
    }
}

/// The engine's own capability bounding set (all bits when it cannot be read).
fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(u64::MAX)
}

/// The capability set: Docker's defaults, then `--cap-add`, then `--cap-drop` (`ALL` works in
/// both), or everything with `--privileged`.
pub fn capabilities(s: &Settings) -> Result<Vec<String>, SpecError> {
    if s.privileged {
        // Every capability the engine itself may hand on (its bounding set): a kernel or a
        // sandbox without some of them would make the container fail to start otherwise.
        let bounding = bounding_set();
        return Ok(ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
            .map(|(_, c)| format!("CAP_{c}"))
            .collect());
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    let adds = s
        .cap_add
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = s
        .cap_drop
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<Vec<_>, _>>()?;
    if drops.iter().any(|d| d == "ALL") {
        caps.clear();
    }
    for a in adds {
        if a == "ALL" {
            caps = ALL_CAPS.iter().map(|c| c.to_string()).collect();
        } else if !caps.contains(&a) {
            caps.push(a);
        }
    }
    caps.retain(|c| !drops.contains(c));
    Ok(caps.into_iter().map(|c| format!("CAP_{c}")).collect())
}

/// Syscalls Docker's default profile does not allow (without extra capabilities); they fail
/// with EPERM. Everything else is allowed.
const DENIED_SYSCALLS: [&str; 35] = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "personality",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "userfaultfd",
];

/// The default seccomp profile.
pub fn default_seccomp() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{ "names": DENIED_SYSCALLS.to_vec(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }],
    })
}

/// Everything the spec needs besides the image and the settings.
#[derive(Debug, Clone)]
pub struct SpecInputs<'a> {
    pub id: &'a str,
    pub rootfs: &'a str,
    /// Resolved numeric user and groups.
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub cgroups_path: String,
    /// What the start path readied.
    pub prepared: Prepared,
}

/// What the start path readies for the spec: the container's own mounts and whose network.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Volumes, binds, tmpfs mounts and the network files, in mount order; a default mount at
    /// one of their destinations is left out.
    pub mounts: Vec<Value>,
    /// The hostname ("": the container id's first 12 digits).
    pub hostname: String,
    /// A network namespace to join (`--network container:`).
    pub netns: String,
}

/// Builds the spec (as JSON, validated by deserializing into `oci_spec`).
pub fn build(img: &ImageDefaults, s: &Settings, inp: &SpecInputs<'_>) -> Result<Value, SpecError> {
    let args = command(img, s)?;
    let env = environment(img, s)?;
    let caps = capabilities(s)?;
    let cwd = if !s.working_dir.is_empty() {
        s.working_dir.clone()
    } else if !img.working_dir.is_empty() {
        img.working_dir.clone()
    } else {
        "/".into()
    };
    let mut spec = serde_json::to_value(strata_runtime::spec::docker_default_spec(args.clone()))
        .unwrap_or_else(|_| json!({}));
    let hostname = if !inp.prepared.hostname.is_empty() {
        inp.prepared.hostname.clone()
    } else if s.hostname.is_empty() {
        inp.id[..12.min(inp.id.len())].to_string()
    } else {
        s.hostname.clone()
    };
    if s.uts_mode == "host" {
        // The host's name, as Docker leaves it.
        if let Some(o) = spec.as_object_mut() {
            o.remove("hostname");
        }
    } else {
        spec["hostname"] = json!(hostname);
    }
    spec["root"] = json!({ "path": inp.rootfs, "readonly": s.read_only });
    spec["process"]["args"] = json!(args);
    if s.init {
        spec["annotations"][strata_runtime::tini::INIT_ANNOTATION] = json!("true");
    }
    spec["process"]["env"] = json!(env);
    spec["process"]["cwd"] = json!(cwd);
    spec["process"]["terminal"] = json!(s.tty);
    spec["process"]["user"] =
        json!({ "uid": inp.uid, "gid": inp.gid, "additionalGids": inp.additional_gids });
    spec["process"]["capabilities"] =
        json!({ "bounding": caps, "effective": caps, "permitted": caps });
    // Limits are inherited from the engine, as Docker's are, but for those of --ulimit.
    spec["process"]["rlimits"] = json!(rlimits(s)?);
    let sec = security(s)?;
    let mut mounts = spec["mounts"].as_array().cloned().unwrap_or_default();
    if s.shm_size > 0 {
        let size = format!("size={}k", (s.shm_size as u64).div_ceil(1024));
        for m in mounts.iter_mut().filter(|m| m["destination"] == "/dev/shm") {
            let mut opts: Vec<Value> = m["options"].as_array().cloned().unwrap_or_default();
            opts.retain(|o| !o.as_str().is_some_and(|o| o.starts_with("size=")));
            opts.push(json!(size));
            m["options"] = json!(opts);
        }
    }
    let own = &inp.prepared.mounts;
    mounts.retain(|m| !own.iter().any(|o| o["destination"] == m["destination"]));
    mounts.extend(own.iter().cloned());
    spec["mounts"] = json!(mounts);
    let linux = &mut spec["linux"];
    let mut namespaces = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    for (kind, mode) in [
        ("pid", &s.pid_mode),
        ("ipc", &s.ipc_mode),
        ("uts", &s.uts_mode),
    ] {
        if mode != "host" {
            namespaces.push(json!({ "type": kind }));
        }
    }

    match s.network_mode.as_str() {
        "host" => {}
        "" | "none" | "default" if inp.prepared.netns.is_empty() => {
            namespaces.push(json!({"type": "network"}))
        }
        m if (matches!(m, "" | "none" | "default") || m.starts_with("container:"))
            && !inp.prepared.netns.is_empty() =>
        {
            namespaces.push(json!({"type": "network", "path": inp.prepared.netns}))
        }
        other => return Err(SpecError::Network(other.to_string())),
    }
    linux["namespaces"] = json!(namespaces);
    linux["cgroupsPath"] = json!(inp.cgroups_path);
    let sysctl = sysctls(s)?;
    if !sysctl.is_empty() {
        linux["sysctl"] = Value::Object(sysctl);
    }
    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if s.privileged {
        resources["devices"] = json!([{ "allow": true, "access": "rwm" }]);
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
    }
    let mut nodes = linux["devices"].as_array().cloned().unwrap_or_default();
    for d in devices(s)? {
        nodes.retain(|n| n["path"] != d.path.as_str());
        nodes.push(
            json!({ "path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                           "fileMode": d.mode, "uid": 0, "gid": 0 }),
        );
        if let Some(rules) = resources["devices"].as_array_mut() {
            rules.push(json!({ "allow": true, "type": d.kind, "major": d.major,
                               "minor": d.minor, "access": d.access }));
        }
    }
    if !nodes.is_empty() {
        linux["devices"] = json!(nodes);
    }
    match &sec.seccomp {
        Some(None) => {}
        Some(Some(profile)) => linux["seccomp"] = profile.clone(),
        None if s.privileged => {}
        None => linux["seccomp"] = default_seccomp(),
    }
    let mut memory = serde_json::Map::new();
    if s.memory > 0 {
        memory.insert("limit".into(), json!(s.memory));
        let swap = if s.memory_swap != 0 {
            s.memory_swap
        } else {
            s.memory
        };
        memory.insert("swap".into(), json!(swap));
    }
    if s.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if s.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(s.cpu_shares.max(2)));
    }
    if s.nano_cpus > 0 {
        let period: i64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(s.nano_cpus * period / 1_000_000_000));
    }
    if !s.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(s.cpuset_cpus));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if s.pids_limit > 0 {
        resources["pids"] = json!({ "limit": s.pids_limit });
    }
    linux["resources"] = resources;
    if let Some(p) = spec.get_mut("process") {
        p["noNewPrivileges"] = json!(sec.no_new_privileges);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ImageDefaults {
        ImageDefaults {
            env: vec!["PATH=/bin".into(), "A=1".into()],
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            ..Default::default()
        }
    }

    #[test]
    fn command_like_docker() {
        let s = Settings::default();
        assert_eq!(command(&img(), &s).unwrap(), vec!["sh"]);
        let s = Settings {
            cmd: vec!["echo".into(), "hi".into()],
            ..Default::default()
        };
        assert_eq!(command(&img(), &s).unwrap(), vec!["echo", "hi"]);
        let s = Settings {
            entrypoint: Some(vec!["ls".into()]),
            ..Default::default()
        };
        assert_eq!(
            command(&img(), &s).unwrap(),
            vec!["ls"],
            "a new entrypoint drops the image CMD"
        );
        let s = Settings {
            entrypoint: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            command(&ImageDefaults::default(), &s),
            Err(SpecError::NoCommand)
        );
    }

    #[test]
    fn env_and_caps() {
        let s = Settings {
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        assert_eq!(
            environment(&img(), &s).unwrap(),
            vec!["PATH=/bin", "A=2", "B=3"]
        );
        assert!(environment(
            &img(),
            &Settings {
                env: vec!["=x".into()],
                ..Default::default()
            }
        )
        .is_err());
        let s = Settings {
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into()],
            ..Default::default()
        };
        let c = capabilities(&s).unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
        let s = Settings {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["KILL".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&s).unwrap(), vec!["CAP_KILL"]);
        assert!(capabilities(&Settings {
            cap_add: vec!["FLY".into()],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn spec_validates_with_oci_spec() {
        let s = Settings {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            pids_limit: 10,
            ..Default::default()
        };
        let mut inp = SpecInputs {
            id: "0123456789abcdef",
            rootfs: "/r",
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            cgroups_path: "/strata/x".into(),
            prepared: Prepared {
                mounts: vec![
                    json!({"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "ro", "rprivate"]}),
                    json!({"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
                ],
                ..Default::default()
            },
        };
        let v = build(&img(), &s, &inp).unwrap();
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert!(v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        let host = Settings {
            network_mode: "host".into(),
            ..Default::default()
        };
        let v = build(&img(), &host, &inp).unwrap();
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert!(build(
            &img(),
            &Settings {
                network_mode: "bridge".into(),
                ..Default::default()
            },
            &inp
        )
        .is_err());
        let shm: Vec<_> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1, "a prepared mount replaces the default one");
        assert_eq!(shm[0]["options"][0], "size=1m");
        assert!(v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/mnt"));
        inp.prepared.hostname = "joined".into();
        inp.prepared.netns = "/proc/42/ns/net".into();
        let joined = Settings {
            network_mode: "container:abc".into(),
            ..Default::default()
        };
        let v = build(&img(), &joined, &inp).unwrap();
        assert_eq!(v["hostname"], "joined");
        assert!(v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/proc/42/ns/net"));
    }

    #[test]
    fn docker_seccomp_profiles_become_the_oci_form() {
        let p = seccomp_profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
                "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]}],
                "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW","comment":"io","includes":{}},
                            {"name":"exit","action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(
            p["syscalls"][0],
            json!({"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"})
        );
        assert_eq!(p["syscalls"][1]["names"], json!(["exit"]));
        assert_eq!(p["defaultErrnoRet"], json!(1));
        let e = seccomp_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_PTRACE"]}}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("includes"), "{e}");
        assert!(seccomp_profile("[1]").is_err());
    }
}
