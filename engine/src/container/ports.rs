//! `-p/--publish`: a container's TCP ports reachable on the host's.
//!
//! Containers have no bridge here (their network namespace has `lo` only, or is the host's), so
//! a published port is proxied in user space, as Docker's `docker-proxy` does: the container's
//! monitor binds the host's socket before the container is created (a port in use fails the
//! start), and for each connection opens one to the container's port on its loopback, from
//! inside its network namespace, and copies both ways (see `proxy.rs`). The monitor owns the
//! sockets, so they stay while the engine restarts and go when the container stops.
//!
//! The forms Docker takes: `CONTAINER`, `HOST:CONTAINER`, `IP:HOST:CONTAINER`, `IP::CONTAINER`
//! (an empty or absent host port is one the kernel picks), each port a number or a range
//! `A-B` of the same length on both sides, with `/tcp`. IPv6 addresses go in brackets.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One host port and the container port behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// The host address ("" for all IPv4 addresses).
    pub host_ip: String,
    /// 0: one the kernel picks.
    pub host_port: u16,
    pub container_port: u16,
}

impl PortBinding {
    /// Docker's key for the container side: `80/tcp`.
    pub fn key(&self) -> String {
        format!("{}/tcp", self.container_port)
    }

    /// The address the host socket is bound to.
    pub fn bind_ip(&self) -> &str {
        if self.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &self.host_ip
        }
    }

    /// `0.0.0.0:8080->80/tcp`, as `docker ps` shows it.
    pub fn display(&self) -> String {
        let ip = self.bind_ip();
        let ip = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("{ip}:{}->{}", self.host_port, self.key())
    }
}

/// A port or a range of ports.
fn range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "invalid {what} port {p:?}: use a number from 1 to 65535"
            )),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!(
                    "invalid {what} port range {s:?}: {a} is more than {b}"
                ));
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// Parses one `-p` value into its bindings.
pub fn parse(spec: &str) -> Result<Vec<PortBinding>, String> {
    let bad = |why: String| format!("invalid --publish {spec:?}: {why}");
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p),
        None => (spec, "tcp"),
    };
    match proto {
        "tcp" => {}
        "udp" | "sctp" => {
            return Err(bad(format!(
                "publishing {proto} ports is not supported (tcp only)"
            )))
        }
        _ => return Err(bad(format!("unknown protocol {proto:?}: use tcp"))),
    }
    // [IP:][HOST:]CONTAINER, IPv6 in brackets.
    let (ip, ports) = match rest.strip_prefix('[') {
        Some(r) => {
            let (ip, after) = r
                .split_once("]:")
                .ok_or_else(|| bad("an IPv6 address in brackets must be followed by :".into()))?;
            (Some(ip.to_string()), after.to_string())
        }
        None => match rest.matches(':').count() {
            0 | 1 => (None, rest.to_string()),
            2 => {
                let (ip, after) = rest.split_once(':').unwrap_or_default();
                (Some(ip.to_string()), after.to_string())
            }
            _ => {
                return Err(bad(
                    "too many colons (put an IPv6 address in brackets)".into()
                ))
            }
        },
    };
    let host_ip = match ip {
        Some(ip) => {
            ip.parse::<IpAddr>()
                .map_err(|_| bad(format!("invalid IP address {ip:?}")))?;
            ip
        }
        None => String::new(),
    };
    let (host, container) = match ports.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", ports.as_str()),
    };
    let (c0, c1) = range(container, "container").map_err(bad)?;
    let host = if host.is_empty() {
        None
    } else {
        Some(range(host, "host").map_err(bad)?)
    };
    if let Some((h0, h1)) = host {
        if h1 - h0 != c1 - c0 {
            return Err(bad(format!(
                "the host range {h0}-{h1} and the container range {c0}-{c1} differ in length"
            )));
        }
    }
    Ok((c0..=c1)
        .map(|c| PortBinding {
            host_ip: host_ip.clone(),
            host_port: host.map_or(0, |(h0, _)| h0 + (c - c0)),
            container_port: c,
        })
        .collect())
}

