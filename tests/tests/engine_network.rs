//! End-to-end: network modes and the network files as a Docker user sees them —
//! `--network container:` sharing `lo`, the hostname and the /etc files, `/etc/hosts` and
//! `/etc/resolv.conf` from `--add-host`, `--dns*` and the host's, and bad input refused.

use std::fs;

use anyhow::{ensure, Context};
use strata_tests::engine::BUSYBOX;
use strata_tests::engine::{check, engine};

#[test]
fn engine_container_network_shares_lo_hostname_and_files() {
    let e = engine();
    check((|| {
        // A listener on the first container's loopback; it prints what it receives.
        e.ok(&[
            "run",
            "-d",
            "--name",
            "srv",
            "--hostname",
            "srvhost",
            "--add-host",
            "db:10.1.2.3",
            BUSYBOX,
            "busybox",
            "nc",
            "-l",
            "-p",
            "7070",
        ])?;
        // The second reaches it on 127.0.0.1: the listener may not be up yet, so it retries
        // (a bounded number of times).
        let out = e.ok(&[
            "run",
            "--rm",
            "--network",
            "container:srv",
            BUSYBOX,
            "sh",
            "-c",
            "hostname; cat /etc/hostname; busybox grep db /etc/hosts; \
             for i in $(busybox seq 200); do echo ping | busybox nc 127.0.0.1 7070 && exit 0; sleep 0.05; done; exit 1",
        ])?;
        let lines: Vec<&str> = out.lines().collect();
        ensure!(
            lines.first() == Some(&"srvhost") && lines.get(1) == Some(&"srvhost"),
            "the joined container has the other's hostname: {out}"
        );
        ensure!(
            lines.get(2) == Some(&"10.1.2.3\tdb"),
            "and its /etc/hosts: {out}"
        );
        let code = e.ok(&["wait", "srv"])?;
        ensure!(code.trim() == "0", "the listener exited {code}");
        let logs = e.ok(&["logs", "srv"])?;
        ensure!(logs == "ping\n", "the listener got {logs:?}");
        // inspect of a joined container names the other's network files and hostname.
        e.ok(&["run", "-d", "--name", "srv2", BUSYBOX, "sleep", "300"])?;
        e.ok(&[
            "create",
            "--name",
            "joined",
            "--network",
            "container:srv2",
            BUSYBOX,
            "true",
        ])?;
        let srv2: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "srv2"])?)?;
        let joined: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "joined"])?)?;
        let id = srv2[0]["Id"].as_str().context("Id")?;
        ensure!(joined[0]["HostConfig"]["NetworkMode"] == format!("container:{id}"));
        for k in ["HostsPath", "ResolvConfPath", "HostnamePath"] {
            ensure!(
                joined[0][k] == srv2[0][k],
                "{k}: {} vs {}",
                joined[0][k],
                srv2[0][k]
            );
        }
        ensure!(joined[0]["Config"]["Hostname"] == srv2[0]["Config"]["Hostname"]);
        e.ok(&["rm", "-f", "srv2"])?;
        Ok(())
    })());
}

