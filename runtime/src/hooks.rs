//! OCI hooks: each is run with the container's state document on its stdin, its own args and
//! env, and an optional timeout in seconds.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// A hook that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("{kind} hook {}: cannot run: {source}", .path.display())]
    Spawn {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// It exited non-zero or was killed.
    #[error("{kind} hook {} failed: {status}{}", .path.display(), if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Failed {
        kind: &'static str,
        path: PathBuf,
        status: String,
        stderr: String,
    },
    /// It ran longer than its timeout.
    #[error("{kind} hook {} timed out after {secs}s", .path.display())]
    Timeout {
        kind: &'static str,
        path: PathBuf,
        secs: i64,
    },
    /// A zero or negative timeout.
    #[error("{kind} hook {} has an invalid timeout {secs}", .path.display())]
    BadTimeout {
        kind: &'static str,
        path: PathBuf,
        secs: i64,
    },
}

/// Runs one hook to completion.
pub fn run_hook(kind: &'static str, hook: &Hook, state_json: &str) -> Result<(), HookError> {
    let path = hook.path().clone();
    if let Some(t) = hook.timeout() {
        if t <= 0 {
            return Err(HookError::BadTimeout {
                kind,
                path,
                secs: t,
            });
        }
    }
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(&path);
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut delay = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => return Err(HookError::Spawn { kind, path, source }),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                kind,
                path,
                secs: hook.timeout().unwrap_or(0),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    Err(HookError::Failed {
        kind,
        path,
        status: status.to_string(),
        stderr: stderr.trim().to_string(),
    })
}

/// Runs a list of hooks in order, stopping at the first failure.
pub fn run_hooks(
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state_json: &str,
) -> Result<(), HookError> {
    for h in hooks.into_iter().flatten() {
        tracing::debug!(kind, path = %h.path().display(), "running hook");
        run_hook(kind, h, state_json)?;
    }
    Ok(())
}

/// Runs a list of hooks whose failures only warrant a warning (poststart, poststop).
pub fn run_hooks_warn(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &str) {
    for h in hooks.into_iter().flatten() {
        if let Err(e) = run_hook(kind, h, state_json) {
            tracing::warn!(error = %e, "hook failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        let b = HookBuilder::default().path("/bin/sh").args(vec![
            "sh".into(),
            "-c".into(),
            script.into(),
        ]);
        match timeout {
            Some(t) => b.timeout(t).build().unwrap(),
            None => b.build().unwrap(),
        }
    }

    #[test]
    fn state_on_stdin_and_failures() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        run_hook(
            "prestart",
            &sh(&format!("cat > {}", out.display()), None),
            "{\"id\":\"x\"}",
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"x\"}");
        let err = run_hook("prestart", &sh("echo boom >&2; exit 3", None), "{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("boom") && err.contains('3'), "{err}");
        assert!(matches!(
            run_hook("prestart", &sh("sleep 5", Some(1)), "{}"),
            Err(HookError::Timeout { .. })
        ));
    }
}
