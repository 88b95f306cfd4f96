//! The union mounts at `<root>/mnt/<id>` and the processes that serve them.
//!
//! In FUSE mode each mounted snapshot has its own FUSE server: this binary re-run as
//! `strata-aufs fuse --root R --id ID [--read-only]`, in its own process group, so it outlives
//! a plugin restart (containers keep their root filesystem) and a signal to the plugin's group
//! does not reach it. The supervisor starts them, adopts the ones an earlier run left, and
//! watches them: when one dies under a mount (killed, crashed), the kernel fails every call on
//! that mount at once with ENOTCONN (ECONNABORTED for calls already queued; nothing hangs), and the supervisor logs the failure,
//! counts it in Status and mounts the snapshot again, so the next mount of it works.
//!
//! A server that does not answer within `aufs.fuse_timeout` (stopped, deadlocked) is taken for
//! hung: a forced unmount aborts its connection, so callers waiting on it get ECONNABORTED
//! instead of waiting forever, and it is reported and remounted like a dead one.
//!
//! A server's stderr is relayed into the plugin's log while the plugin that started it runs;
//! after a plugin restart, writes to it fail quietly.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::mount::{umount2, MntFlags};
use strata_snapshotter::error::{Error, Result};

use crate::kernel;
use crate::layout::Layout;

/// FUSE_SUPER_MAGIC.
const FUSE_MAGIC: u64 = 0x6573_5546;
/// AUFS_SUPER_MAGIC.
const AUFS_MAGIC: u64 = 0x6175_6673;
/// How often mounts are checked.
const HEALTH_PERIOD: Duration = Duration::from_millis(500);
/// How long a FUSE server may take to answer a probe by default (`aufs.fuse_timeout`).
pub const DEFAULT_FUSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How unions are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The kernel's aufs.
    Kernel {
        /// Whether `dirperm1` is passed.
        dirperm1: bool,
    },
    /// Our FUSE union filesystem.
    Fuse,
}

/// What a mountpoint holds.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Live,
    Dead,
    /// The server did not answer within the timeout (stopped, deadlocked).
    Hung,
    Absent,
}

/// statfs of `mnt`, given up after `timeout` (the call itself then stays blocked on a thread
/// of its own until the connection is aborted).
fn probe(mnt: &Path, timeout: Duration) -> Probe {
    let (tx, rx) = mpsc::channel();
    let path = mnt.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("aufs-probe".into())
        .spawn(move || {
            let _ = tx.send(nix::sys::statfs::statfs(&path));
        });
    if spawned.is_err() {
        // No thread to spare: probe inline rather than not at all.
        return classify(nix::sys::statfs::statfs(mnt));
    }
    match rx.recv_timeout(timeout) {
        Ok(r) => classify(r),
        Err(_) => Probe::Hung,
    }
}

fn classify(r: nix::Result<nix::sys::statfs::Statfs>) -> Probe {
    match r {
        Ok(s) if [FUSE_MAGIC, AUFS_MAGIC].contains(&(s.filesystem_type().0 as u64)) => Probe::Live,
        Ok(_) => Probe::Absent,
        Err(nix::errno::Errno::ENOTCONN | nix::errno::Errno::ECONNABORTED) => Probe::Dead,
        Err(_) => Probe::Absent,
    }
}

#[derive(Debug, Default)]
struct State {
    /// Snapshots that should be mounted, and whether read-only.
    wanted: HashMap<u64, bool>,
    /// Server pids we started, by snapshot.
    servers: HashMap<u64, u32>,
}

/// Failures seen, for Status.
#[derive(Debug, Default, Clone)]
pub struct Failures {
    /// How many servers died under a mount.
    pub count: u64,
    /// What the last one was.
    pub last: Option<String>,
}

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    layout: Layout,
    exe: PathBuf,
    mode: Mode,
    /// A server that does not answer a probe within this long is taken for hung.
    timeout: Duration,
    state: Mutex<State>,
    failures: Mutex<Failures>,
}

fn driver_err(message: String) -> Error {
    Error::Driver {
        driver: "aufs",
        message,
    }
}

