//! End-to-end: `-p/--publish`, a container's TCP port served on the host's loopback by its
//! monitor: reached from the host, shown by `ps`, `port` and `inspect`, kept while the engine
//! restarts, released when the container stops; a port in use fails the start in one line;
//! bad values are refused before anything is made. All traffic stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use strata_tests::engine::{check, engine, BUSYBOX};

/// A container serving "hello" over HTTP on its port 8080.
const HTTPD: &str = "echo hello > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp";

/// GETs /index.html from 127.0.0.1:`port`, retrying while the server comes up.
fn get(port: u16) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tried = (|| -> std::io::Result<String> {
            let mut c = TcpStream::connect(("127.0.0.1", port))?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            c.read_to_string(&mut body)?;
            Ok(body)
        })();
        match tried {
            Ok(body) if body.contains("hello") => return Ok(body),
            other => ensure!(
                Instant::now() < deadline,
                "no answer on 127.0.0.1:{port}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host port `strata port` names for the container's 8080.
fn host_port(e: &strata_tests::engine::Engine, name: &str) -> Result<u16> {
    let out = e.ok(&["port", name, "8080"])?;
    out.trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("port {name} 8080: {out:?}"))
}

/// Whether 127.0.0.1:`port` can be bound (nothing holds it).
fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn engine_publish_serves_a_containers_port_on_the_host() {
    let mut e = engine();
    check((|| {
        e.ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "127.0.0.1::8080",
            BUSYBOX,
            "sh",
            "-c",
            HTTPD,
        ])?;
        let port = host_port(&e, "web")?;
        ensure!(get(port)?.contains("hello"));
        let ps = e.ok(&["ps", "--format", "{{.Names}} {{.Ports}}"])?;
        ensure!(
            ps.trim() == format!("web 127.0.0.1:{port}->8080/tcp"),
            "ps: {ps:?}"
        );
        ensure!(e.ok(&["port", "web"])?.trim() == format!("8080/tcp -> 127.0.0.1:{port}"));
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "web"])?)?;
        let want = port.to_string();
        ensure!(
            doc[0]["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"] == want.as_str()
                && doc[0]["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"] == "",
            "{}",
            doc[0]["NetworkSettings"]
        );
        // The monitor serves it: the engine's restart does not interrupt it.
        ensure!(e.stop()?.success());
        ensure!(
            get(port)?.contains("hello"),
            "not served while the engine is down"
        );
        e.spawn()?;
        ensure!(get(port)?.contains("hello"));
        // Stopped, the port is the host's again, and nothing is shown.
        e.ok(&["stop", "-t", "1", "web"])?;
        ensure!(free(port), "port {port} still held after the stop");
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "web"])?)?;
        ensure!(doc[0]["NetworkSettings"]["Ports"].is_null());
        e.fails_one_line(&["port", "web", "8080"], 1, "no public port '8080/tcp'")?;
        // A fixed host port, on the next start of another container.
        let fixed = {
            let l = TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let spec = format!("127.0.0.1:{fixed}:8080");
        e.ok(&[
            "run", "-d", "--name", "fixed", "-p", &spec, BUSYBOX, "sh", "-c", HTTPD,
        ])?;
        ensure!(get(fixed)?.contains("hello"));
        e.ok(&["rm", "-f", "fixed"])?;
        ensure!(free(fixed), "port {fixed} still held after rm -f");
        Ok(())
    })());
}

#[test]
fn engine_publish_a_port_in_use_fails_the_start_in_one_line() {
    let e = engine();
    check((|| {
        let taken = TcpListener::bind("127.0.0.1:0")?;
        let port = taken.local_addr()?.port();
        let spec = format!("127.0.0.1:{port}:80");
        e.fails_one_line(
            &["run", "-d", "--name", "clash", "-p", &spec, BUSYBOX, "sleep", "30"],
            125,
            &format!("start container clash: Bind for 127.0.0.1:{port} failed: port is already allocated"),
        )?;
        // As Docker's: the container stays created, and nothing of a start is left.
        ensure!(
            e.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"])?
                .trim()
                == "clash created"
        );
        let id = e
            .ok(&["inspect", "-f", "{{.Id}}", "clash"])?
            .trim()
            .to_string();
        ensure!(
            !std::fs::read_to_string("/proc/self/mountinfo")?.contains(&id),
            "the failed start left a mount"
        );
        ensure!(
            !e.run_root.join("runtime").join(&id).exists(),
            "runtime state left"
        );
        // Once the port is free, the same container starts.
        drop(taken);
        e.ok(&["start", "clash"])?;
        ensure!(e.ok(&["port", "clash", "80"])?.trim() == format!("127.0.0.1:{port}"));
        e.ok(&["rm", "-f", "clash"])?;
        Ok(())
    })());
}