/// Parses every `-p` value; a host port given twice is refused.
pub fn parse_all(specs: &[String]) -> Result<Vec<PortBinding>, String> {
    let mut all: Vec<PortBinding> = Vec::new();
    for s in specs {
        for b in parse(s)? {
            let twice = b.host_port != 0
                && all.iter().any(|o| {
                    o.host_port == b.host_port
                        && (o.bind_ip() == b.bind_ip()
                            || o.host_ip.is_empty()
                            || b.host_ip.is_empty())
                });
            if twice {
                return Err(format!(
                    "invalid --publish {s:?}: host port {} is published twice",
                    b.host_port
                ));
            }
            all.push(b);
        }
    }
    Ok(all)
}

/// Parses `--expose PORT[-PORT][/tcp|udp]` (and the image's `ExposedPorts` keys) into
/// `(port, protocol)` pairs.
pub fn parse_expose(spec: &str) -> Result<Vec<(u16, String)>, String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, "tcp"),
    };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid --expose {spec:?}: unknown protocol {proto:?}: use tcp, udp or sctp"
        ));
    }
    let (a, b) = range(ports, "exposed").map_err(|e| format!("invalid --expose {spec:?}: {e}"))?;
    Ok((a..=b).map(|p| (p, proto.to_string())).collect())
}

/// `Config.ExposedPorts` keys: the image's, `--expose`'s and the published ones.
pub fn exposed(s: &super::record::Settings) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    for e in s.image_exposed.iter().chain(&s.expose) {
        for (p, proto) in parse_expose(e).unwrap_or_default() {
            keys.insert(format!("{p}/{proto}"));
        }
    }
    for b in parse_all(&s.publish).unwrap_or_default() {
        keys.insert(b.key());
    }
    keys
}

/// The ports a container publishes: its `-p`s and, with `-P`, every exposed TCP port not
/// published already, on a port the kernel picks. UDP and SCTP ones are left out (with a
/// warning at create).
pub fn effective(s: &super::record::Settings) -> Vec<PortBinding> {
    let mut all = parse_all(&s.publish).unwrap_or_default();
    if s.publish_all {
        for key in exposed(s) {
            let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            if !all.iter().any(|b| b.container_port == port) {
                all.push(PortBinding {
                    host_ip: String::new(),
                    host_port: 0,
                    container_port: port,
                });
            }
        }
    }
    all
}

/// Docker's map of `80/tcp` to a list of `{HostIp, HostPort}`.
fn doc(bindings: &[PortBinding], ip: impl Fn(&PortBinding) -> String) -> Value {
    if bindings.is_empty() {
        return Value::Null;
    }
    let mut m = Map::new();
    for b in bindings {
        let port = if b.host_port == 0 {
            String::new()
        } else {
            b.host_port.to_string()
        };
        let entry = json!({ "HostIp": ip(b), "HostPort": port });
        match m.get_mut(&b.key()).and_then(Value::as_array_mut) {
            Some(list) => list.push(entry),
            None => {
                m.insert(b.key(), json!([entry]));
            }
        }
    }
    Value::Object(m)
}

/// `HostConfig.PortBindings`: what the flags asked for.
pub fn port_bindings_doc(asked: &[PortBinding]) -> Value {
    doc(asked, |b| b.host_ip.clone())
}

