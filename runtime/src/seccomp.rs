//! Seccomp filters from the spec's `linux.seccomp`.
//!
//! Built with the `libseccomp` crate (bindings to libseccomp, the library runc, crun and youki
//! use). Chosen over the pure-Rust `seccompiler` because OCI profiles need what only
//! libseccomp does: a different action per rule (Docker's profile mixes `SCMP_ACT_ALLOW` with
//! `SCMP_ACT_ERRNO` rules and errno values), several architectures in one filter (x86_64 with
//! x86 and x32), syscall names resolved per architecture, and argument comparisons including
//! masked equality. The cost is a build dependency on `libseccomp-dev` (pkg-config finds it)
//! and a run-time one on `libseccomp2`, which every Debian host running runc already has.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// What can go wrong with a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// libseccomp refused something.
    #[error("seccomp: {what}: {source}")]
    Lib {
        what: String,
        source: libseccomp::error::SeccompError,
    },
    /// The profile asks for something not supported.
    #[error("seccomp: {0}")]
    Unsupported(String),
}

fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Lib { what, source }
}

/// The libseccomp action for a spec action.
pub fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY (seccomp listeners) is not supported".into(),
            ))
        }
    })
}

fn compare_op(op: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Builds (but does not load) the filter.
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    if s.listener_path().is_some() {
        return Err(SeccompError::Unsupported(
            "seccomp listeners are not supported".into(),
        ));
    }
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("new filter"))?;
    for arch in s.architectures().iter().flatten() {
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(lib(format!("architecture {name}")))?;
        if !ctx.is_arch_present(a).unwrap_or(false) {
            ctx.add_arch(a)
                .map_err(lib(format!("add architecture {name}")))?;
        }
    }
    for f in s.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ctx.set_ctl_log(true).map_err(lib("flag log"))?
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                ctx.set_ctl_tsync(true).map_err(lib("flag tsync"))?
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true).map_err(lib("flag spec_allow"))?
            }
        };
    }
    // no_new_privs is the process spec's business, set by the runtime itself.
    ctx.set_ctl_nnp(false).map_err(lib("nnp"))?;
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let args = rule.args().clone().unwrap_or_default();
        let cmps: Vec<ScmpArgCompare> = args
            .iter()
            .map(|a| {
                ScmpArgCompare::new(
                    a.index() as u32,
                    compare_op(a.op(), a.value_two()),
                    a.value(),
                )
            })
            .collect();
        // Comparisons of one argument index are alternatives (runc adds one rule each);
        // comparisons of different indexes must all hold (one rule with all of them).
        let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "unknown syscall in seccomp profile, skipped");
                continue;
            };
            if repeated {
                for c in &cmps {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map_err(lib(format!("rule for {name}")))?;
                }
            } else {
                ctx.add_rule_conditional(act, sc, &cmps)
                    .map_err(lib(format!("rule for {name}")))?;
            }
        }
    }
    Ok(ctx)
}

/// Loads a built filter into the calling thread.
pub fn load(ctx: &ScmpFilterContext) -> Result<(), SeccompError> {
    ctx.load().map_err(lib("load"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_docker_like_profile() {
        let profile: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
                "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[
                  {"names":["read","write","exit_group","no_such_syscall"],"action":"SCMP_ACT_ALLOW"},
                  {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                  {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[
                     {"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                  {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[
                     {"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}]}
                ]}"#,
        )
        .unwrap();
        let ctx = build(&profile).unwrap();
        let out = tempfile::tempfile().unwrap();
        ctx.export_bpf(&out).unwrap();
        assert!(out.metadata().unwrap().len() > 0);
    }

    #[test]
    fn notify_is_refused() {
        let profile: LinuxSeccomp =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).unwrap();
        assert!(matches!(build(&profile), Err(SeccompError::Unsupported(_))));
    }
}