#[test]
fn engine_network_files_like_docker() {
    let e = engine();
    check((|| {
        let out = e.ok(&[
            "run",
            "--rm",
            "--hostname",
            "web",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "v6host:fd00::1",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.test",
            "--dns-option",
            "ndots:3",
            BUSYBOX,
            "sh",
            "-c",
            "cat /etc/hostname /etc/hosts /etc/resolv.conf",
        ])?;
        for want in [
            "web\n",
            "127.0.0.1\tlocalhost\n",
            "::1\tlocalhost ip6-localhost ip6-loopback\n",
            "10.1.2.3\tdb\n",
            "fd00::1\tv6host\n",
            "127.0.0.1\tweb\n",
            "nameserver 192.0.2.53\n",
            "search example.test\n",
            "options ndots:3\n",
        ] {
            ensure!(out.contains(want), "{want:?} not in:\n{out}");
        }
        ensure!(
            out.matches("nameserver").count() == 1,
            "--dns replaces the host's:\n{out}"
        );
        // Without flags: the host's nameservers without the loopback ones (or Docker's
        // fallback when none is left).
        let resolv = e.ok(&["run", "--rm", BUSYBOX, "cat", "/etc/resolv.conf"])?;
        let servers: Vec<&str> = resolv
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver "))
            .collect();
        ensure!(!servers.is_empty(), "no nameserver:\n{resolv}");
        ensure!(
            servers
                .iter()
                .all(|s| !s.starts_with("127.") && *s != "::1"),
            "a loopback nameserver outside host mode:\n{resolv}"
        );
        // Host mode: the host's /etc/hosts plus the extra entries, and the host's hostname.
        let out = e.ok(&[
            "run",
            "--rm",
            "--network",
            "host",
            "--add-host",
            "extra:10.9.9.9",
            BUSYBOX,
            "sh",
            "-c",
            "hostname; cat /etc/hosts",
        ])?;
        let host_name = fs::read_to_string("/proc/sys/kernel/hostname")?;
        ensure!(out.starts_with(&host_name), "host mode hostname: {out}");
        let host_hosts = fs::read_to_string("/etc/hosts")?;
        ensure!(
            out.contains(host_hosts.trim_end()) && out.contains("10.9.9.9\textra\n"),
            "host mode /etc/hosts:\n{out}"
        );
        // inspect names the files, which live in the container's directory.
        e.ok(&["create", "--name", "files", BUSYBOX, "true"])?;
        e.ok(&["start", "files"])?;
        e.ok(&["wait", "files"])?;
        let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "files"])?)?;
        for k in ["HostsPath", "ResolvConfPath", "HostnamePath"] {
            let p = doc[0][k].as_str().context("path")?;
            ensure!(
                p.starts_with(&e.containers_dir().to_string_lossy().to_string())
                    && fs::metadata(p).is_ok(),
                "{k} = {p}"
            );
        }
        Ok(())
    })());
}

#[test]
fn engine_network_refusals() {
    let e = engine();
    check((|| {
        e.ok(&["run", "-d", "--name", "up", BUSYBOX, "sleep", "300"])?;
        e.ok(&["create", "--name", "down", BUSYBOX, "true"])?;
        let before = e.ok(&["ps", "-aq"])?;
        e.fails_one_line(
            &[
                "run",
                "--rm",
                "--network",
                "container:missing",
                BUSYBOX,
                "true",
            ],
            125,
            "no such container: missing",
        )?;
        for (flag, value, want) in [
            (
                "--hostname",
                "h",
                "conflicting options: hostname and the network mode",
            ),
            (
                "--add-host",
                "a:10.0.0.1",
                "conflicting options: custom host-to-IP mapping and the network mode",
            ),
            (
                "--dns",
                "10.0.0.1",
                "conflicting options: dns and the network mode",
            ),
            (
                "--dns-search",
                "example.test",
                "conflicting options: dns and the network mode",
            ),
        ] {
            e.fails_one_line(
                &["create", "--network", "container:up", flag, value, BUSYBOX],
                125,
                want,
            )?;
        }
        e.fails_one_line(
            &["create", "--dns", "resolver.example", BUSYBOX],
            125,
            "invalid --dns \"resolver.example\": not an IP address",
        )?;
        e.fails_one_line(
            &["create", "--add-host", "lonely", BUSYBOX],
            125,
            "invalid --add-host \"lonely\": expected name:ip",
        )?;
        e.fails_one_line(
            &["create", "--add-host", "h:300.1.1.1", BUSYBOX],
            125,
            "is not an IP address",
        )?;
        e.fails_one_line(
            &["create", "--network", "bridge", BUSYBOX],
            125,
            "invalid --network \"bridge\"",
        )?;
        ensure!(
            e.ok(&["ps", "-aq"])? == before,
            "a refused create left a container"
        );
        // Joining a stopped container fails at start, with Docker's words.
        let (code, err) = e.fails(&[
            "run",
            "--name",
            "late",
            "--network",
            "container:down",
            BUSYBOX,
            "true",
        ])?;
        ensure!(code == 125, "exit {code}");
        ensure!(
            err.lines().count() == 1
                && err.contains("cannot join network namespace of a non running container: down"),
            "{err}"
        );
        e.ok(&["rm", "-f", "up", "late"])?;
        Ok(())
    })());
}
