//! The channel between the runtime and the container's first processes while it is created:
//! a `SOCK_SEQPACKET` socket pair carrying one JSON message per packet.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

/// A message between parent and child.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Msg {
    /// Child: I unshared a user namespace, write my id maps.
    MapIds { pid: i32 },
    /// Parent: the maps are written.
    MapsDone,
    /// Child: the container process is this host pid.
    Pid { pid: i32 },
    /// Parent: go on.
    Go,
    /// Child: the mounts are done, run prestart and createRuntime hooks now.
    RunHooks,
    /// Parent: hooks done; here is the state document for the container's own hooks.
    HooksDone { state: String },
    /// Child: all set up, waiting for start (or, for exec, about to exec).
    Ready,
    /// Child: something failed.
    Error { message: String },
}

/// What can go wrong on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A socket call failed.
    #[error("sync channel {op}: {errno}")]
    Sys {
        op: &'static str,
        errno: nix::errno::Errno,
    },
    /// A message could not be (de)coded.
    #[error("sync channel: bad message: {0}")]
    Codec(#[from] serde_json::Error),
    /// The other side closed the channel.
    #[error("the container's init process exited before it was ready")]
    Closed,
    /// The other side sent something unexpected.
    #[error("sync channel: expected {expected}, got {got:?}")]
    Unexpected { expected: &'static str, got: Msg },
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// A connected pair (parent end, child end); both close on exec.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| ChannelError::Sys {
        op: "socketpair",
        errno,
    })?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    /// Sends one message.
    pub fn send(&self, msg: &Msg) -> Result<(), ChannelError> {
        let data = serde_json::to_vec(msg)?;
        send(self.0.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .map_err(|errno| ChannelError::Sys { op: "send", errno })?;
        Ok(())
    }

    /// Receives one message; `Closed` when the other end is gone.
    pub fn recv(&self) -> Result<Msg, ChannelError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => return Ok(serde_json::from_slice(&buf[..n])?),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(ChannelError::Sys { op: "recv", errno }),
            }
        }
    }

    /// Receives a message and checks it is the expected one (an `Error` becomes `Err`).
    pub fn expect(
        &self,
        expected: &'static str,
        ok: impl Fn(&Msg) -> bool,
    ) -> Result<Msg, ChannelError> {
        let m = self.recv()?;
        if ok(&m) {
            Ok(m)
        } else {
            Err(ChannelError::Unexpected { expected, got: m })
        }
    }

    /// The raw descriptor (for closing in the child).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_close() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Pid { pid: 7 }).unwrap();
        a.send(&Msg::Error {
            message: "x".into(),
        })
        .unwrap();
        assert_eq!(b.recv().unwrap(), Msg::Pid { pid: 7 });
        assert!(matches!(
            b.expect("Go", |m| *m == Msg::Go),
            Err(ChannelError::Unexpected { .. })
        ));
        drop(a);
        assert!(matches!(b.recv(), Err(ChannelError::Closed)));
    }
}
