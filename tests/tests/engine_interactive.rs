//! End-to-end: interactive containers as a Docker user drives them — `run -it` on a real
//! terminal (the CLI on the slave side of a pty), detach keys and `attach`, `run -i` with a
//! pipe, signals passed on, `exec -it`/`-i`, attach after the engine was SIGKILLed, and bad
//! input. What the test types is chosen so that the terminal's echo of it never matches what
//! it waits for (`echo $((40+2))` is awaited as `42`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use strata_tests::engine::{check, engine};
use strata_tests::engine::{Engine, BUSYBOX};
use strata_tests::pty::{run_with_input, Guarded, Pty, PATIENCE};

/// `strata ARGS` against `e`, for a pty or a pipe.
fn strata(e: &Engine, args: &[&str]) -> Command {
    e.command(args)
}

/// `strata ARGS` on a terminal of `rows` x `cols`.
fn on_pty(e: &Engine, args: &[&str], rows: u16, cols: u16) -> Result<Pty> {
    Pty::spawn(strata(e, args), rows, cols)
}

fn code(st: std::process::ExitStatus) -> i32 {
    st.code().unwrap_or(-1)
}

/// The container's state, from inspect.
fn state(e: &Engine, name: &str) -> Result<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", name])?)?;
    let doc = if doc.is_array() { doc[0].clone() } else { doc };
    Ok(doc["State"].clone())
}

