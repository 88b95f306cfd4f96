//! A terminal for end-to-end tests of interactive commands: the command runs on the slave side
//! of a pseudo-terminal (as its controlling terminal, in a session of its own), the test types
//! into the master and reads what the command writes. The slave stays open in the test, so
//! its modes can be checked after the command has exited.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::termios::{tcgetattr, Termios};

/// How long an expectation waits before the test fails (a guard, not a measurement).
pub const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Screen {
    bytes: Vec<u8>,
    closed: bool,
}

/// A command running on a pseudo-terminal.
#[derive(Debug)]
pub struct Pty {
    master: File,
    slave: OwnedFd,
    screen: Arc<(Mutex<Screen>, Condvar)>,
    /// Output before this offset has been matched already.
    mark: usize,
    child: Child,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Starts `cmd` with the slave as its stdin, stdout, stderr and controlling terminal.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Result<Pty> {
        let ws = winsize(rows, cols);
        let pty = nix::pty::openpty(Some(&ws), None).context("openpty")?;
        let (master, slave) = (pty.master, pty.slave);
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave.try_clone()?));
        // SAFETY: between fork and exec only setsid and ioctl (async-signal-safe) run.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("start the command on the pty")?;
        let screen: Arc<(Mutex<Screen>, Condvar)> = Arc::default();
        let mut reader = File::from(master.try_clone()?);
        let s = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*s;
                let mut sc = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    sc.closed = true;
                } else {
                    sc.bytes.extend_from_slice(&buf[..n]);
                }
                cv.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Ok(Pty {
            master: File::from(master),
            slave,
            screen,
            mark: 0,
            child,
        })
    }

    /// Types `s`.
    pub fn send(&mut self, s: &str) -> Result<()> {
        self.master
            .write_all(s.as_bytes())
            .context("write to the pty")
    }

    /// Everything the command wrote so far.
    pub fn output(&self) -> String {
        let sc = self.screen.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&sc.bytes).into_owned()
    }

    /// Waits until `needle` appears after what earlier expectations matched; returns the
    /// output up to and including it.
    pub fn expect(&mut self, needle: &str) -> Result<String> {
        let deadline = Instant::now() + PATIENCE;
        let (lock, cv) = &*self.screen;
        let mut sc = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let hay = &sc.bytes[self.mark.min(sc.bytes.len())..];
            if let Some(at) = hay
                .windows(needle.len().max(1))
                .position(|w| w == needle.as_bytes())
            {
                let end = self.mark + at + needle.len();
                let got = String::from_utf8_lossy(&sc.bytes[self.mark..end]).into_owned();
                self.mark = end;
                return Ok(got);
            }
            let now = Instant::now();
            if now >= deadline || sc.closed {
                bail!(
                    "{needle:?} did not appear on the terminal; it shows:\n{}",
                    String::from_utf8_lossy(&sc.bytes[self.mark.min(sc.bytes.len())..])
                );
            }
            sc = cv
                .wait_timeout(sc, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Sets the terminal's size and tells the command (SIGWINCH).
    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize, which lives across the call.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(std::io::Error::last_os_error()).context("TIOCSWINSZ");
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGWINCH,
        )
        .context("SIGWINCH")
    }

    /// The command's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command to exit.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!(
                    "the command did not exit; the terminal shows:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The terminal's modes now.
    pub fn modes(&self) -> Result<Termios> {
        tcgetattr(self.slave.as_fd()).context("tcgetattr")
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child process killed when dropped (a failing test leaves no client behind).
#[derive(Debug)]
pub struct Guarded(pub Child);

impl Guarded {
    /// Waits for the exit, at most [`PATIENCE`].
    pub fn wait(&mut self) -> Result<ExitStatus> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.0.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!("the command did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads the child's stdout a line at a time on a thread.
    pub fn lines(&mut self) -> Result<std::sync::mpsc::Receiver<String>> {
        use std::io::BufRead;
        let out = self.0.stdout.take().context("stdout is not piped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(l) = line else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `cmd` with `input` on its stdin (then closed) and its output collected, at most
/// [`PATIENCE`].
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Result<std::process::Output> {
    let mut c = Guarded(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start the command")?,
    );
    let mut stdin = c.0.stdin.take().context("stdin")?;
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let collect = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = collect(
        c.0.stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let err = collect(
        c.0.stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let status = c.wait()?;
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
