//! The network files Docker writes for a container and bind-mounts over the image's:
//! `/etc/hostname`, `/etc/hosts` (the localhost lines, `--add-host` entries and the container's
//! hostname; with `--network host` the host's file plus the extra entries) and
//! `/etc/resolv.conf` (the host's, with `--dns`, `--dns-search` and `--dns-option` replacing
//! its parts; localhost nameservers are dropped outside host mode, and Docker's public
//! fallback used when none is left). They live in the container's directory, are written at
//! each start, and are shared by containers that join its network (`--network container:`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::record::Settings;

/// A network flag with a bad value, or one that conflicts with the network mode.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EtcError {
    #[error("invalid --add-host {0:?}: expected name:ip")]
    HostFormat(String),
    #[error("invalid --add-host {host:?}: {ip:?} is not an IP address")]
    HostIp { host: String, ip: String },
    #[error("invalid --dns {0:?}: not an IP address")]
    Dns(String),
    #[error("invalid --dns-search {0:?}: expected a domain name")]
    DnsSearch(String),
    #[error("invalid --dns-option {0:?}: expected an option like ndots:2")]
    DnsOption(String),
    /// Docker's wording for flags that a joined network makes meaningless.
    #[error("conflicting options: {0} and the network mode")]
    Conflict(&'static str),
}

/// The three files, in the directory of the container that owns the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcPaths {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

impl EtcPaths {
    /// The files of the container whose directory is `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        EtcPaths {
            hostname: dir.join("hostname"),
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
        }
    }

    /// (destination in the container, file on the host).
    pub fn pairs(&self) -> [(&'static str, &Path); 3] {
        [
            ("/etc/hostname", &self.hostname),
            ("/etc/hosts", &self.hosts),
            ("/etc/resolv.conf", &self.resolv_conf),
        ]
    }

    /// The bind mounts of the files, leaving out those the container mounts something else on.
    pub fn mounts(&self, taken: &[&str]) -> Vec<Value> {
        self.pairs()
            .into_iter()
            .filter(|(dst, _)| !taken.contains(dst))
            .map(|(dst, src)| {
                json!({
                    "destination": dst,
                    "type": "bind",
                    "source": src,
                    "options": ["rbind", "rprivate"],
                })
            })
            .collect()
    }
}

