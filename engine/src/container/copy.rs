//! `strata cp`: facts about a path in a container, a tar of it, and a tar extracted into it.
//!
//! Nothing here ever follows a symlink out of the container's root. Every copy runs on a
//! thread of its own whose root directory is the container's (`unshare(CLONE_FS)` then
//! `chroot`), so the kernel resolves every path, and every symlink met on the way (one in the
//! container or one the tar just made), inside that root, whatever the container's processes
//! change meanwhile:
//! - a running (or paused) container is entered through `/proc/<pid>/root` of its first
//!   process, so its volumes and other mounts are seen; a pidfd makes sure that process is
//!   the container's while its root is opened;
//! - a stopped one has its snapshot mounted in a private mount namespace of that thread (and
//!   its lock held, so it cannot start meanwhile).
//!
//! Paths follow Docker's rules: the source's last component is not followed unless the path
//! ends in `/` or `/.`; the top entry of a tar is named after that component ("." for `/.`,
//! meaning "the directory's contents"); a destination is followed to the end and must be a
//! directory. Extraction uses the layer code's contained extractor ([`apply::extract`]).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use strata_proto::engine::PathStat;
use tokio::sync::{oneshot, OwnedMutexGuard};

use super::record::{Record, Status};
use super::{diff, pidfd, ContainerError, Containers, Result};
use crate::image::apply::{self, ApplyError, ExtractOptions};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("could not find the file {path} in container {container}")]
    NotFound { path: String, container: String },
    #[error("the destination {path} in container {container} is not a directory")]
    NotADirectory { path: String, container: String },
    #[error("copy into {path}: {source}")]
    Extract { path: String, source: ApplyError },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("enter the root of container {container}: {op}: {source}")]
    Enter {
        container: String,
        op: &'static str,
        source: io::Error,
    },
}

impl CopyError {
    /// The gRPC code for this failure.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            CopyError::NotFound { .. } => Code::NotFound,
            CopyError::NotADirectory { .. } => Code::InvalidArgument,
            CopyError::Extract {
                source: ApplyError::Io { .. },
                ..
            } => Code::Internal,
            CopyError::Extract { .. } => Code::InvalidArgument,
            CopyError::Io { source, .. } if source.raw_os_error() == Some(libc::EROFS) => {
                Code::FailedPrecondition
            }
            CopyError::Io { .. } | CopyError::Enter { .. } => Code::Internal,
        }
    }
}

/// An absolute, lexically clean path in the container, keeping a trailing `/` or `/.` (they
/// change what is copied, as in Docker).
pub fn container_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    if s.len() > 1 {
        if p.ends_with("/.") || p == "." {
            s.push_str("/.");
        } else if p.ends_with('/') {
            s.push('/');
        }
    }
    s
}

/// The directory part (with its trailing `/`) and the last part ("" after a trailing `/`),
/// as Go's `filepath.Split`.
fn split(abs: &str) -> (&str, &str) {
    let i = abs.rfind('/').map_or(0, |i| i + 1);
    (&abs[..i], &abs[i..])
}

/// The name of a copy's top entry: the last component, "." for `…/.` and for `/`.
pub fn entry_name(abs: &str) -> String {
    match abs.trim_end_matches('/').rsplit('/').next() {
        None | Some("") => ".".into(),
        Some(n) => n.to_string(),
    }
}

/// A path error: missing (or through a non-directory) is "not found".
fn lookup_err(abs: &str, container: &str, e: io::Error) -> CopyError {
    if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
        CopyError::NotFound {
            path: abs.to_string(),
            container: container.to_string(),
        }
    } else {
        CopyError::Io {
            op: "look up",
            path: abs.to_string(),
            source: e,
        }
    }
}

