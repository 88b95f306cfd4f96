//! Crash points for tests.
//!
//! When the environment variable `STRATA_FAILPOINT` names a point, the process kills itself
//! with SIGKILL when it reaches that point, exactly as an operator's `kill -9` would. The crash
//! tests use it to stop a plugin between two steps of an operation.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Dies with SIGKILL if `STRATA_FAILPOINT` equals `name`.
pub fn hit(name: &str) {
    let armed = ARMED.get_or_init(|| {
        std::env::var("STRATA_FAILPOINT")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if armed.as_deref() == Some(name) {
        tracing::warn!(
            failpoint = name,
            "failpoint reached: killing this process with SIGKILL"
        );
        // A failed kill would leave the test without its crash; aborting is the next best thing.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}
