//! One function per verb; the behaviour is in the library.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;
use strata_runtime::{parse_signal, Container, CreateOptions, ExecOptions};

use crate::cli::{Cli, Command, CreateArgs, Format};
use crate::console::{wants_terminal, Console, ConsoleListener};

/// Runs the command; the value is the process exit code.
pub fn run(cli: &Cli) -> Result<u8> {
    let root = cli.root.as_path();
    match &cli.command {
        Command::Create(a) => {
            Container::create(root, &a.id, &a.bundle, &create_options(a))?;
            Ok(0)
        }
        Command::Start { id } => {
            Container::load(root, id)?.start()?;
            Ok(0)
        }
        Command::State { id } => {
            let mut c = Container::load(root, id)?;
            println!("{}", serde_json::to_string_pretty(&c.state().oci_json())?);
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            let sig = parse_signal(signal).ok_or_else(|| anyhow!("unknown signal {signal:?}"))?;
            Container::load(root, id)?.kill(sig, *all)?;
            Ok(0)
        }
        Command::Delete { id, force } => {
            match Container::load(root, id) {
                Ok(c) => c.delete(*force)?,
                // runc: deleting a missing container with --force is not an error.
                Err(strata_runtime::ContainerError::State(
                    strata_runtime::state::StateError::NotFound(_),
                )) if *force => {}
                Err(e) => return Err(e.into()),
            }
            Ok(0)
        }
        Command::Run { create, detach } => run_container(root, create, *detach),
        Command::Exec { .. } => exec(root, &cli.command),
        Command::Pause { id } => {
            Container::load(root, id)?.pause()?;
            Ok(0)
        }
        Command::Resume { id } => {
            Container::load(root, id)?.resume()?;
            Ok(0)
        }
        Command::Ps { id, format } => {
            let c = Container::load(root, id)?;
            let pids = c.pids()?;
            match format {
                Format::Json => println!("{}", serde_json::to_string(&pids)?),
                Format::Table => {
                    println!("{:>8}  CMD", "PID");
                    for p in pids {
                        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                        println!("{p:>8}  {}", cmd.trim_end());
                    }
                }
            }
            Ok(0)
        }
        Command::List { format, quiet } => {
            let mut all = Container::list(root)?;
            if *quiet {
                for c in &all {
                    println!("{}", c.id());
                }
            } else if *format == Format::Json {
                let docs: Vec<_> = all.iter_mut().map(|c| c.state().oci_json()).collect();
                println!("{}", serde_json::to_string(&docs)?);
            } else {
                println!(
                    "{:<20} {:<8} {:<8} {:<40} CREATED",
                    "ID", "PID", "STATUS", "BUNDLE"
                );
                for c in &mut all {
                    let s = c.state();
                    let pid = if s.status == strata_runtime::Status::Stopped {
                        0
                    } else {
                        s.pid
                    };
                    println!(
                        "{:<20} {:<8} {:<8} {:<40} {}",
                        s.id,
                        pid,
                        s.status.to_string(),
                        s.bundle.display(),
                        s.created
                    );
                }
            }
            Ok(0)
        }
        Command::Update { .. } => {
            update(root, &cli.command)?;
            Ok(0)
        }
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
    }
}

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        stdio: None,
        // A runc-compatible runtime joins every hierarchy before the container runs.
        defer_hybrid_unified: false,
    }
}

/// The signals `run` and `exec` pass on to the container (plus SIGCHLD, to notice its end).
fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in Signal::iterator() {
        if !matches!(
            s,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
                | Signal::SIGSYS
        ) {
            set.add(s);
        }
    }
    set
}

/// Waits for `pid` (our child), forwarding every other signal to it; returns the shell code.
fn forward_until_exit(pid: i32, set: &SigSet, console: Option<&Console>) -> Result<u8> {
    let p = Pid::from_raw(pid);
    loop {
        match waitpid(p, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code as u8),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok((128 + sig as i32) as u8),
            Ok(_) => {}
            Err(e) => bail!("waitpid {pid}: {e}"),
        }
        let sig = set.wait().context("sigwait")?;
        if let (Signal::SIGWINCH, Some(c)) = (sig, console) {
            c.resize();
        } else if sig != Signal::SIGCHLD {
            tracing::debug!(?sig, pid, "forwarding signal");
            let _ = kill(p, sig);
        }
    }
}