/// Polls `f` until it holds (bounded by the test's patience).
fn eventually(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !f()? {
        if Instant::now() > deadline {
            bail!("{what} did not happen");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The terminal's size as `stty size` in the container shows it, once it is `want`.
fn size_becomes(t: &mut Pty, want: &str) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        t.send("stty size; echo size-$((1+1))\r")?;
        let seen = t.expect("size-2")?;
        if seen.contains(want) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the size never became {want}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn engine_run_it_types_into_a_shell_and_follows_the_window_size() {
    let e = engine();
    check((|| {
        let mut t = on_pty(&e, &["run", "-it", "--name", "box", BUSYBOX, "sh"], 30, 100)?;
        let before = t.modes()?;
        t.expect("# ")?;
        t.send("echo $((40+2))\r")?;
        t.expect("42")?;
        t.send("stty size\r")?;
        t.expect("30 100")?;
        // The client's terminal is raw while it runs: the container's terminal echoes.
        let raw = t.modes()?;
        ensure!(
            !raw.local_flags
                .contains(nix::sys::termios::LocalFlags::ECHO),
            "the client's terminal is not in raw mode"
        );
        t.resize(40, 120)?;
        size_becomes(&mut t, "40 120")?;
        t.send("echo $TERM-$((1+2))\r")?;
        t.expect("xterm-3")?;
        t.send("exit 3\r")?;
        let st = t.wait()?;
        ensure!(code(st) == 3, "exit {st}; terminal:\n{}", t.output());
        let after = t.modes()?;
        ensure!(
            after.local_flags == before.local_flags
                && after.input_flags == before.input_flags
                && after.output_flags == before.output_flags,
            "the terminal's modes were not restored"
        );
        let s = state(&e, "box")?;
        ensure!(s["Status"] == "exited" && s["ExitCode"] == 3, "state {s}");
        let log = e.ok(&["logs", "box"])?;
        ensure!(log.contains("42"), "the log has the session: {log:?}");
        Ok(())
    })());
}

#[test]
fn engine_detach_keys_attach_again_and_ctrl_c() {
    let e = engine();
    check((|| {
        let mut t = on_pty(&e, &["run", "-it", "--name", "keep", BUSYBOX, "sh"], 24, 80)?;
        t.expect("# ")?;
        t.send("X=kept\r")?;
        t.send("echo $X-$((2+3))\r")?;
        t.expect("kept-5")?;
        // Ctrl-P Ctrl-Q: the client leaves, the container goes on.
        t.send("\x10\x11")?;
        let st = t.wait()?;
        ensure!(code(st) == 0, "detach exit {st}:\n{}", t.output());
        ensure!(state(&e, "keep")?["Status"] == "running");

        let mut a = on_pty(&e, &["attach", "keep"], 24, 80)?;
        a.send("echo $X-again\r")?;
        a.expect("kept-again")?;
        // Ctrl-C is a byte for the container's terminal: it interrupts the shell's sleep.
        a.send("sleep 1000\r")?;
        let sleeping =
            || -> Result<bool> { Ok(e.ok(&["exec", "keep", "ps"])?.contains("sleep 1000")) };
        eventually("sleep running", sleeping)?;
        a.send("\x03")?;
        a.send("echo ali\"\"ve\r")?;
        a.expect("alive")?;
        ensure!(!sleeping()?, "sleep is still there");
        // Custom detach keys, then the shell's own exit code through a second attach.
        a.send("\x10\x11")?;
        ensure!(code(a.wait()?) == 0);
        let mut b = on_pty(&e, &["attach", "--detach-keys", "ctrl-x,y", "keep"], 24, 80)?;
        b.send("echo $((6*7))-b\r")?;
        b.expect("42-b")?;
        b.send("\x18y")?;
        ensure!(code(b.wait()?) == 0, "custom detach keys");
        let mut c2 = on_pty(&e, &["attach", "keep"], 24, 80)?;
        c2.send("echo $((5+5))-c\r")?;
        c2.expect("10-c")?;
        c2.send("exit 5\r")?;
        let st = c2.wait()?;
        ensure!(code(st) == 5, "attach exit {st}:\n{}", c2.output());

        let events = e.ok(&["events", "--since", "10m", "--until", "0s"])?;
        for action in [" attach ", " detach "] {
            ensure!(
                events.contains(&format!("container{action}")),
                "no{action}event in:\n{events}"
            );
        }
        Ok(())
    })());
}

#[test]
fn engine_run_i_pipes_stdin_and_passes_signals_on() {
    let e = engine();
    check((|| {
        let o = run_with_input(
            strata(&e, &["run", "-i", "--rm", BUSYBOX, "cat"]),
            b"hello\n",
        )?;
        ensure!(
            o.status.success() && o.stdout == b"hello\n",
            "run -i: {} {:?} {:?}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        ensure!(e.ok(&["ps", "-aq"])?.is_empty(), "--rm left a container");

        let o = run_with_input(
            strata(
                &e,
                &[
                    "run",
                    "-i",
                    BUSYBOX,
                    "sh",
                    "-c",
                    "read a; echo got-$a >&2; exit 4",
                ],
            ),
            b"x\n",
        )?;
        ensure!(code(o.status) == 4, "exit {}", o.status);
        ensure!(
            o.stderr == b"got-x\n",
            "stderr {:?}",
            String::from_utf8_lossy(&o.stderr)
        );

        // Without -t, SIGTERM to the client goes to the container (--sig-proxy).
        let script =
            "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done";
        let mut c = Guarded(
            strata(&e, &["run", "--rm", BUSYBOX, "sh", "-c", script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()?,
        );
        let lines = c.lines()?;
        let first = lines.recv_timeout(PATIENCE)?;
        ensure!(first == "ready", "first line {first:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let next = lines.recv_timeout(PATIENCE)?;
        ensure!(next == "got-term", "after SIGTERM {next:?}");
        ensure!(code(c.wait()?) == 7);
        Ok(())
    })());
}

#[test]
fn engine_start_attached_and_run_it_rm() {
    let e = engine();
    check((|| {
        e.ok(&[
            "create",
            "--name",
            "plain",
            BUSYBOX,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 2",
        ])?;
        let o = e.strata(&["start", "-a", "plain"])?;
        ensure!(
            code(o.status) == 2 && o.stdout == b"out\n" && o.stderr == b"err\n",
            "start -a: {o:?}"
        );
        e.ok(&[
            "create",
            "-i",
            "--name",
            "asks",
            BUSYBOX,
            "sh",
            "-c",
            "read x; echo got-$x; exit 6",
        ])?;
        let o = run_with_input(strata(&e, &["start", "-ai", "asks"]), b"hi\n")?;
        ensure!(
            code(o.status) == 6 && o.stdout == b"got-hi\n",
            "start -ai: {o:?}"
        );

        // run -it --rm: the container is gone when the client returns its code.
        let mut t = on_pty(
            &e,
            &["run", "-it", "--rm", "--name", "brief", BUSYBOX, "sh"],
            24,
            80,
        )?;
        t.expect("# ")?;
        t.send("exit 2\r")?;
        ensure!(code(t.wait()?) == 2, "run -it --rm:\n{}", t.output());
        ensure!(
            !e.ok(&["ps", "-a"])?.contains("brief"),
            "--rm left the container"
        );
        // -t alone: output through the terminal, nothing read from stdin.
        let mut t = on_pty(
            &e,
            &[
                "run",
                "-t",
                "--rm",
                BUSYBOX,
                "sh",
                "-c",
                "test -t 1 && echo on-a-tty",
            ],
            24,
            80,
        )?;
        t.expect("on-a-tty")?;
        ensure!(code(t.wait()?) == 0);
        Ok(())
    })());
}

#[test]
fn engine_exec_it_and_i() {
    let e = engine();
    check((|| {
        e.ok(&["run", "-d", "--name", "host", BUSYBOX, "sleep", "1000"])?;
        let mut t = on_pty(&e, &["exec", "-it", "host", "sh"], 33, 90)?;
        t.expect("# ")?;
        t.send("stty size\r")?;
        t.expect("33 90")?;
        t.send("echo $((8*8))\r")?;
        t.expect("64")?;
        t.send("exit 7\r")?;
        let st = t.wait()?;
        ensure!(code(st) == 7, "exec -it exit {st}:\n{}", t.output());

        let o = run_with_input(strata(&e, &["exec", "-i", "host", "cat"]), b"data\n")?;
        ensure!(
            o.status.success() && o.stdout == b"data\n",
            "exec -i: {o:?}"
        );

        // --privileged: every capability for the command, not the container's set.
        let cap_eff = |priv_: bool| -> Result<u64> {
            let mut args = vec!["exec"];
            if priv_ {
                args.push("--privileged");
            }
            args.extend(["host", "sh", "-c", "grep CapEff /proc/self/status"]);
            let out = e.ok(&args)?;
            let hex = out.split_whitespace().last().unwrap_or_default();
            Ok(u64::from_str_radix(hex, 16)?)
        };
        let (plain, all) = (cap_eff(false)?, cap_eff(true)?);
        ensure!(
            all & plain == plain && all.count_ones() > plain.count_ones(),
            "CapEff {plain:x} and with --privileged {all:x}"
        );

        // Ctrl-D at the prompt is the end of the shell's input, as on any terminal.
        let mut t = on_pty(&e, &["exec", "-it", "host", "sh"], 24, 80)?;
        t.expect("# ")?;
        t.send("\x04")?;
        let st = t.wait()?;
        ensure!(code(st) == 0, "exec -it after ^D {st}:\n{}", t.output());

        // Detaching leaves the exec running.
        let mut d = on_pty(&e, &["exec", "-it", "host", "sh"], 24, 80)?;
        d.expect("# ")?;
        d.send("touch /tmp/left; sleep 1000\r")?;
        eventually("the exec's sleep", || {
            Ok(e.strata(&["exec", "host", "test", "-e", "/tmp/left"])?
                .status
                .success())
        })?;
        d.send("\x10\x11")?;
        ensure!(code(d.wait()?) == 0, "exec detach:\n{}", d.output());

        let (c127, err) = e.fails(&["exec", "host", "no-such-program"])?;
        ensure!(
            c127 == 127 && err.lines().count() == 1 && err.contains("executable file not found"),
            "missing program: {c127} {err:?}"
        );
        e.ok(&["exec", "host", "sh", "-c", "echo plain > /tmp/plain"])?;
        let (c126, err) = e.fails(&["exec", "host", "/tmp/plain"])?;
        ensure!(
            c126 == 126 && err.lines().count() == 1,
            "not executable: {c126} {err:?}"
        );

        let events = e.ok(&["events", "--since", "10m", "--until", "0s"])?;
        for action in [
            "exec_create: sh",
            "exec_start: sh",
            "exec_die",
            "execID=",
            "exitCode=7",
        ] {
            ensure!(
                events.contains(action),
                "no {action} in the events:\n{events}"
            );
        }
        Ok(())
    })());
}

#[test]
fn engine_attach_after_the_engine_was_killed() {
    let mut e = engine();
    check((|| {
        e.ok(&["run", "-dit", "--name", "live", BUSYBOX, "sh"])?;
        e.kill9()?;
        e.spawn()?;
        let mut t = on_pty(&e, &["attach", "live"], 24, 80)?;
        t.send("echo $((40+2))\r")?;
        t.expect("42")?;
        t.send("exit 4\r")?;
        let st = t.wait()?;
        ensure!(code(st) == 4, "exit {st}:\n{}", t.output());
        eventually("the exit recorded", || {
            Ok(state(&e, "live")?["ExitCode"] == 4)
        })?;
        Ok(())
    })());
}

#[test]
fn engine_interactive_bad_input_gets_one_clear_line() {
    let e = engine();
    check((|| {
        let one_line = |args: &[&str]| -> Result<(i32, String)> {
            let (c, err) = e.fails(args)?;
            ensure!(
                err.lines().count() == 1 && err.starts_with("strata: "),
                "strata {}: {err:?}",
                args.join(" ")
            );
            Ok((c, err))
        };
        let (_, err) = one_line(&["attach", "nothing-here"])?;
        ensure!(err.contains("nothing-here"), "{err}");
        e.ok(&["create", "--name", "made", BUSYBOX, "true"])?;
        let (_, err) = one_line(&["attach", "made"])?;
        ensure!(err.contains("start it first"), "{err}");
        // As Docker's CLI: the engine's refusal is 1; 126 and 127 are the command's own.
        let (c, err) = one_line(&["exec", "made", "true"])?;
        ensure!(c == 1 && err.contains("made"), "{c} {err}");
        let (c, err) = one_line(&["exec", "no-such-container", "true"])?;
        ensure!(c == 1 && err.contains("no such container"), "{c} {err}");
        let (c, err) = one_line(&["run", "-i", "--detach-keys", "ctrl-1", BUSYBOX, "true"])?;
        ensure!(c == 125 && err.contains("detach keys"), "{c} {err}");
        ensure!(
            e.ok(&["ps", "-aq"])?.lines().count() == 1,
            "a refused run left a container"
        );
        e.ok(&["run", "-d", "-i", "--name", "up", BUSYBOX, "sh"])?;
        let (_, err) = one_line(&["attach", "--detach-keys", "ctrl-", "up"])?;
        ensure!(err.contains("detach keys"), "{err}");
        let (_, err) = one_line(&["exec", "-i", "--detach-keys", "nope", "up", "true"])?;
        ensure!(err.contains("detach keys"), "{err}");
        let (_, err) = one_line(&["run", "-it", BUSYBOX, "sh"])?;
        ensure!(err.contains("not a TTY"), "{err}");
        Ok(())
    })());
}
