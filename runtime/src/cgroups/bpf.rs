//! The cgroup v2 device controller: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! attached to the container's cgroup.
//!
//! Why raw bpf(2) and a hand-assembled program instead of a crate: the maintained eBPF crates
//! (aya, libbpf-rs) bring an ELF loader, BTF handling or a C build of libbpf for what is here a
//! straight-line program of a few instructions per rule; runc and crun emit the same kind of
//! program by hand. The program is built by [`assemble`] (pure, unit-tested) and loaded by
//! [`attach_device_filter`], the only unsafe code of this module.
//!
//! Semantics are those of the v1 devices list: rules are evaluated in order, the last rule that
//! matches decides, and a device no rule matches is denied. The program checks the rules from
//! last to first and returns at the first match.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{CgroupError, Result};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1; // BPF_DEVCG_ACC_MKNOD
const ACC_READ: i32 = 2; // BPF_DEVCG_ACC_READ
const ACC_WRITE: i32 = 4; // BPF_DEVCG_ACC_WRITE

fn access_bits(access: &str) -> Result<i32> {
    access.chars().try_fold(0, |acc, c| match c {
        'r' => Ok(acc | ACC_READ),
        'w' => Ok(acc | ACC_WRITE),
        'm' => Ok(acc | ACC_MKNOD),
        other => Err(CgroupError::Invalid(format!(
            "device access {other:?} is not one of r, w, m"
        ))),
    })
}

/// Builds the program for `rules` (in spec order).
pub fn assemble(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    // r2 = device type, r3 = requested access, r4 = major, r5 = minor.
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Each check is a conditional jump past the rest of this rule's block.
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {}
            LinuxDeviceType::B => checks.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)]),
            LinuxDeviceType::C | LinuxDeviceType::U => {
                checks.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR)])
            }
            LinuxDeviceType::P => {
                return Err(CgroupError::Invalid(
                    "device rules cannot name fifos (type p)".into(),
                ));
            }
        }
        let access = access_bits(rule.access().as_deref().unwrap_or("rwm"))?;
        if access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Every requested bit must be in the rule: (r3 & !access) == 0.
            checks.push(vec![
                insn(ALU32_MOV_X, 1, 3, 0, 0),
                insn(ALU32_AND_K, 1, 0, 0, !access & 7),
                insn(JMP_JNE_K, 1, 0, 0, 0),
            ]);
        }
        for (reg, value) in [(4u8, rule.major()), (5u8, rule.minor())] {
            if let Some(v) = value.filter(|v| *v >= 0) {
                let v = i32::try_from(v)
                    .map_err(|_| CgroupError::Invalid(format!("device number {v} is too large")))?;
                checks.push(vec![insn(JMP_JNE_K, reg, 0, 0, v)]);
            }
        }
        let unconditional = checks.is_empty();
        let mut block: Vec<Insn> = checks.into_iter().flatten().collect();
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K {
                ins.off = i16::try_from(len - i - 1)
                    .map_err(|_| CgroupError::Invalid("device rule too long".into()))?;
            }
        }
        prog.extend(block);
        if unconditional {
            // A rule matching everything decides alone: the verifier refuses code after it
            // (unreachable instructions), and earlier rules could never matter.
            return Ok(prog);
        }
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    _rest: [u64; 10],
}

#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _pad: u32,
    _rest: [u64; 10],
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads the program for `rules` and attaches it to the cgroup directory `dir`.
pub fn attach_device_filter(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = assemble(rules)?;
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        _rest: [0; 10],
    };
    // SAFETY: `attr` is a zero-padded bpf_attr for BPF_PROG_LOAD whose pointers (program,
    // license, log buffer) point to live buffers of the stated sizes for the whole call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let errno = Errno::last();
        let msg = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)])
            .into_owned();
        tracing::warn!(verifier = %msg, "device filter rejected");
        return Err(CgroupError::Kernel {
            op: "BPF_PROG_LOAD",
            errno,
        });
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = std::fs::File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let attach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        _pad: 0,
        _rest: [0; 10],
    };
    // SAFETY: `attach` is a zero-padded bpf_attr for BPF_PROG_ATTACH naming two open fds that
    // live across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(CgroupError::Kernel {
            op: "BPF_PROG_ATTACH",
            errno: Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the instructions `assemble` emits, to check the semantics.
    fn run(prog: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
                ALU64_MOV_K => r[dst] = i.imm as u64,
                JMP_JNE_K => {
                    if r[dst] != i.imm as u32 as u64 {
                        pc += i.off as usize
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.into()));
        r
    }

    #[test]
    fn last_matching_rule_wins_and_default_is_deny() {
        let rules = vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(136), None, "rw"),
            rule(false, LinuxDeviceType::C, Some(136), Some(5), "w"),
        ];
        let p = assemble(&rules).unwrap();
        let (c, b) = (DEV_CHAR as u32, DEV_BLOCK as u32);
        let (r, w, m) = (ACC_READ as u32, ACC_WRITE as u32, ACC_MKNOD as u32);
        assert_eq!(run(&p, c, r | w, 1, 3), 1, "/dev/null allowed");
        assert_eq!(run(&p, b, r, 8, 0), 0, "/dev/sda denied");
        assert_eq!(run(&p, c, r, 136, 7), 1, "pts read allowed");
        assert_eq!(run(&p, c, m, 136, 7), 0, "pts mknod not in rw");
        assert_eq!(run(&p, c, w, 136, 5), 0, "later deny wins");
        assert_eq!(run(&p, c, r, 136, 5), 1, "deny of w only");
        assert_eq!(run(&assemble(&[]).unwrap(), c, r, 1, 3), 0);
    }

    #[test]
    fn nothing_follows_a_catch_all_rule() {
        let rules = vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ];
        let p = assemble(&rules).unwrap();
        // The catch-all deny ends the program: no default tail after it.
        assert_eq!(p.last().map(|i| i.code), Some(JMP_EXIT));
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(p.iter().filter(|i| i.code == JMP_EXIT).count(), 2);
        let allow_all = assemble(&[
            rule(true, LinuxDeviceType::A, None, None, "rwm"),
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
        ])
        .unwrap();
        assert_eq!(
            run(&allow_all, DEV_BLOCK as u32, ACC_READ as u32, 8, 0),
            0,
            "last rule wins"
        );
    }

    #[test]
    fn bad_access_is_refused() {
        assert!(assemble(&[rule(true, LinuxDeviceType::C, None, None, "x")]).is_err());
    }
}
