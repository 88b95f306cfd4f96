//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), as Docker applies
//! them: which exits start a container again, and how long the engine waits before it does.
//!
//! - `on-failure[:N]` restarts after a non-zero exit, at most N times (no limit without N);
//! - `always` and `unless-stopped` restart after any exit;
//! - a container stopped or killed by hand is not restarted (until it is started by hand);
//! - when the engine starts, `always` containers start again, `unless-stopped` ones unless
//!   they were stopped by hand, and `on-failure` ones do not.
//!
//! The wait before a restart starts at 100 ms and doubles after each restart, up to a minute;
//! it starts over when the container ran at least 10 seconds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::record::{Record, Status};
use super::{ContainerError, Containers, Restarts};

/// The first wait before a restart.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait before a restart.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A container that ran this long restarts after [`FIRST_DELAY`] again.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// A restart policy's kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    No,
    OnFailure,
    Always,
    UnlessStopped,
}

/// A parsed restart policy (the default: no).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub kind: Kind,
    /// on-failure's N (0: no limit).
    pub max_retries: u32,
}

impl Policy {
    /// Parses Docker's forms: "" or "no", "on-failure", "on-failure:N", "always",
    /// "unless-stopped".
    pub fn parse(s: &str) -> Result<Policy, String> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let kind = match name {
            "" | "no" => Kind::No,
            "on-failure" => Kind::OnFailure,
            "always" => Kind::Always,
            "unless-stopped" => Kind::UnlessStopped,
            _ => {
                return Err(format!(
                    "invalid restart policy {s:?}: use no, on-failure[:max-retries], always or unless-stopped"
                ))
            }
        };
        let max_retries = match count {
            None => 0,
            Some(_) if kind != Kind::OnFailure => {
                return Err(format!(
                    "invalid restart policy {s:?}: a maximum retry count can only be used with on-failure"
                ))
            }
            Some(c) => c.parse::<u32>().map_err(|_| {
                format!(
                    "invalid restart policy {s:?}: the maximum retry count must be a number of 0 or more"
                )
            })?,
        };
        Ok(Policy { kind, max_retries })
    }

    /// Docker's `HostConfig.RestartPolicy.Name`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::No => "no",
            Kind::OnFailure => "on-failure",
            Kind::Always => "always",
            Kind::UnlessStopped => "unless-stopped",
        }
    }

    /// Whether the policy ever restarts (an auto-removed container must have none).
    pub fn restarts(&self) -> bool {
        self.kind != Kind::No
    }

    /// Whether a container that exited with `exit_code` while the engine watched it starts
    /// again, after `restart_count` restarts since it was last started by hand.
    pub fn after_exit(&self, exit_code: i32, manually_stopped: bool, restart_count: u32) -> bool {
        if manually_stopped {
            return false;
        }
        match self.kind {
            Kind::No => false,
            Kind::Always | Kind::UnlessStopped => true,
            Kind::OnFailure => {
                exit_code != 0 && (self.max_retries == 0 || restart_count < self.max_retries)
            }
        }
    }

    /// Whether a stopped container starts when the engine starts.
    pub fn at_engine_start(&self, manually_stopped: bool) -> bool {
        match self.kind {
            Kind::Always => true,
            Kind::UnlessStopped => !manually_stopped,
            Kind::No | Kind::OnFailure => false,
        }
    }

    /// Whether a container that exited while the engine was down starts again: `always` even
    /// when it had been killed by hand (the engine starting restarts it anyway).
    pub fn after_exit_while_down(
        &self,
        exit_code: i32,
        manually_stopped: bool,
        restart_count: u32,
    ) -> bool {
        self.after_exit(exit_code, manually_stopped, restart_count)
            || self.at_engine_start(manually_stopped)
    }
}

/// The growing wait between restarts of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    /// The wait before the next restart of a container that ran for `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        let d = match self.last {
            Some(last) if ran < RESET_AFTER => (last * 2).min(MAX_DELAY),
            _ => FIRST_DELAY,
        };
        self.last = Some(d);
        d
    }
}