/// Resolves a source path inside the (current, chrooted) root: every component but the last
/// is followed; the last too after a trailing `/` or `/.`.
fn resolve_source(abs: &str, container: &str) -> Result<(PathBuf, fs::Metadata), CopyError> {
    let (dir, base) = split(abs);
    let rdir = fs::canonicalize(dir).map_err(|e| lookup_err(abs, container, e))?;
    let resolved = if base.is_empty() {
        rdir
    } else {
        rdir.join(base)
    };
    let meta = fs::symlink_metadata(&resolved).map_err(|e| lookup_err(abs, container, e))?;
    Ok((resolved, meta))
}

/// Where a symlink at `abs` leads, resolved inside the root (lexically if it dangles).
fn link_target(abs: &str, resolved: &Path) -> String {
    if let Ok(p) = fs::canonicalize(abs) {
        return p.to_string_lossy().into_owned();
    }
    let target = fs::read_link(resolved).unwrap_or_default();
    let t = target.to_string_lossy();
    if t.starts_with('/') {
        container_path(&t)
    } else {
        container_path(&format!("{}{t}", split(abs).0))
    }
}

/// The facts of `abs` (inside the current root).
fn stat_in(abs: &str, container: &str) -> Result<PathStat, CopyError> {
    let (resolved, meta) = resolve_source(abs, container)?;
    Ok(PathStat {
        name: entry_name(abs),
        size: meta.len() as i64,
        mode: meta.mode(),
        mtime: meta.mtime(),
        link_target: if meta.file_type().is_symlink() {
            link_target(abs, &resolved)
        } else {
            String::new()
        },
    })
}

/// Extracts `input` into the directory `abs` (followed to the end, inside the current root).
fn extract_in(
    abs: &str,
    container: &str,
    input: impl io::Read,
    opts: ExtractOptions,
) -> Result<u64, CopyError> {
    let dir = fs::canonicalize(abs).map_err(|e| lookup_err(abs, container, e))?;
    let meta = fs::metadata(&dir).map_err(|e| lookup_err(abs, container, e))?;
    if !meta.is_dir() {
        return Err(CopyError::NotADirectory {
            path: abs.to_string(),
            container: container.to_string(),
        });
    }
    apply::extract(input, &dir, opts).map_err(|source| match source {
        ApplyError::Io { source, path, .. } if source.raw_os_error() == Some(libc::EROFS) => {
            CopyError::Io {
                op: "write",
                path: path.display().to_string(),
                source,
            }
        }
        source => CopyError::Extract {
            path: abs.to_string(),
            source,
        },
    })
}

/// How a copy's thread reaches the container's files.
enum Root {
    /// A running container's root directory.
    Live(OwnedFd),
    /// A stopped container's snapshot, to mount at `at` in a private mount namespace; the
    /// container's lock is held until the copy ends.
    Snapshot {
        mounts: Vec<strata_proto::types::Mount>,
        at: PathBuf,
        _lock: OwnedMutexGuard<()>,
    },
}

/// Undoes a snapshot's private mount when the copy's thread is done.
struct Unmount {
    /// The mount namespace's own root, to leave the chroot by.
    top: OwnedFd,
    at: PathBuf,
}

impl Drop for Unmount {
    fn drop(&mut self) {
        let back = nix::unistd::fchdir(&self.top).and_then(|()| nix::unistd::chroot("."));
        if let Err(e) = back {
            tracing::warn!(%e, "leaving a copy's root failed; its mount goes with the thread");
            return;
        }
        if let Err(e) = strata_snapshotter::mount::unmount_all(&self.at) {
            tracing::warn!(%e, at = %self.at.display(), "unmounting a copy's snapshot failed");
        }
    }
}

fn enter_err<'a>(
    container: &'a str,
    op: &'static str,
) -> impl FnOnce(nix::Error) -> CopyError + 'a {
    move |e| CopyError::Enter {
        container: container.to_string(),
        op,
        source: io::Error::from(e),
    }
}

