//! Waiting for OOM kills as they happen (for an engine's `oom` events), on top of the counters
//! that [`Cgroup::oom_kills`] reads after the fact.
//!
//! v1: an eventfd registered for `memory.oom_control` through `cgroup.event_control` (the
//! kernel signals it when the cgroup hits its limit and when the cgroup is removed).
//! v2: inotify on `memory.events`, which the kernel rewrites on every OOM and OOM kill.
//! Either way the watcher then re-reads the `oom_kill` counter and reports only increases.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{write, Cgroup, CgroupError, CgroupMode, Result};

enum Source {
    V1 {
        efd: OwnedFd,
        _control: std::fs::File,
    },
    V2 {
        ifd: OwnedFd,
    },
}

/// Blocks until the container's cgroup sees an OOM kill.
pub struct OomWatcher {
    source: Source,
    cgroup: Cgroup,
    seen: u64,
    dir: PathBuf,
}

impl std::fmt::Debug for OomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OomWatcher")
            .field("dir", &self.dir)
            .field("seen", &self.seen)
            .finish()
    }
}

fn sys(op: &'static str) -> CgroupError {
    CgroupError::Kernel {
        op,
        errno: Errno::last(),
    }
}

fn v1_source(dir: &Path) -> Result<Source> {
    let control_path = dir.join("memory.oom_control");
    let control = std::fs::File::open(&control_path).map_err(|source| CgroupError::Read {
        path: control_path,
        source,
    })?;
    // SAFETY: eventfd with constant flags takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(sys("eventfd"));
    }
    // SAFETY: a successful eventfd returns a new descriptor that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(fd) };
    write(
        dir,
        "cgroup.event_control",
        &format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )?;
    Ok(Source::V1 {
        efd,
        _control: control,
    })
}

fn v2_source(dir: &Path) -> Result<Source> {
    // SAFETY: inotify_init1 with constant flags takes no pointers.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(sys("inotify_init1"));
    }
    // SAFETY: a successful inotify_init1 returns a new descriptor that nothing else owns.
    let ifd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::ffi::CString::new(dir.join("memory.events").as_os_str().as_encoded_bytes())
        .map_err(|_| CgroupError::Invalid("cgroup path contains a NUL byte".into()))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(sys("inotify_add_watch"));
    }
    Ok(Source::V2 { ifd })
}

impl Cgroup {
    /// A watcher for OOM kills in this cgroup, from now on.
    pub fn watch_oom(&self) -> Result<OomWatcher> {
        let dir = self
            .dir_for("memory")
            .ok_or_else(|| CgroupError::Unsupported {
                what: "OOM notification".into(),
                reason: "no memory controller".into(),
            })?
            .to_path_buf();
        let source = if self.mode == CgroupMode::V2 {
            v2_source(&dir)?
        } else {
            v1_source(&dir)?
        };
        Ok(OomWatcher {
            source,
            cgroup: self.clone(),
            seen: self.oom_kills()?,
            dir,
        })
    }
}

impl OomWatcher {
    /// Waits for the next OOM kill; returns the new total, or `None` once the cgroup is gone.
    pub fn wait(&mut self) -> Result<Option<u64>> {
        loop {
            let mut buf = [0u8; 4096];
            let fd = match &self.source {
                Source::V1 { efd, .. } => efd.as_raw_fd(),
                Source::V2 { ifd } => ifd.as_raw_fd(),
            };
            // SAFETY: reading into a local buffer of the stated size.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                return Err(sys("read OOM notification"));
            }
            if !self.dir.exists() {
                return Ok(None);
            }
            // v1 signals when the cgroup runs out of memory, just before the kill is counted:
            // give the killer a moment to finish.
            for _ in 0..200 {
                let now = self.cgroup.oom_kills()?;
                if now > self.seen {
                    self.seen = now;
                    return Ok(Some(now));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}
