//! The client's terminal for interactive containers: raw mode on stdin (restored when the
//! guard is dropped, on every way out of a command), the window size, and stdin read on a
//! thread of its own (a blocked read must never hold the process back at exit).

use std::io::{IsTerminal, Read};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use tokio::sync::mpsc;

/// Whether stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Stdin in raw mode until dropped: every key (^C, ^D, ^P…) is a byte for the container's
/// terminal, as with Docker's `-it`.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin in raw mode; `None` when it is not a terminal.
    pub fn enable() -> std::io::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The window size (rows, columns) of the terminal on stdin, or else on stdout.
pub fn size() -> Option<(u16, u16)> {
    let of = |fd: i32| {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which lives across the call.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
        (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
    };
    of(std::io::stdin().as_raw_fd()).or_else(|| of(std::io::stdout().as_raw_fd()))
}

/// What the stdin thread reads.
#[derive(Debug)]
pub enum StdinEvent {
    Data(Vec<u8>),
    /// End of input (or a read error).
    Closed,
}

/// Reads stdin on a thread until it ends or the receiver is gone.
pub fn read_stdin() -> mpsc::Receiver<StdinEvent> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let ev = match stdin.read(&mut buf) {
                Ok(0) => StdinEvent::Closed,
                Ok(n) => StdinEvent::Data(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => StdinEvent::Closed,
            };
            let last = matches!(ev, StdinEvent::Closed);
            if tx.blocking_send(ev).is_err() || last {
                return;
            }
        }
    });
    rx
}