#[test]
fn engine_publish_bad_values_are_refused() {
    let e = engine();
    check((|| {
        for (spec, want) in [
            (
                "80/udp",
                "invalid --publish \"80/udp\": publishing udp ports is not supported (tcp only)",
            ),
            (
                "70000",
                "invalid --publish \"70000\": invalid container port \"70000\"",
            ),
            ("1.2.3:80:80", "invalid IP address \"1.2.3\""),
            ("8000-8002:80-81", "differ in length"),
        ] {
            e.refuses_run(&["-p", spec], want)?;
        }
        e.fails_one_line(
            &[
                "run", "--rm", "-p", "8080:80", "-p", "8080:81", BUSYBOX, "true",
            ],
            125,
            "host port 8080 is published twice",
        )?;
        e.ok(&["run", "-d", "--name", "net", BUSYBOX, "sleep", "30"])?;
        e.fails_one_line(
            &[
                "run",
                "--rm",
                "--network",
                "container:net",
                "-p",
                "80",
                BUSYBOX,
                "true",
            ],
            125,
            "conflicting options: port publishing and --network container:",
        )?;
        e.ok(&["rm", "-f", "net"])?;
        ensure!(
            e.ok(&["ps", "-aq"])?.trim().is_empty(),
            "a refused run left a container"
        );
        // In the host's network, ports are discarded with Docker's warning.
        let o = e.strata(&[
            "run",
            "--rm",
            "--network",
            "host",
            "-p",
            "80:80",
            BUSYBOX,
            "true",
        ])?;
        let err = String::from_utf8_lossy(&o.stderr);
        ensure!(
            o.status.success()
                && err.trim()
                    == "WARNING: Published ports are discarded when using host network mode",
            "{:?} {err}",
            o.status
        );
        Ok(())
    })());
}

#[test]
fn engine_publish_all_publishes_the_exposed_tcp_ports() {
    let e = engine();
    check((|| {
        let f = e.scratch("exposing")?.join("img.tar");
        let config = serde_json::json!({
            "Cmd": ["sh", "-c", HTTPD],
            "Env": ["PATH=/bin"],
            "ExposedPorts": { "8080/tcp": {}, "53/udp": {} },
        });
        let layer = strata_tests::image::busybox_layer(Vec::new())?;
        strata_tests::image::docker_archive_with(&f, "exposing:1", &[layer], config)?;
        e.ok(&["load", "-i", &f.to_string_lossy()])?;
        let o = e.strata(&[
            "run",
            "-d",
            "--name",
            "all",
            "-P",
            "--expose",
            "9000",
            "exposing:1",
        ])?;
        let err = String::from_utf8_lossy(&o.stderr);
        ensure!(
            o.status.success()
                && err.trim()
                    == "WARNING: 53/udp is exposed but not published: only TCP ports can be published",
            "{:?} {err}",
            o.status
        );
        // On all addresses, a port the kernel picked, each: the image's and --expose's.
        let port = host_port(&e, "all")?;
        ensure!(get(port)?.contains("hello"));
        let listed = e.ok(&["port", "all"])?;
        ensure!(
            listed.lines().count() == 2
                && listed.contains(&format!("8080/tcp -> 0.0.0.0:{port}"))
                && listed.contains("9000/tcp -> 0.0.0.0:"),
            "port: {listed}"
        );
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "all"])?)?;
        let keys: Vec<&String> = doc[0]["Config"]["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        ensure!(
            keys == ["53/udp", "8080/tcp", "9000/tcp"]
                && doc[0]["HostConfig"]["PublishAllPorts"] == true,
            "{keys:?} {}",
            doc[0]["HostConfig"]["PublishAllPorts"]
        );
        e.ok(&["rm", "-f", "all"])?;
        e.refuses_run(&["--expose", "http"], "invalid --expose \"http\"")?;
        Ok(())
    })());
}
