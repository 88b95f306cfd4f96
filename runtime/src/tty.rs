//! Terminals: the container's pty is made inside the container (its own devpts), the master is
//! sent to the caller's console socket with `SCM_RIGHTS` (as runc does), and the slave becomes
//! the process's stdio and controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;

/// What can go wrong with terminals.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// Connecting to the console socket failed.
    #[error("cannot connect to console socket {}: {source}", .path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A terminal call failed.
    #[error("terminal: {op}: {errno}")]
    Sys {
        op: &'static str,
        errno: nix::errno::Errno,
    },
    /// No descriptor came over the socket.
    #[error("console socket: no file descriptor received")]
    NoFd,
}

fn sys(op: &'static str) -> impl Fn(nix::errno::Errno) -> TtyError {
    move |errno| TtyError::Sys { op, errno }
}

/// Connects to the console socket (done by the runtime before forking the container).
pub fn connect(path: &Path) -> Result<UnixStream, TtyError> {
    UnixStream::connect(path).map_err(|source| TtyError::Connect {
        path: path.to_path_buf(),
        source,
    })
}

/// A new pty pair: (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, String), TtyError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("posix_openpt"))?;
    grantpt(&master).map_err(sys("grantpt"))?;
    unlockpt(&master).map_err(sys("unlockpt"))?;
    let name = ptsname_r(&master).map_err(sys("ptsname"))?;
    let slave = open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open pty slave"))?;
    // SAFETY: `PtyMaster` owns its descriptor; `into_raw_fd` hands that ownership over.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok((master, slave, name))
}

/// Sets the window size of a terminal.
pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<(), TtyError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize`, which lives across the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws as *const libc::winsize) };
    if rc < 0 {
        return Err(TtyError::Sys {
            op: "TIOCSWINSZ",
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

/// Sends `fd` over a unix socket with `name` as the payload (runc sends the pty's name).
pub fn send_fd(socket: RawFd, fd: RawFd, name: &str) -> Result<(), TtyError> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None).map_err(sys("sendmsg"))?;
    Ok(())
}

/// Receives one descriptor from a unix socket (the other side of [`send_fd`]).
pub fn recv_fd(socket: RawFd) -> Result<OwnedFd, TtyError> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("recvmsg"))?;
    for c in msg.cmsgs().map_err(sys("cmsgs"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave this process a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(TtyError::NoFd)
}

/// In the container: makes a pty, sends the master to `console_socket`, and makes the slave
/// stdio and the controlling terminal. The caller must already be a session leader.
pub fn setup_console(console_socket: RawFd, size: Option<(u16, u16)>) -> Result<(), TtyError> {
    let (master, slave, name) = open_pty()?;
    if let Some((rows, cols)) = size {
        set_size(master.as_raw_fd(), rows, cols)?;
    }
    send_fd(console_socket, master.as_raw_fd(), &name)?;
    drop(master);
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns; whatever they
        // were is replaced on purpose and not used again through another handle.
        let rc = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        if rc < 0 {
            return Err(TtyError::Sys {
                op: "dup2",
                errno: nix::errno::Errno::last(),
            });
        }
    }
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal) and reads no memory.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    if rc < 0 {
        return Err(TtyError::Sys {
            op: "TIOCSCTTY",
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_passing() {
        let (a, b) = UnixStream::pair().unwrap();
        let (master, _slave, name) = open_pty().unwrap();
        assert!(name.starts_with("/dev/pts/"));
        send_fd(a.as_raw_fd(), master.as_raw_fd(), &name).unwrap();
        let got = recv_fd(b.as_raw_fd()).unwrap();
        assert!(nix::unistd::isatty(&got).unwrap());
    }
}