impl Containers {
    /// Runs `f` on a container's restart bookkeeping.
    pub(super) fn restarts_of<T>(&self, id: &str, f: impl FnOnce(&mut Restarts) -> T) -> T {
        let mut all = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(id.to_string()).or_default())
    }

    /// Forgets a removed container's bookkeeping.
    pub(super) fn forget_restarts(&self, id: &str) {
        let gone = self
            .restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(p) = gone.and_then(|r| r.pending) {
            p.notify_one();
        }
    }

    /// After `rec` exited: the wait before its policy starts it again, or None if it does not.
    pub(super) fn restarts_after(&self, rec: &Record, while_down: bool) -> Option<Duration> {
        let policy = Policy::parse(&rec.settings.restart_policy).ok()?;
        let st = &rec.state;
        let again = if while_down {
            policy.after_exit_while_down(st.exit_code, st.manually_stopped, st.restart_count)
        } else {
            policy.after_exit(st.exit_code, st.manually_stopped, st.restart_count)
        };
        again.then(|| {
            self.restarts_of(&rec.id, |r| {
                // A run the engine did not see start counts as a long one.
                let ran = r.started.take().map_or(RESET_AFTER, |t| t.elapsed());
                r.backoff.next(ran)
            })
        })
    }

    /// Starts the (restarting) container again after `delay`, unless cancelled meanwhile.
    pub(super) fn schedule_restart(self: &Arc<Self>, id: &str, delay: Duration) {
        let timer = Arc::new(Notify::new());
        if let Some(old) = self.restarts_of(id, |r| r.pending.replace(timer.clone())) {
            old.notify_one();
        }
        tracing::info!(id, ?delay, "restarting the container by its restart policy");
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = timer.notified() => {}
                _ = tokio::time::sleep(delay) => me.restart_now(&id, &timer).await,
            }
        });
    }

    /// Cancels a pending restart (stop, kill, rm); true if one was pending. The caller holds
    /// the container's lock.
    pub(super) fn cancel_restart(&self, id: &str) -> bool {
        match self.restarts_of(id, |r| r.pending.take()) {
            Some(timer) => {
                timer.notify_one();
                true
            }
            None => false,
        }
    }

    async fn restart_now(self: &Arc<Self>, id: &str, timer: &Arc<Notify>) {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let ours = self.restarts_of(id, |r| match &r.pending {
            Some(p) if Arc::ptr_eq(p, timer) => r.pending.take(),
            _ => None,
        });
        if ours.is_none() {
            return; // cancelled while it waited for the lock
        }
        let Ok(Some(rec)) = self.records.get(id) else {
            return;
        };
        if rec.state.status != Status::Restarting {
            return;
        }
        let Err(e) = self.run(rec).await else { return };
        if matches!(&e, ContainerError::Storage(m) if m.starts_with("storage driver unavailable")) {
            // The storage plugin is being restarted: try again later.
            tracing::warn!(%e, id, "restarting the container failed; trying again");
            let delay = self.restarts_of(id, |r| r.backoff.next(Duration::ZERO));
            self.schedule_restart(id, delay);
            return;
        }
        tracing::error!(%e, id, "restarting the container by its restart policy failed");
        if let Ok(Some(mut rec)) = self.records.get(id) {
            rec.state.status = Status::Exited;
            rec.state.error = e.to_string();
            if let Err(e) = self.records.update(&rec) {
                tracing::error!(%e, id, "recording a failed restart failed");
            }
            self.notify(&rec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms_parse() {
        let p = |s| Policy::parse(s).unwrap();
        assert_eq!(p("").kind, Kind::No);
        assert_eq!(p("no").name(), "no");
        assert_eq!(
            p("on-failure"),
            Policy {
                kind: Kind::OnFailure,
                max_retries: 0
            }
        );
        assert_eq!(p("on-failure:3").max_retries, 3);
        assert_eq!(p("always").name(), "always");
        assert_eq!(p("unless-stopped").name(), "unless-stopped");
    }

    #[test]
    fn bad_policies_are_named() {
        for (s, says) in [
            ("sometimes", "use no, on-failure"),
            ("always:3", "only be used with on-failure"),
            ("on-failure:x", "must be a number"),
            ("on-failure:-1", "must be a number"),
            ("on-failure:1:2", "must be a number"),
        ] {
            let e = Policy::parse(s).unwrap_err();
            assert!(
                e.contains(says) && e.contains(&format!("{s:?}")),
                "{s}: {e}"
            );
        }
    }

    #[test]
    fn which_exits_restart() {
        let p = |s| Policy::parse(s).unwrap();
        assert!(!p("no").after_exit(1, false, 0));
        assert!(p("on-failure").after_exit(1, false, 100));
        assert!(!p("on-failure").after_exit(0, false, 0));
        assert!(p("on-failure:2").after_exit(1, false, 1));
        assert!(!p("on-failure:2").after_exit(1, false, 2));
        for s in ["always", "unless-stopped"] {
            assert!(p(s).after_exit(0, false, 1000), "{s}");
            assert!(!p(s).after_exit(0, true, 0), "{s} stopped by hand");
        }
    }

    #[test]
    fn what_the_engine_starts() {
        let p = |s| Policy::parse(s).unwrap();
        assert!(p("always").at_engine_start(true));
        assert!(p("unless-stopped").at_engine_start(false));
        assert!(!p("unless-stopped").at_engine_start(true));
        assert!(!p("on-failure").at_engine_start(false));
        assert!(!p("no").at_engine_start(false));
        assert!(p("always").after_exit_while_down(0, true, 0));
        assert!(p("on-failure:1").after_exit_while_down(3, false, 0));
        assert!(!p("on-failure:1").after_exit_while_down(3, false, 1));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(5);
        let waits: Vec<_> = (0..4).map(|_| b.next(quick)).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800].map(Duration::from_millis).to_vec()
        );
        for _ in 0..20 {
            b.next(quick);
        }
        assert_eq!(b.next(quick), MAX_DELAY);
        assert_eq!(b.next(RESET_AFTER), FIRST_DELAY);
        assert_eq!(b.next(quick), Duration::from_millis(200));
    }
}
