//! The network namespace of a container with a network of its own (`--network none`): made by
//! the engine before the container starts, with `lo` up as Docker's sandbox has it, and kept as
//! a bind mount of its nsfs file, which the runtime joins, and so do containers started with
//! `--network container:` while it runs. Removed when the container stops.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockFlag, SockType};

/// Makes a new network namespace with `lo` up and binds it on `path` (a new file).
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    remove(path);
    std::fs::File::create(path)?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own, which ends
    // once the namespace is held by the mount.
    let made = std::thread::spawn(move || -> io::Result<()> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
        loopback_up()?;
        let ns = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        nix::mount::mount(
            Some(ns.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if made.is_err() {
        remove(path);
    }
    made
}

/// Lets go of a namespace made by [`create`] (it ends when its last process does).
pub fn remove(path: &Path) {
    let _ = nix::mount::umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Sets `lo` up in the calling thread's network namespace (the kernel then gives it 127.0.0.1
/// and ::1).
fn loopback_up() -> io::Result<()> {
    let sock = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: a valid socket and a valid, writable ifreq naming the interface.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: a valid socket and a valid ifreq with the name and the new flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
