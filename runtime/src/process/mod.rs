//! The container process's identity and limits: rlimits, user and groups, capabilities,
//! no_new_privs, umask, and finding the program to run.

pub mod capabilities;

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimitType, Process};

use crate::syscall::{Syscall, SyscallError};

/// What can go wrong while setting up the process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A system call failed.
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    /// The program is not there.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The program is there but cannot be run.
    #[error("exec: {}: permission denied", .0.display())]
    NotExecutable(PathBuf),
    /// A string with a NUL byte in it.
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
}

/// The `RLIMIT_*` number of an rlimit type.
pub fn rlimit_resource(t: PosixRlimitType) -> i32 {
    let r = match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    };
    r as i32
}

/// Sets the process's rlimits.
pub fn set_rlimits(sys: &dyn Syscall, process: &Process) -> Result<(), SyscallError> {
    for r in process.rlimits().iter().flatten() {
        sys.setrlimit(rlimit_resource(r.typ()), r.soft(), r.hard())?;
    }
    Ok(())
}

/// Becomes the spec's user with the spec's capabilities, in the order that keeps the rights
/// needed for each step: bounding set, groups, gid, uid (keeping caps), then the cap sets,
/// then no_new_privs.
pub fn set_identity(
    sys: &dyn Syscall,
    process: &Process,
    last_cap: u8,
    set_groups: bool,
) -> Result<(), SyscallError> {
    let caps = process.capabilities().as_ref();
    if let Some(c) = caps {
        capabilities::drop_bounding(sys, c, last_cap)?;
    }
    let user = process.user();
    if set_groups {
        sys.setgroups(user.additional_gids().as_deref().unwrap_or(&[]))?;
    }
    sys.set_keep_caps(true)?;
    sys.setgid(user.gid())?;
    sys.setuid(user.uid())?;
    sys.set_keep_caps(false)?;
    if let Some(c) = caps {
        capabilities::set_sets(sys, c)?;
    }
    if process.no_new_privileges() == Some(true) {
        sys.set_no_new_privs()?;
    }
    Ok(())
}

/// The value of `PATH` in an environment list.
fn path_var(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Finds `arg0` like execvp would, relative to the current root (call it after pivot_root).
pub fn find_executable(arg0: &str, env: &[String], cwd: &Path) -> Result<PathBuf, ProcessError> {
    let candidates: Vec<PathBuf> = if arg0.contains('/') {
        vec![cwd.join(arg0)]
    } else {
        path_var(env)
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(arg0))
            .collect()
    };
    let mut denied = None;
    for c in candidates {
        match std::fs::metadata(&c) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(c),
            Ok(_) => denied = Some(c),
            Err(_) => {}
        }
    }
    match denied {
        Some(p) => Err(ProcessError::NotExecutable(p)),
        None => Err(ProcessError::NotFound(arg0.to_string())),
    }
}

/// C strings for execve.
pub fn c_strings(items: &[String]) -> Result<Vec<CString>, ProcessError> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| ProcessError::Nul(s.clone())))
        .collect()
}

/// The home directory of `uid` in a passwd file's text (`/` when it has none), as runc
/// finds it in the container's `/etc/passwd`.
pub fn home_of(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
        })
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// The environment with a default `PATH`, and `HOME` from `passwd` (the container's
/// `/etc/passwd` text, read after pivot_root) when the spec sets none, as runc does.
pub fn effective_env(process: &Process, passwd: Option<&str>) -> Vec<String> {
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            home_of(passwd.unwrap_or(""), process.user().uid())
        ));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};
    use oci_spec::runtime::{PosixRlimitBuilder, ProcessBuilder, UserBuilder};

    #[test]
    fn identity_order() {
        let p = ProcessBuilder::default()
            .user(
                UserBuilder::default()
                    .uid(1000u32)
                    .gid(100u32)
                    .additional_gids(vec![5u32, 6])
                    .build()
                    .unwrap(),
            )
            .no_new_privileges(true)
            .build()
            .unwrap();
        let sys = RecordingSyscall::default();
        set_identity(&sys, &p, 40, true).unwrap();
        let calls = sys.calls();
        assert!(
            calls.contains(&Call::DropBounding(21)),
            "the default set has no CAP_SYS_ADMIN"
        );
        let capset = calls
            .iter()
            .position(|c| matches!(c, Call::Capset(_)))
            .unwrap();
        assert!(capset > calls.iter().position(|c| *c == Call::Setuid(1000)).unwrap());
        assert_eq!(
            calls
                .into_iter()
                .filter(|c| !matches!(
                    c,
                    Call::DropBounding(_) | Call::Capset(_) | Call::RaiseAmbient(_)
                ))
                .collect::<Vec<_>>(),
            vec![
                Call::Setgroups(vec![5, 6]),
                Call::KeepCaps(true),
                Call::Setgid(100),
                Call::Setuid(1000),
                Call::KeepCaps(false),
                Call::NoNewPrivs
            ]
        );
    }

    #[test]
    fn rlimits() {
        let p = ProcessBuilder::default()
            .rlimits(vec![PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(10u64)
                .hard(20u64)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let sys = RecordingSyscall::default();
        set_rlimits(&sys, &p).unwrap();
        assert_eq!(
            sys.calls(),
            vec![Call::Setrlimit {
                resource: libc::RLIMIT_NOFILE as i32,
                soft: 10,
                hard: 20
            }]
        );
    }

    #[test]
    fn executable_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("prog");
        std::fs::write(&bin, "").unwrap();
        let env = vec![format!("PATH=/nonexistent:{}", tmp.path().display())];
        assert!(matches!(
            find_executable("prog", &env, Path::new("/")),
            Err(ProcessError::NotExecutable(_))
        ));
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_executable("prog", &env, Path::new("/")).unwrap(), bin);
        assert!(matches!(
            find_executable("nope", &env, Path::new("/")),
            Err(ProcessError::NotFound(_))
        ));
    }

    #[test]
    fn default_env() {
        let p = ProcessBuilder::default()
            .env(vec!["A=1".to_string()])
            .build()
            .unwrap();
        let env = effective_env(&p, Some("root:x:0:0:root:/root:/bin/sh\n"));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert!(env.contains(&"HOME=/root".to_string()));
        assert!(effective_env(&p, None).contains(&"HOME=/".to_string()));
        assert_eq!(home_of("a:x:1000:1000::/home/a:/bin/sh\n", 1000), "/home/a");
        assert_eq!(home_of("a:x:1000:1000::/home/a:/bin/sh\n", 7), "/");
    }
}