/// `NetworkSettings.Ports`: what the running container's monitor bound.
pub fn ports_doc(bound: &[PortBinding]) -> Value {
    doc(bound, |b| b.bind_ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, host: u16, c: u16) -> PortBinding {
        PortBinding {
            host_ip: ip.into(),
            host_port: host,
            container_port: c,
        }
    }

    #[test]
    fn docker_forms_parse() {
        assert_eq!(parse("80").unwrap(), vec![b("", 0, 80)]);
        assert_eq!(parse("8080:80").unwrap(), vec![b("", 8080, 80)]);
        assert_eq!(parse("8080:80/tcp").unwrap(), vec![b("", 8080, 80)]);
        assert_eq!(
            parse("127.0.0.1:8080:80").unwrap(),
            vec![b("127.0.0.1", 8080, 80)]
        );
        assert_eq!(parse("127.0.0.1::80").unwrap(), vec![b("127.0.0.1", 0, 80)]);
        assert_eq!(parse("[::1]:8080:80").unwrap(), vec![b("::1", 8080, 80)]);
        assert_eq!(
            parse("8000-8001:80-81").unwrap(),
            vec![b("", 8000, 80), b("", 8001, 81)]
        );
        assert_eq!(parse("80-81").unwrap(), vec![b("", 0, 80), b("", 0, 81)]);
    }

    #[test]
    fn expose_and_publish_all() {
        assert_eq!(parse_expose("80").unwrap(), vec![(80, "tcp".into())]);
        assert_eq!(
            parse_expose("53-54/udp").unwrap(),
            vec![(53, "udp".into()), (54, "udp".into())]
        );
        assert!(parse_expose("x")
            .unwrap_err()
            .starts_with("invalid --expose \"x\": "));
        assert!(parse_expose("80/ftp")
            .unwrap_err()
            .contains("unknown protocol"));
        let s = super::super::record::Settings {
            image_exposed: vec!["80/tcp".into(), "53/udp".into()],
            expose: vec!["9000".into()],
            publish: vec!["8080:80".into()],
            publish_all: true,
            ..Default::default()
        };
        assert_eq!(
            exposed(&s).into_iter().collect::<Vec<_>>(),
            vec!["53/udp", "80/tcp", "9000/tcp"]
        );
        assert_eq!(effective(&s), vec![b("", 8080, 80), b("", 0, 9000)]);
    }

    #[test]
    fn bad_forms_are_named() {
        for (spec, why) in [
            ("0", "invalid container port \"0\""),
            ("65536:80", "invalid host port \"65536\""),
            ("x:80", "invalid host port \"x\""),
            ("80/udp", "publishing udp ports is not supported (tcp only)"),
            ("80/ftp", "unknown protocol \"ftp\""),
            ("1.2.3:80:80", "invalid IP address \"1.2.3\""),
            ("::1:80:80", "too many colons"),
            ("8000-8002:80-81", "differ in length"),
            ("82-81", "82 is more than 81"),
        ] {
            let e = parse(spec).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid --publish {spec:?}: ")),
                "{e}"
            );
            assert!(e.contains(why), "{spec}: {e}");
        }
        let e = parse_all(&["8080:80".into(), "127.0.0.1:8080:81".into()]).unwrap_err();
        assert!(e.contains("host port 8080 is published twice"), "{e}");
        assert!(parse_all(&["127.0.0.1:8080:80".into(), "127.0.0.2:8080:81".into()]).is_ok());
    }

    #[test]
    fn documents_are_dockers() {
        let asked = parse_all(&["127.0.0.1::80".into(), "8080:80".into()]).unwrap();
        assert_eq!(
            port_bindings_doc(&asked),
            json!({ "80/tcp": [
                { "HostIp": "127.0.0.1", "HostPort": "" },
                { "HostIp": "", "HostPort": "8080" },
            ] })
        );
        let bound = vec![b("127.0.0.1", 40000, 80), b("", 8080, 80)];
        assert_eq!(
            ports_doc(&bound),
            json!({ "80/tcp": [
                { "HostIp": "127.0.0.1", "HostPort": "40000" },
                { "HostIp": "0.0.0.0", "HostPort": "8080" },
            ] })
        );
        assert_eq!(bound[1].display(), "0.0.0.0:8080->80/tcp");
        assert_eq!(b("::1", 1, 2).display(), "[::1]:1->2/tcp");
        assert_eq!(port_bindings_doc(&[]), Value::Null);
    }
}