impl Supervisor {
    /// Starts supervising the mounts under `layout`, adopting live ones an earlier run left,
    /// and starts the health thread.
    pub fn start(layout: Layout, mode: Mode, timeout: Duration) -> Result<Arc<Self>> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("find the plugin's own binary", "/proc/self/exe", e))?;
        let sup = Arc::new(Supervisor {
            layout,
            exe,
            mode,
            timeout,
            state: Mutex::new(State::default()),
            failures: Mutex::new(Failures::default()),
        });
        sup.adopt()?;
        let weak = Arc::downgrade(&sup);
        std::thread::Builder::new()
            .name("aufs-health".into())
            .spawn(move || loop {
                std::thread::sleep(HEALTH_PERIOD);
                match weak.upgrade() {
                    Some(s) => s.check_all(),
                    None => return,
                }
            })
            .map_err(|e| Error::io("start the health thread for", sup.layout.root(), e))?;
        Ok(sup)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes over the mounts under `mnt/` (from /proc/self/mountinfo), live or dead.
    fn adopt(&self) -> Result<()> {
        let mnt_dir = self.layout.dirs()[2].clone();
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
        let mut st = self.state();
        for line in info.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(point) = fields.get(4) else { continue };
            let point = PathBuf::from(unescape(point));
            let point = point.as_path();
            let Ok(rest) = point.strip_prefix(&mnt_dir) else {
                continue;
            };
            let Some(id) = rest.to_str().and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            let ro = fields
                .get(5)
                .is_some_and(|o| o.split(',').any(|x| x == "ro"));
            tracing::info!(id, ro, "adopting the union mounted by an earlier run");
            st.wanted.insert(id, ro);
        }
        Ok(())
    }

    /// The number of servers this run started that are still running.
    pub fn servers(&self) -> usize {
        self.state().servers.len()
    }

    /// How long a server may take to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The failures seen so far.
    pub fn failures(&self) -> Failures {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes sure snapshot `id`'s union is mounted at `mnt/<id>`.
    pub fn ensure(self: &Arc<Self>, id: u64, ro: bool) -> Result<()> {
        let mut st = self.state();
        st.wanted.insert(id, ro);
        self.mount_locked(&mut st, id, ro)
    }

    fn mount_locked(self: &Arc<Self>, st: &mut State, id: u64, ro: bool) -> Result<()> {
        let mnt = self.layout.mnt(&id.to_string());
        match probe(&mnt, self.timeout) {
            Probe::Live => return Ok(()),
            Probe::Dead => detach(&mnt)?,
            Probe::Hung => {
                self.abort(st, id, &mnt);
                detach(&mnt)?;
            }
            Probe::Absent => {}
        }
        match self.mode {
            Mode::Fuse => self.spawn(st, id, ro),
            Mode::Kernel { dirperm1 } => {
                let branches = self.layout.branches(&id.to_string()).map_err(|e| {
                    Error::io(
                        "read the branches of",
                        self.layout.layers(&id.to_string()),
                        e,
                    )
                })?;
                let (rw, ro_branches) = if ro {
                    (None, &branches[1..])
                } else {
                    (Some(branches[0].as_path()), &branches[1..])
                };
                let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                    .ok()
                    .flatten()
                    .unwrap_or(4096) as usize;
                let plan = kernel::plan(rw, ro_branches, dirperm1, page);
                kernel::mount_plan(&mnt, &plan, ro).map_err(|e| Error::io("mount aufs on", &mnt, e))
            }
        }
    }

    fn spawn(self: &Arc<Self>, st: &mut State, id: u64, ro: bool) -> Result<()> {
        let mnt = self.layout.mnt(&id.to_string());
        let mut cmd = Command::new(&self.exe);
        cmd.arg("fuse")
            .arg("--root")
            .arg(self.layout.root())
            .arg("--id")
            .arg(id.to_string());
        if ro {
            cmd.arg("--read-only");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Not inherited: a server outlives the plugin and must not hold the plugin's
            // stderr (a pipe its parent may wait on). Its lines are relayed to our log.
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("start the FUSE server", &self.exe, e))?;
        if let Some(err) = child.stderr.take() {
            let _ = std::thread::Builder::new()
                .name(format!("aufs-fuse-{id}-log"))
                .spawn(move || {
                    for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                        tracing::warn!(id, "FUSE server: {line}");
                    }
                });
        }
        // Its "ready", read on a thread so that a server stuck before mounting cannot hold
        // Mounts up for longer than the timeout.
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let _ = std::thread::Builder::new()
                .name(format!("aufs-fuse-{id}-ready"))
                .spawn(move || {
                    let mut line = String::new();
                    let _ = BufReader::new(out).read_line(&mut line);
                    let _ = tx.send(line);
                });
        }
        let line = rx.recv_timeout(self.timeout).unwrap_or_default();
        if line.trim() != "ready" {
            let _ = child.kill();
            let status = child.wait();
            return Err(driver_err(format!(
                "the FUSE server for snapshot {id} did not mount {} ({}; it has {:?} to); see the plugin log",
                mnt.display(),
                match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                },
                self.timeout,
            )));
        }
        let pid = child.id();
        st.servers.insert(id, pid);
        tracing::debug!(id, pid, mnt = %mnt.display(), "FUSE server mounted");
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name(format!("aufs-fuse-{id}"))
            .spawn(move || {
                let status = child.wait();
                if let Some(sup) = weak.upgrade() {
                    sup.exited(id, pid, status);
                }
            })
            .map_err(|e| Error::io("start the watcher thread for", &mnt, e))?;
        Ok(())
    }

    /// A server we started exited.
    fn exited(self: &Arc<Self>, id: u64, pid: u32, status: io::Result<std::process::ExitStatus>) {
        let mut st = self.state();
        if st.servers.get(&id) != Some(&pid) {
            return;
        }
        st.servers.remove(&id);
        let Some(&ro) = st.wanted.get(&id) else {
            // Unmounted on purpose (commit, remove).
            return;
        };
        let mnt = self.layout.mnt(&id.to_string());
        if probe(&mnt, self.timeout) != Probe::Dead {
            // It ended because its mount went away cleanly.
            return;
        }
        let how = match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        self.failed(
            &mut st,
            id,
            ro,
            &format!("its FUSE server (pid {pid}) exited: {how}"),
        );
    }

    /// Records a dead union and mounts it again.
    fn failed(self: &Arc<Self>, st: &mut State, id: u64, ro: bool, what: &str) {
        let mnt = self.layout.mnt(&id.to_string());
        let message = format!(
            "snapshot {id}: {what}; calls on its mounts fail with ENOTCONN (\"Transport endpoint is not connected\") until they are mounted again"
        );
        tracing::error!(id, mnt = %mnt.display(), "{message}");
        {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            f.count += 1;
            f.last = Some(message);
        }
        match self.mount_locked(st, id, ro) {
            Ok(()) => tracing::warn!(id, "remounted {} after the failure", mnt.display()),
            Err(e) => tracing::error!(%e, id, "remounting after the failure failed"),
        }
    }

    /// Checks every wanted union; dead ones (also those an earlier run started) are reported
    /// and mounted again, hung ones aborted first. Probes run without the lock, so a hung
    /// server never holds up Mounts of other snapshots.
    fn check_all(self: &Arc<Self>) {
        let wanted: Vec<(u64, bool)> = self.state().wanted.iter().map(|(k, v)| (*k, *v)).collect();
        for (id, ro) in wanted {
            let mnt = self.layout.mnt(&id.to_string());
            let found = probe(&mnt, self.timeout);
            if !matches!(found, Probe::Dead | Probe::Hung) {
                continue;
            }
            let mut st = self.state();
            if st.wanted.get(&id) != Some(&ro) {
                continue; // unmounted or remounted meanwhile
            }
            if found == Probe::Hung {
                self.abort(&mut st, id, &mnt);
                let what = format!(
                    "its FUSE server did not answer within {:?} and was stopped",
                    self.timeout
                );
                self.failed(&mut st, id, ro, &what);
            } else if probe(&mnt, self.timeout) == Probe::Dead {
                // Still dead with the lock held: nobody else has remounted it.
                self.failed(&mut st, id, ro, "its FUSE server is gone");
            }
        }
    }

    /// Unmounts snapshot `id`'s union (its server then exits). Mounts others made of it (a
    /// caller's bind) stay until they are unmounted.
    pub fn stop(&self, id: u64) -> Result<()> {
        let mut st = self.state();
        st.wanted.remove(&id);
        st.servers.remove(&id);
        let mnt = self.layout.mnt(&id.to_string());
        match probe(&mnt, self.timeout) {
            Probe::Absent => {}
            Probe::Hung => {
                self.abort(&mut st, id, &mnt);
                detach(&mnt)?;
            }
            Probe::Live | Probe::Dead => detach(&mnt)?,
        }
        Ok(())
    }
}

impl Supervisor {
    /// Ends a hung union: a forced unmount aborts the FUSE connection (every call waiting on
    /// it fails at once), and the server, if this run started it, is killed.
    fn abort(&self, st: &mut State, id: u64, mnt: &Path) {
        tracing::error!(id, mnt = %mnt.display(), timeout = ?self.timeout, "FUSE server does not answer; aborting its connection");
        if let Err(e) = umount2(mnt, MntFlags::MNT_FORCE) {
            // EBUSY: other mounts of it remain, but the connection is aborted all the same.
            tracing::debug!(%e, "forced unmount");
        }
        if let Some(pid) = st.servers.remove(&id) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A mountinfo path with its octal escapes (`\040` for a space, …) undone.
fn unescape(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

fn detach(mnt: &Path) -> Result<()> {
    match umount2(mnt, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("unmount", mnt, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/var/lib/a\\040b/mnt/7"), "/var/lib/a b/mnt/7");
        assert_eq!(unescape("/x\\011y\\134z"), "/x\ty\\z");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/odd\\9"), "/odd\\9");
    }
}