/// Makes the calling thread's root the container's. Only for a thread of its own: its root,
/// working directory and (for a snapshot) mount namespace stop being the process's.
fn enter(root: &Root, container: &str) -> Result<Option<Unmount>, CopyError> {
    match root {
        Root::Live(fd) => {
            nix::sched::unshare(CloneFlags::CLONE_FS).map_err(enter_err(container, "unshare"))?;
            nix::unistd::fchdir(fd).map_err(enter_err(container, "fchdir"))?;
            nix::unistd::chroot(".").map_err(enter_err(container, "chroot"))?;
            nix::unistd::chdir("/").map_err(enter_err(container, "chdir"))?;
            Ok(None)
        }
        Root::Snapshot { mounts, at, .. } => {
            nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
                .map_err(enter_err(container, "unshare"))?;
            // Nothing mounted here may reach the engine's namespace.
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(enter_err(container, "make the mounts private"))?;
            let top = nix::fcntl::open(
                "/",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(enter_err(container, "open /"))?;
            strata_snapshotter::mount::mount_all(mounts, at).map_err(|e| CopyError::Enter {
                container: container.to_string(),
                op: "mount its root filesystem",
                source: io::Error::other(e),
            })?;
            let undo = Unmount {
                top,
                at: at.clone(),
            };
            nix::unistd::chroot(at.as_path()).map_err(enter_err(container, "chroot"))?;
            nix::unistd::chdir("/").map_err(enter_err(container, "chdir"))?;
            Ok(Some(undo))
        }
    }
}

/// Runs `f` on a thread of its own inside the container's root.
fn run_in_root<T: Send + 'static>(
    root: Root,
    container: String,
    f: impl FnOnce() -> Result<T, CopyError> + Send + 'static,
) -> oneshot::Receiver<Result<T, CopyError>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("strata-cp".into())
        .spawn(move || {
            let result = enter(&root, &container).and_then(|undo| {
                let r = f();
                drop(undo);
                r
            });
            drop(root);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        tracing::error!(%e, "starting a copy thread failed");
    }
    rx
}

async fn finished<T>(rx: oneshot::Receiver<Result<T, CopyError>>) -> Result<T> {
    rx.await
        .map_err(|_| ContainerError::Runtime("the copy thread died".into()))?
        .map_err(ContainerError::from)
}

