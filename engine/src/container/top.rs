//! `strata top`: the container's processes as the host's `ps` shows them.
//!
//! As Docker does: the pids come from the container's cgroup, `ps` runs on the host with the
//! user's options (default `-ef`) and `-q <pids>` (retried without it for options that cannot
//! take it), and only the rows whose PID is in the container are kept, with the thread rows
//! (`-` in the PID column) that follow one of them.

use super::record::Status;
use super::{ContainerError, Containers, Result};

/// The titles and rows of `ps` output for the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// Why `top` failed.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("specifying \"{0}\" is not allowed: it would rename the PID column")]
    RenamesPid(String),
    #[error("ps: {0}")]
    Ps(String),
    #[error("ps output has no PID column (use options that show it)")]
    NoPidColumn,
    #[error("ps output has an unexpected pid {0:?}")]
    BadPid(String),
}

/// Refuses options like `-o user=PID` that would make another column look like the PID one
/// (only `pid=…` may rename the PID column).
pub fn check_args(args: &[String]) -> Result<(), TopError> {
    for word in args.iter().flat_map(|a| a.split([',', ' '])) {
        if let Some((k, v)) = word.split_once('=') {
            let k = k.rsplit(' ').next().unwrap_or(k);
            if v.trim_start().starts_with("PID") && k != "pid" {
                return Err(TopError::RenamesPid(format!("{k}={v}")));
            }
        }
    }
    Ok(())
}

/// Keeps the rows of `output` whose PID is in `pids` (and the thread rows after them); the
/// last column takes whatever is left of a row (a command with spaces).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<Top, TopError> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or(TopError::NoPidColumn)?;
    let mut top = Top {
        titles,
        processes: Vec::new(),
    };
    let n = top.titles.len();
    let mut in_container = false;
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < n {
            continue;
        }
        let keep = match fields[pid_col] {
            "-" => in_container,
            p => {
                let pid: i32 = p.parse().map_err(|_| TopError::BadPid(p.to_string()))?;
                in_container = pids.contains(&pid);
                in_container
            }
        };
        if keep {
            let mut row: Vec<String> = fields[..n - 1].iter().map(|s| s.to_string()).collect();
            row.push(fields[n - 1..].join(" "));
            top.processes.push(row);
        }
    }
    Ok(top)
}

/// Runs `ps` with `args`; its stdout, or the first line of its complaint.
async fn ps(args: &[String]) -> Result<String, TopError> {
    let out = tokio::process::Command::new("ps")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .await
        .map_err(|e| TopError::Ps(format!("cannot run ps: {e}")))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(TopError::Ps(if first.is_empty() {
        format!("exited with {}", out.status)
    } else {
        first.trim().to_string()
    }))
}

impl Containers {
    /// The processes of a running container, as `ps ARGS` shows them (default `-ef`).
    pub async fn top(&self, query: &str, ps_args: &[String]) -> Result<Top> {
        let rec = self.resolve(query)?;
        if !matches!(rec.state.status, Status::Running | Status::Paused) {
            return Err(ContainerError::State {
                name: rec.name,
                status: rec.state.status.as_str(),
                hint: "only a running container has processes to show",
            });
        }
        let mut args: Vec<String> = ps_args.iter().filter(|a| !a.is_empty()).cloned().collect();
        if args.is_empty() {
            args.push("-ef".into());
        }
        check_args(&args)?;
        let (root, id) = (self.runtime_root.clone(), rec.id.clone());
        let pids = tokio::task::spawn_blocking(move || {
            strata_runtime::Container::load(&root, &id).and_then(|c| c.pids())
        })
        .await
        .map_err(|e| ContainerError::Runtime(e.to_string()))?
        .map_err(|e| ContainerError::Runtime(format!("the processes of {}: {e}", rec.name)))?;
        let list = pids
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut with_pids = args.clone();
        with_pids.push(format!("-q{list}"));
        let output = match ps(&with_pids).await {
            Ok(o) => o,
            // Some options (like f) cannot be combined with -q.
            Err(_) => ps(&args).await?,
        };
        let top = parse_ps(&output, &pids)?;
        self.emit(&rec, "top");
        Ok(top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_container_rows_and_joins_the_command() {
        let out = "UID PID PPID C STIME TTY TIME CMD\n\
                   root 1 0 0 10:00 ? 00:00:01 /sbin/init splash\n\
                   root 42 1 0 10:01 ? 00:00:00 sleep 100\n\
                   root 43 42 0 10:01 ? 00:00:00 sh -c echo hi\n";
        let t = parse_ps(out, &[42, 43]).unwrap();
        assert_eq!(t.titles.len(), 8);
        assert_eq!(t.processes.len(), 2);
        assert_eq!(t.processes[1][7], "sh -c echo hi");
    }

    #[test]
    fn thread_rows_follow_their_process() {
        let out = "PID TID CMD\n7 - a\n- 7 -\n8 - b\n- 8 -\n";
        let t = parse_ps(out, &[8]).unwrap();
        assert_eq!(t.processes, vec![vec!["8", "-", "b"], vec!["-", "8", "-"]]);
    }

    #[test]
    fn pid_column_rules() {
        assert!(matches!(
            parse_ps("USER CMD\nroot x\n", &[1]),
            Err(TopError::NoPidColumn)
        ));
        assert!(check_args(&["-o".into(), "pid=PID,comm".into()]).is_ok());
        assert!(matches!(
            check_args(&["-o".into(), "user=PID".into()]),
            Err(TopError::RenamesPid(_))
        ));
        assert!(check_args(&["aux".into()]).is_ok());
    }
}
