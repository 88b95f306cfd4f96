//! A minimal init for the container's first process (`docker run --init`), asked for with the
//! spec annotation [`INIT_ANNOTATION`] = `"true"`.
//!
//! Instead of exec'ing the process, the runtime's init forks it and stays as the container's
//! pid 1, as `tini` does for Docker: it forwards every signal it receives to the process (a pid
//! 1 without handlers would drop most of them), reaps every orphan that the namespace
//! reparents to it (no zombies pile up), and exits as the process does (its code, or 128 + the
//! signal that killed it). It shows in `ps` as `strata-init -- <command>` (comm
//! `strata-init`). Nothing of it is in
//! the container's root filesystem: it is the runtime's own code, already running there.

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// The annotation that asks for the init.
pub const INIT_ANNOTATION: &str = "org.strata.init";

/// Whether the spec's annotations ask for the init.
pub fn wanted(spec: &oci_spec::runtime::Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(INIT_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Names this process `strata-init -- ARGS` in `ps` (comm and command line); if the kernel
/// refuses the command line, it stays the runtime's.
pub fn name(args: &[String]) {
    let comm = c"strata-init";
    // SAFETY: PR_SET_NAME reads a NUL-terminated string that outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr(), 0, 0, 0) };
    let mut line = b"strata-init\0--\0".to_vec();
    for a in args {
        line.extend_from_slice(a.as_bytes());
        line.push(0);
    }
    // The kernel shows this memory as /proc/1/cmdline from now on: it must stay.
    let line: &'static [u8] = Box::leak(line.into_boxed_slice());
    let (start, end) = (
        line.as_ptr() as u64,
        line.as_ptr() as u64 + line.len() as u64,
    );
    if !set_args_map(start, end) {
        // SAFETY: PR_SET_MM takes addresses of this process's own memory, which stays mapped
        // (leaked); the start is set first, below the current end, so the pair stays ordered.
        // Needs CAP_SYS_RESOURCE.
        unsafe {
            if libc::prctl(libc::PR_SET_MM, libc::PR_SET_MM_ARG_START, start, 0, 0) == 0 {
                libc::prctl(libc::PR_SET_MM, libc::PR_SET_MM_ARG_END, end, 0, 0);
            }
        }
    }
}

/// The kernel's `struct prctl_mm_map` (linux/prctl.h).
#[repr(C)]
struct MmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: *mut u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// Moves the command line to `start..end` with PR_SET_MM_MAP (the checkpoint/restore call,
/// which needs no capability when the executable stays): every other bound as it is now,
/// from /proc/self/stat.
fn set_args_map(start: u64, end: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // Fields after the command name, which is in parentheses and may hold spaces: the first
    // is field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (Some(start_code), Some(end_code), Some(start_stack)) = (field(26), field(27), field(28))
    else {
        return false;
    };
    let (Some(start_data), Some(end_data), Some(start_brk)) = (field(45), field(46), field(47))
    else {
        return false;
    };
    let (Some(env_start), Some(env_end)) = (field(50), field(51)) else {
        return false;
    };
    let map = MmMap {
        start_code,
        end_code,
        start_data,
        end_data,
        start_brk,
        // SAFETY: sbrk(0) only reads the current program break.
        brk: unsafe { libc::sbrk(0) } as u64,
        start_stack,
        arg_start: start,
        arg_end: end,
        env_start,
        env_end,
        auxv: std::ptr::null_mut(),
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    // SAFETY: the kernel reads `map` (of the size given) during the call; the bounds it sets
    // are this process's own, the new command line's memory stays mapped.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP,
            &map as *const MmMap as libc::c_ulong,
            std::mem::size_of::<MmMap>() as libc::c_ulong,
            0,
        )
    };
    r == 0
}

/// Blocks every signal from now on, returning the mask before: a signal sent between the
/// container's start and the fork is then kept for the process (a pid 1 drops those it has
/// no handler for), not lost.
pub fn hold_signals() -> nix::Result<SigSet> {
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    Ok(old)
}

/// Forks the process (signals held, see [`hold_signals`]; the child gets `mask` back): returns
/// in the child, which goes on to exec it; this process becomes its init and never returns.
/// As tini does, the child gets a process group of its own, the terminal's foreground one if
/// it has a terminal, so that the terminal's signals reach it once, through the init.
pub fn fork_process(mask: &SigSet) -> nix::Result<()> {
    // SAFETY: the runtime's init is single-threaded here (a fresh fork, about to exec), so the
    // child may run any code; it only sets its process group and mask and returns to exec.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let stdin = std::io::stdin();
            if nix::unistd::isatty(&stdin).unwrap_or(false) {
                // SIGTTOU is blocked here, so a background group may take the terminal.
                let _ = nix::unistd::tcsetpgrp(&stdin, nix::unistd::getpid());
            }
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)?;
            Ok(())
        }
        ForkResult::Parent { child } => serve(child),
    }
}

/// Forwards signals to `child` and reaps orphans until `child` ends; exits as it did.
fn serve(child: Pid) -> ! {
    let all = SigSet::all();
    loop {
        let Ok(sig) = all.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => exit(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => exit(128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends this forked copy of the runtime without running destructors that
    // belong to the runtime process.
    unsafe { libc::_exit(code) }
}
