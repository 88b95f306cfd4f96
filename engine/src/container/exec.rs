//! `strata exec`: another process in a running container, through `strata-runtime exec`, with
//! the container's own settings (capabilities, environment, user) unless told otherwise.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use strata_proto::engine::{exec_output::Kind, ExecOutput};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::record::Status;
use super::{user, ContainerError, Containers};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub detach: bool,
}

fn find_runtime() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("strata-runtime")));
    beside.filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join("strata-runtime"))
            .find(|p| p.is_file())
    })
}

impl Containers {
    /// Starts `spec` in the container; output and the exit code go to `tx`.
    pub async fn exec(
        &self,
        query: &str,
        spec: ExecSpec,
        tx: mpsc::Sender<Result<ExecOutput, tonic::Status>>,
    ) -> Result<(), ContainerError> {
        let rec = self.resolve(query)?;
        if rec.state.status != Status::Running {
            let hint = if rec.state.status == Status::Paused {
                "unpause it first"
            } else {
                "start it first"
            };
            return Err(ContainerError::State {
                name: rec.name,
                status: rec.state.status.as_str(),
                hint,
            });
        }
        if spec.cmd.is_empty() {
            return Err(ContainerError::Runtime(
                "exec: a command is required".into(),
            ));
        }
        let bundle = self.bundle(&rec.id);
        let config: Value = std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ContainerError::Runtime(format!("read the spec of container {}", rec.name))
            })?;
        let mut process = config["process"].clone();
        process["args"] = serde_json::json!(spec.cmd);
        process["terminal"] = Value::Bool(false);
        let mut env: Vec<String> = process["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        for e in &spec.env {
            let key = e.split('=').next().unwrap_or_default();
            if key.is_empty() {
                return Err(ContainerError::Spec(super::spec::SpecError::Env(e.clone())));
            }
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        process["env"] = serde_json::json!(env);
        if !spec.working_dir.is_empty() {
            process["cwd"] = Value::String(spec.working_dir.clone());
        }
        if !spec.user.is_empty() {
            let u = user::resolve(&spec.user, &bundle.join("rootfs")).map_err(|message| {
                ContainerError::Start {
                    name: rec.name.clone(),
                    message,
                }
            })?;
            process["user"] = serde_json::json!({ "uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids });
        }
        let file =
            tempfile::NamedTempFile::new_in(&bundle).map_err(|source| ContainerError::Io {
                op: "create a temporary file in",
                path: bundle.clone(),
                source,
            })?;
        std::fs::write(
            file.path(),
            serde_json::to_vec(&process).unwrap_or_default(),
        )
        .map_err(|source| ContainerError::Io {
            op: "write",
            path: file.path().to_path_buf(),
            source,
        })?;
        let runtime = find_runtime().ok_or_else(|| {
            ContainerError::Runtime(
                "strata-runtime is not installed next to stratad or on PATH".into(),
            )
        })?;
        let mut cmd = tokio::process::Command::new(runtime);
        cmd.arg("--root")
            .arg(&self.runtime_root)
            .arg("exec")
            .arg("--process")
            .arg(file.path());
        if spec.detach {
            cmd.arg("--detach");
        }
        cmd.arg(&rec.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| ContainerError::Runtime(format!("run strata-runtime exec: {e}")))?;
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ContainerError::Runtime("exec: no output pipes".into()));
        };
        tokio::spawn(async move {
            let _file = file;
            let (txo, txe) = (tx.clone(), tx.clone());
            let pump_out = async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = out.read(&mut buf).await {
                    if n == 0
                        || txo
                            .send(Ok(ExecOutput {
                                kind: Some(Kind::Stdout(buf[..n].to_vec())),
                            }))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            };
            let pump_err = async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0
                        || txe
                            .send(Ok(ExecOutput {
                                kind: Some(Kind::Stderr(buf[..n].to_vec())),
                            }))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            };
            tokio::join!(pump_out, pump_err);
            let code = match child.wait().await {
                Ok(s) => s.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
                }),
                Err(_) => 255,
            };
            let _ = tx
                .send(Ok(ExecOutput {
                    kind: Some(Kind::ExitCode(code)),
                }))
                .await;
        });
        Ok(())
    }
}