/// Whether the pidfd's process is still alive.
fn alive(fd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; the fd is a valid pidfd and the
    // info pointer may be null.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

impl Containers {
    /// The root a copy uses: a running container's, or its snapshot (with its lock held).
    async fn copy_root(&self, query: &str) -> Result<(Record, Root)> {
        let rec = self.resolve(query)?;
        let lock = self.lock(&rec.id).lock_owned().await;
        let rec = self
            .records
            .get(&rec.id)?
            .ok_or_else(|| super::record::RecordError::NotFound(query.into()))?;
        if matches!(rec.state.status, Status::Running | Status::Paused) {
            drop(lock);
            let fd = self.live_root(&rec)?;
            return Ok((rec, Root::Live(fd)));
        }
        let mounts = self.rootfs_mounts(&rec).await?;
        let at = self.bundle(&rec.id).join("rootfs");
        Ok((
            rec,
            Root::Snapshot {
                mounts,
                at,
                _lock: lock,
            },
        ))
    }

    /// Opens `/proc/<pid>/root` of the container's first process, making sure that pid is
    /// still that process (and not a reused one) while the root is opened.
    fn live_root(&self, rec: &Record) -> Result<OwnedFd> {
        let gone = || ContainerError::State {
            name: rec.name.clone(),
            status: "exited",
            hint: "it stopped while the copy began; try again",
        };
        let mut c = strata_runtime::Container::load(&self.runtime_root, &rec.id)
            .map_err(|e| ContainerError::Runtime(e.to_string()))?;
        let (pid, start) = (c.pid(), c.state().pid_start);
        let pfd = pidfd(pid).map_err(|_| gone())?;
        if strata_runtime::state::process_start_time(pid) != Some(start) {
            return Err(gone());
        }
        let path = format!("/proc/{pid}/root");
        let fd = nix::fcntl::open(
            path.as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| super::io("open", Path::new(&path))(io::Error::from(e)))?;
        if !alive(&pfd) {
            return Err(gone());
        }
        Ok(fd)
    }

    /// Facts about `path` in the container (`strata cp` asks before copying).
    pub async fn stat_path(&self, query: &str, path: &str) -> Result<PathStat> {
        let abs = container_path(path);
        let (rec, root) = self.copy_root(query).await?;
        let name = rec.name.clone();
        finished(run_in_root(root, rec.name, move || stat_in(&abs, &name))).await
    }

    /// Writes a tar of `path` in the container to `out` (on a thread of its own). Returns once
    /// the path is found, with what the writing ends with.
    pub async fn copy_from(
        &self,
        query: &str,
        path: &str,
        out: impl io::Write + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<u64, CopyError>>> {
        let abs = container_path(path);
        let (rec, root) = self.copy_root(query).await?;
        let (found_tx, found_rx) = oneshot::channel();
        let name = rec.name.clone();
        let done = run_in_root(root, rec.name.clone(), move || {
            let resolved = match resolve_source(&abs, &name) {
                Ok((r, _)) => {
                    let _ = found_tx.send(None);
                    r
                }
                Err(e) => {
                    let _ = found_tx.send(Some(e));
                    return Ok(0);
                }
            };
            diff::tar_tree(&resolved, Path::new(&entry_name(&abs)), out).map_err(|source| {
                CopyError::Io {
                    op: "archive",
                    path: abs.clone(),
                    source,
                }
            })
        });
        match found_rx.await {
            Ok(None) => {
                self.emit(&rec, "archive-path");
                Ok(done)
            }
            Ok(Some(e)) => Err(e.into()),
            // The thread never looked: entering the root failed.
            Err(_) => Err(finished(done).await.err().unwrap_or_else(|| {
                ContainerError::Runtime("the copy thread ended before it began".into())
            })),
        }
    }

    /// Extracts the tar in `input` into the directory `path` of the container; returns the
    /// bytes of file content written.
    pub async fn copy_to(
        &self,
        query: &str,
        path: &str,
        input: impl io::Read + Send + 'static,
        opts: ExtractOptions,
    ) -> Result<u64> {
        let abs = container_path(path);
        let (rec, root) = self.copy_root(query).await?;
        let name = rec.name.clone();
        let n = finished(run_in_root(root, rec.name.clone(), move || {
            extract_in(&abs, &name, input, opts)
        }))
        .await?;
        self.emit(&rec, "extract-to-dir");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_docker_s_trailing_forms() {
        assert_eq!(container_path("etc/passwd"), "/etc/passwd");
        assert_eq!(container_path("/etc/../../x/"), "/x/");
        assert_eq!(container_path("/etc/."), "/etc/.");
        assert_eq!(container_path("."), "/");
        assert_eq!(container_path(""), "/");
        assert_eq!(split("/etc/passwd"), ("/etc/", "passwd"));
        assert_eq!(split("/etc/"), ("/etc/", ""));
        assert_eq!(entry_name("/etc/"), "etc");
        assert_eq!(entry_name("/etc/."), ".");
        assert_eq!(entry_name("/"), ".");
    }

    #[test]
    fn extraction_stays_in_its_directory() {
        let d = tempfile::tempdir().unwrap();
        let (dest, outside) = (d.path().join("dest"), d.path().join("outside"));
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("out")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "out/planted", &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let opts = ExtractOptions {
            owner: Some((0, 0)),
            no_overwrite_dir_non_dir: true,
        };
        extract_in(&dest.to_string_lossy(), "c", tar.as_slice(), opts).unwrap();
        assert!(
            !outside.join("planted").exists(),
            "a symlink in the destination is resolved inside it"
        );
        assert!(dest
            .join(outside.strip_prefix("/").unwrap())
            .join("planted")
            .exists());
    }
}
