//! The monitor's side of `-p` (see `ports.rs`): host sockets bound before the container is
//! created, and for each connection accepted on one, a connection to the container's port on
//! its own loopback, made from inside its network namespace, with the bytes copied both ways.

use std::fs::File;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;

use super::ports::PortBinding;

/// Host sockets bound for a container, and what they were bound to (the kernel's port where
/// 0 was asked for).
#[derive(Debug)]
pub struct Bound {
    pub bindings: Vec<PortBinding>,
    listeners: Vec<(TcpListener, u16)>,
}

/// Binds a host socket for each binding; the first that cannot be bound fails them all, with
/// Docker's words.
pub fn bind(asked: &[PortBinding]) -> Result<Bound, String> {
    let mut bound = Bound {
        bindings: Vec::new(),
        listeners: Vec::new(),
    };
    for b in asked {
        let l = TcpListener::bind((b.bind_ip(), b.host_port)).map_err(|e| {
            let why = if e.kind() == io::ErrorKind::AddrInUse {
                "port is already allocated".to_string()
            } else {
                e.to_string()
            };
            format!("Bind for {}:{} failed: {why}", b.bind_ip(), b.host_port)
        })?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        bound.bindings.push(PortBinding {
            host_port: port,
            ..b.clone()
        });
        bound.listeners.push((l, b.container_port));
    }
    Ok(bound)
}

impl Bound {
    /// Serves every socket on a thread of its own, connecting into the network namespace
    /// `netns` (a `/proc/PID/ns/net` of the container's).
    pub fn serve(self, netns: File) {
        let netns = Arc::new(netns);
        for (listener, port) in self.listeners {
            let netns = netns.clone();
            std::thread::spawn(move || {
                // Sockets keep the namespace they were made in: the listener stays on the host,
                // the connections this thread makes from now on are the container's.
                if let Err(e) =
                    nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                {
                    tracing::error!(%e, "entering the container's network namespace failed; port {port} is not served");
                    return;
                }
                for client in listener.incoming() {
                    match client {
                        Ok(client) => match TcpStream::connect(("127.0.0.1", port)) {
                            Ok(server) => splice(client, server),
                            // Nothing listens there: the client's connection is closed, as
                            // Docker's proxy does.
                            Err(e) => {
                                tracing::debug!(%e, port, "connecting to the container failed")
                            }
                        },
                        Err(e) => tracing::warn!(%e, "accepting a connection failed"),
                    }
                }
            });
        }
    }
}

/// Copies `a` to `b` and `b` to `a` until each side ends, on two threads.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = |mut from: TcpStream, mut to: TcpStream| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        }
    };
    std::thread::spawn(one_way(a, b));
    std::thread::spawn(one_way(b2, a2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_port_in_use_fails_with_dockers_words() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let asked = PortBinding {
            host_ip: "127.0.0.1".into(),
            host_port: port,
            container_port: 80,
        };
        let e = bind(&[asked]).unwrap_err();
        assert_eq!(
            e,
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
    }

    #[test]
    fn connections_are_copied_both_ways() {
        // The "container" is this process's own namespace here.
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let cport = server.local_addr().unwrap().port();
        let bound = bind(&[PortBinding {
            host_ip: "127.0.0.1".into(),
            host_port: 0,
            container_port: cport,
        }])
        .unwrap();
        let hport = bound.bindings[0].host_port;
        assert_ne!(hport, 0);
        bound.serve(File::open("/proc/self/ns/net").unwrap());
        let mut client = TcpStream::connect(("127.0.0.1", hport)).unwrap();
        client.write_all(b"ping").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (mut conn, _) = server.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ping");
        conn.write_all(b"pong").unwrap();
        drop(conn);
        let mut back = String::new();
        client.read_to_string(&mut back).unwrap();
        assert_eq!(back, "pong");
    }
}
