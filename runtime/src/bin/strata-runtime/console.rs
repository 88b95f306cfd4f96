//! A terminal for `run` and `exec` in the foreground without `--console-socket`: the runtime
//! listens on a socket of its own, receives the pty master like any console-socket user, puts
//! its own terminal in raw mode and copies bytes both ways until the container's side closes.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// A listening console socket, before the container exists.
pub struct ConsoleListener {
    dir: tempfile::TempDir,
    accept: JoinHandle<Result<OwnedFd>>,
}

impl ConsoleListener {
    /// Listens on a socket in a private temp dir.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("strata-runtime-console-")
            .tempdir()
            .context("console socket dir")?;
        let listener =
            UnixListener::bind(dir.path().join("console.sock")).context("bind console socket")?;
        let accept = std::thread::spawn(move || -> Result<OwnedFd> {
            let (conn, _) = listener.accept().context("accept on console socket")?;
            Ok(strata_runtime::tty::recv_fd(conn.as_raw_fd())?)
        });
        Ok(ConsoleListener { dir, accept })
    }

    /// The socket path to hand to create/exec.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("console.sock")
    }

    /// After create/exec: the pty master, wired to this process's stdin/stdout.
    pub fn attach(self) -> Result<Console> {
        let master = self
            .accept
            .join()
            .map_err(|_| anyhow::anyhow!("console thread panicked"))??;
        Console::new(master)
    }
}

/// A running copy between this process's terminal and the container's pty.
pub struct Console {
    master: OwnedFd,
    saved: Option<Termios>,
    output: Option<JoinHandle<()>>,
}

fn copy_size(from: &impl AsFd, to: &impl AsFd) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which lives across the call.
    if unsafe {
        libc::ioctl(
            from.as_fd().as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut ws as *mut libc::winsize,
        )
    } == 0
    {
        let _ = strata_runtime::tty::set_size(to.as_fd().as_raw_fd(), ws.ws_row, ws.ws_col);
    }
}

impl Console {
    fn new(master: OwnedFd) -> Result<Self> {
        let stdin = std::io::stdin();
        let saved = match tcgetattr(stdin.as_fd()) {
            Ok(t) => {
                let mut raw = t.clone();
                cfmakeraw(&mut raw);
                tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("raw mode")?;
                copy_size(&stdin, &master);
                Some(t)
            }
            Err(_) => None,
        };
        let mut input = std::fs::File::from(master.try_clone()?);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || input.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let mut out = std::fs::File::from(master.try_clone()?);
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdout = std::io::stdout();
            // EIO once the container's side of the pty is closed.
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        });
        Ok(Console {
            master,
            saved,
            output: Some(output),
        })
    }

    /// Passes a new window size on (on SIGWINCH).
    pub fn resize(&self) {
        copy_size(&std::io::stdin(), &self.master);
    }

    /// Waits for the output to drain and restores the terminal.
    pub fn finish(mut self) {
        if let Some(h) = self.output.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Whether the bundle's process asks for a terminal.
pub fn wants_terminal(bundle: &Path) -> bool {
    strata_runtime::spec::load(bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        == Some(true)
}
