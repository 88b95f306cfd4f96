//! Root test of terminals: `create --console-socket` sends the pty master over the socket;
//! the test writes a command to it and reads the echo and the output.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::Bundle;

#[test]
fn root_tty_through_a_console_socket() {
    let mut b = Bundle::new("tty", "sh");
    b.edit(|v| {
        v["process"]["terminal"] = serde_json::json!(true);
        v["process"]["args"] = serde_json::json!(["sh"]);
        v["process"]["consoleSize"] = serde_json::json!({"height": 40, "width": 100});
    });
    let sock = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let bundle = b.path().to_string_lossy().into_owned();
    let s = sock.to_string_lossy().into_owned();
    let creator = std::thread::spawn({
        let b_root = b.root();
        let id = b.id.clone();
        move || {
            std::process::Command::new(common::bin())
                .arg("--root")
                .arg(&b_root)
                .args(["create", "--bundle", &bundle, "--console-socket", &s, &id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
        }
    });
    let (conn, _) = listener.accept().unwrap();
    let master = strata_runtime::tty::recv_fd(conn.as_raw_fd()).unwrap();
    assert!(creator.join().unwrap().success());
    assert!(b.cli(&["start", &b.id]).status.success());
    let mut pty = std::fs::File::from(master);
    pty.write_all(b"stty size; echo sum=$((40+2))\n").unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let fd = pty.as_raw_fd();
    // SAFETY: setting O_NONBLOCK on our own descriptor.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        )
    };
    while Instant::now() < deadline && !(seen.contains("sum=42") && seen.contains("40 100")) {
        let mut buf = [0u8; 1024];
        match pty.read(&mut buf) {
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(
        seen.contains("echo sum="),
        "the terminal echoes input: {seen:?}"
    );
    assert!(seen.contains("sum=42"), "{seen:?}");
    assert!(seen.contains("40 100"), "console size applied: {seen:?}");
    assert!(b.cli(&["delete", "--force", &b.id]).status.success());
    b.assert_nothing_left();
}

#[test]
fn root_run_with_a_terminal_proxies_it() {
    let mut b = Bundle::new("ttyrun", "sh");
    b.edit(|v| {
        v["process"]["terminal"] = serde_json::json!(true);
        v["process"]["args"] = serde_json::json!(["sh"]);
    });
    let bundle = b.path().to_string_lossy().into_owned();
    let mut child = std::process::Command::new(common::bin())
        .arg("--root")
        .arg(b.root())
        .args(["run", "--bundle", &bundle, &b.id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo out=$((6*7)); exit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("out=42"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3));
    b.assert_nothing_left();
}