/// Parses an IP as Docker's flags take it (IPv6 with or without brackets).
fn ip(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// `name:ip` (or `name=ip`) → (name, ip).
pub fn parse_extra_host(h: &str) -> Result<(String, IpAddr), EtcError> {
    let (name, addr) = match (h.split_once('='), h.split_once(':')) {
        (Some((n, a)), _) if !n.contains(':') => (n, a),
        (_, Some((n, a))) => (n, a),
        _ => return Err(EtcError::HostFormat(h.to_string())),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(EtcError::HostFormat(h.to_string()));
    }
    let addr_ip = ip(addr).ok_or_else(|| EtcError::HostIp {
        host: h.to_string(),
        ip: addr.to_string(),
    })?;
    Ok((name.to_string(), addr_ip))
}

/// Refuses bad network flags, and those a joined network (`container:`) makes meaningless.
pub fn validate(s: &Settings) -> Result<(), EtcError> {
    for h in &s.extra_hosts {
        parse_extra_host(h)?;
    }
    for d in &s.dns {
        ip(d).ok_or_else(|| EtcError::Dns(d.clone()))?;
    }
    for d in &s.dns_search {
        let ok = d == "."
            || (!d.is_empty()
                && d.len() <= 255
                && !d.starts_with(['-', '.'])
                && !d.contains(char::is_whitespace));
        if !ok {
            return Err(EtcError::DnsSearch(d.clone()));
        }
    }
    for o in &s.dns_options {
        if o.is_empty() || o.contains(char::is_whitespace) {
            return Err(EtcError::DnsOption(o.clone()));
        }
    }
    if s.network_mode.starts_with("container:") {
        if !s.hostname.is_empty() {
            return Err(EtcError::Conflict("hostname"));
        }
        if !s.extra_hosts.is_empty() {
            return Err(EtcError::Conflict("custom host-to-IP mapping"));
        }
        if !s.dns.is_empty() || !s.dns_search.is_empty() || !s.dns_options.is_empty() {
            return Err(EtcError::Conflict("dns"));
        }
    }
    Ok(())
}

const LOCALHOST: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

fn extra_lines(extra_hosts: &[String]) -> String {
    extra_hosts
        .iter()
        .filter_map(|h| parse_extra_host(h).ok())
        .map(|(name, ip)| format!("{ip}\t{name}\n"))
        .collect()
}

/// `/etc/hosts`: in host mode the host's file and the extra entries; otherwise Docker's
/// localhost lines, the extra entries and the hostname (on the loopback address, the only one a
/// container without a network has).
pub fn hosts(hostname: &str, extra_hosts: &[String], host_mode: bool, host_file: &str) -> String {
    let mut out = if host_mode {
        let mut h = host_file.to_string();
        if !h.is_empty() && !h.ends_with('\n') {
            h.push('\n');
        }
        h
    } else {
        LOCALHOST.to_string()
    };
    out.push_str(&extra_lines(extra_hosts));
    if !host_mode {
        out.push_str(&format!("127.0.0.1\t{hostname}\n"));
    }
    out
}

fn is_localhost(ns: &str) -> bool {
    ns.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Docker's nameservers when none of the host's can be used.
const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `/etc/resolv.conf` from the host's: the flags replace its nameservers, search domains and
/// options; outside host mode localhost nameservers are dropped (they would be the
/// container's own loopback), and with none left Docker's fallback servers are used.
pub fn resolv_conf(
    host_file: &str,
    host_mode: bool,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> String {
    let mut other = Vec::new();
    let (mut servers, mut domains, mut opts) = (Vec::new(), Vec::new(), Vec::new());
    for line in host_file.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(String::from)),
            Some("search") | Some("domain") => {
                domains = words.map(String::from).collect();
            }
            Some("options") => opts.extend(words.map(String::from)),
            _ => other.push(line.to_string()),
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    } else if !host_mode {
        servers.retain(|s| !is_localhost(s));
        if servers.is_empty() {
            servers = FALLBACK_DNS.iter().map(|s| s.to_string()).collect();
        }
    }
    if !search.is_empty() {
        domains = search.iter().filter(|d| *d != ".").cloned().collect();
    }
    if !options.is_empty() {
        opts = options.to_vec();
    }
    let mut out = String::new();
    for l in other.iter().filter(|l| !l.trim().is_empty()) {
        out.push_str(l);
        out.push('\n');
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !domains.is_empty() {
        out.push_str(&format!("search {}\n", domains.join(" ")));
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    out
}

/// The host's resolv.conf: `/etc/resolv.conf`, or systemd-resolved's upstream file when the
/// former only points at its local stub, as Docker reads it.
fn host_resolv_conf() -> String {
    let main = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let only_stub = {
        let ns: Vec<&str> = main
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .map(str::trim)
            .collect();
        !ns.is_empty() && ns.iter().all(|n| *n == "127.0.0.53")
    };
    if only_stub {
        if let Ok(up) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return up;
        }
    }
    main
}

/// The host's hostname.
pub fn host_hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Writes the three files of a container that owns its network.
pub fn write(paths: &EtcPaths, hostname: &str, s: &Settings) -> std::io::Result<()> {
    let host_mode = s.network_mode == "host";
    let host_hosts = if host_mode {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        String::new()
    };
    std::fs::write(&paths.hostname, format!("{hostname}\n"))?;
    std::fs::write(
        &paths.hosts,
        hosts(hostname, &s.extra_hosts, host_mode, &host_hosts),
    )?;
    std::fs::write(
        &paths.resolv_conf,
        resolv_conf(
            &host_resolv_conf(),
            host_mode,
            &s.dns,
            &s.dns_search,
            &s.dns_options,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(f: impl FnOnce(&mut Settings)) -> Settings {
        let mut s = Settings::default();
        f(&mut s);
        s
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(validate(&settings(
            |s| s.extra_hosts = vec!["db:10.0.0.2".into(), "v6:::1".into(), "x=[fe80::1]".into()]
        ))
        .is_ok());
        assert_eq!(
            validate(&settings(|s| s.extra_hosts = vec!["db".into()])),
            Err(EtcError::HostFormat("db".into()))
        );
        assert!(matches!(
            validate(&settings(|s| s.extra_hosts = vec!["db:nowhere".into()])),
            Err(EtcError::HostIp { .. })
        ));
        assert_eq!(
            validate(&settings(|s| s.dns = vec!["dns.example".into()]))
                .unwrap_err()
                .to_string(),
            "invalid --dns \"dns.example\": not an IP address"
        );
        assert!(validate(&settings(|s| s.dns_search = vec!["-bad".into()])).is_err());
        assert!(validate(&settings(|s| s.dns_options = vec!["a b".into()])).is_err());
    }

    #[test]
    fn joined_network_conflicts_use_dockers_words() {
        let joined = |f: fn(&mut Settings)| {
            validate(&settings(|s| {
                s.network_mode = "container:web".into();
                f(s)
            }))
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            joined(|s| s.hostname = "h".into()),
            "conflicting options: hostname and the network mode"
        );
        assert_eq!(
            joined(|s| s.extra_hosts = vec!["a:1.2.3.4".into()]),
            "conflicting options: custom host-to-IP mapping and the network mode"
        );
        assert_eq!(
            joined(|s| s.dns = vec!["1.1.1.1".into()]),
            "conflicting options: dns and the network mode"
        );
        assert_eq!(
            joined(|s| s.dns_search = vec!["x.org".into()]),
            "conflicting options: dns and the network mode"
        );
    }

    #[test]
    fn hosts_file() {
        let h = hosts("box", &["db:10.0.0.2".into()], false, "");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.2\tdb\n"));
        assert!(h.ends_with("127.0.0.1\tbox\n"));
        let h = hosts("box", &["db:10.0.0.2".into()], true, "1.2.3.4 myhost");
        assert_eq!(h, "1.2.3.4 myhost\n10.0.0.2\tdb\n");
    }

    #[test]
    fn resolv_conf_like_docker() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp.example\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, false, &[], &[], &[]),
            "# generated\nnameserver 10.1.1.1\nsearch corp.example\noptions edns0\n"
        );
        assert!(resolv_conf(host, true, &[], &[], &[]).contains("nameserver 127.0.0.53"));
        let only_local = "nameserver 127.0.0.1\nnameserver ::1\n";
        assert_eq!(
            resolv_conf(only_local, false, &[], &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let flags = resolv_conf(
            host,
            false,
            &["192.0.2.1".into()],
            &["a.example".into(), "b.example".into()],
            &["ndots:2".into()],
        );
        assert_eq!(
            flags,
            "# generated\nnameserver 192.0.2.1\nsearch a.example b.example\noptions ndots:2\n"
        );
        assert!(!resolv_conf(host, false, &[], &[".".into()], &[]).contains("search"));
    }
}