fn run_container(root: &Path, a: &CreateArgs, detach: bool) -> Result<u8> {
    let set = forwarded();
    if !detach {
        // Blocked before the fork and before any thread starts, so nothing is lost and no
        // helper thread takes a signal meant for the container.
        set.thread_block().context("block signals")?;
    }
    let mut opts = create_options(a);
    let listener = if !detach && a.console_socket.is_none() && wants_terminal(&a.bundle) {
        let l = ConsoleListener::new()?;
        opts.console_socket = Some(l.path());
        Some(l)
    } else {
        None
    };
    let mut c = Container::create(root, &a.id, &a.bundle, &opts)?;
    let console = listener.map(ConsoleListener::attach).transpose()?;
    if let Err(e) = c.start() {
        let id = a.id.clone();
        if let Err(d) = c.delete(true) {
            tracing::warn!(error = %d, id, "cleanup after failed start");
        }
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let code = forward_until_exit(c.pid(), &set, console.as_ref())?;
    if let Some(con) = console {
        con.finish();
    }
    Container::load(root, &a.id)?.delete(true)?;
    Ok(code)
}

fn exec(root: &Path, cmd: &Command) -> Result<u8> {
    let Command::Exec {
        id,
        args,
        process,
        tty,
        detach,
        pid_file,
        console_socket,
        cwd,
        env,
        user,
        additional_gids,
        no_new_privs,
        preserve_fds,
    } = cmd
    else {
        bail!("internal error: exec called for another command");
    };
    let mut c = Container::load(root, id)?;
    let process: Process = match process {
        Some(path) => {
            if !args.is_empty() {
                bail!("give either --process or a command, not both");
            }
            strata_runtime::spec::load_process(path)?
        }
        None => {
            if args.is_empty() {
                bail!("exec needs a command or --process");
            }
            let spec = strata_runtime::spec::load(&c.state().bundle)?;
            let mut p = spec
                .process()
                .clone()
                .ok_or_else(|| anyhow!("the container's spec has no process"))?;
            p.set_args(Some(args.clone()));
            p.set_terminal(Some(*tty));
            let mut e = p.env().clone().unwrap_or_default();
            e.extend(env.iter().cloned());
            p.set_env(Some(e));
            if let Some(d) = cwd {
                p.set_cwd(d.clone());
            }
            if let Some(u) = user {
                let (uid, gid) = match u.split_once(':') {
                    Some((a, b)) => (a.parse()?, b.parse()?),
                    None => (u.parse()?, 0),
                };
                let mut usr = p.user().clone();
                usr.set_uid(uid);
                usr.set_gid(gid);
                p.set_user(usr);
            }
            if !additional_gids.is_empty() {
                let mut usr = p.user().clone();
                usr.set_additional_gids(Some(additional_gids.clone()));
                p.set_user(usr);
            }
            if *no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            p
        }
    };
    let mut opts = ExecOptions {
        pid_file: pid_file.clone(),
        console_socket: console_socket.clone(),
        preserve_fds: *preserve_fds,
        stdio: None,
    };
    let set = forwarded();
    if !detach {
        set.thread_block().context("block signals")?;
    }
    let listener = if process.terminal() == Some(true) && console_socket.is_none() {
        if *detach {
            bail!("a detached process with a terminal needs --console-socket");
        }
        let l = ConsoleListener::new()?;
        opts.console_socket = Some(l.path());
        Some(l)
    } else {
        None
    };
    let pid = c.exec(&process, &opts)?;
    if *detach {
        return Ok(0);
    }
    let console = listener.map(ConsoleListener::attach).transpose()?;
    let code = forward_until_exit(pid, &set, console.as_ref())?;
    if let Some(con) = console {
        con.finish();
    }
    Ok(code)
}

fn update(root: &Path, cmd: &Command) -> Result<()> {
    let Command::Update {
        id,
        resources,
        memory,
        memory_swap,
        cpu_share,
        cpu_quota,
        cpu_period,
        cpuset_cpus,
        cpuset_mems,
        pids_limit,
    } = cmd
    else {
        bail!("internal error: update called for another command");
    };
    let mut v: serde_json::Value = match resources {
        Some(p) if p.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("resources from stdin")?
        }
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("read {}", p.display()))?,
        )
        .with_context(|| format!("parse {}", p.display()))?,
        None => serde_json::json!({}),
    };
    let mut set = |section: &str, key: &str, value: serde_json::Value| {
        if v.get(section).is_none() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = value;
    };
    if let Some(m) = memory {
        set("memory", "limit", (*m).into());
    }
    if let Some(m) = memory_swap {
        set("memory", "swap", (*m).into());
    }
    if let Some(c) = cpu_share {
        set("cpu", "shares", (*c).into());
    }
    if let Some(c) = cpu_quota {
        set("cpu", "quota", (*c).into());
    }
    if let Some(c) = cpu_period {
        set("cpu", "period", (*c).into());
    }
    if let Some(c) = cpuset_cpus {
        set("cpu", "cpus", c.clone().into());
    }
    if let Some(c) = cpuset_mems {
        set("cpu", "mems", c.clone().into());
    }
    if let Some(p) = pids_limit {
        set("pids", "limit", (*p).into());
    }
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_value(v).context("invalid resources")?;
    Container::load(root, id)?.update(&res)?;
    Ok(())
}

fn features() -> serde_json::Value {
    let caps: Vec<_> = strata_runtime::spec::all_capabilities()
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid",
            "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable",
            "rw", "shared", "slave", "strictatime", "suid", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false}
        },
        "annotations": {"io.strata.runtime.version": env!("CARGO_PKG_VERSION")}
    })
}
