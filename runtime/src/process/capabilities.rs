//! The five capability sets of the container process.

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::spec::capability_number;
use crate::syscall::{CapSets, SysResult, Syscall};

/// The highest capability number the kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// A capability set as a bit mask.
pub fn mask(set: Option<&Capabilities>) -> u64 {
    set.into_iter()
        .flatten()
        .fold(0u64, |m, c| m | (1u64 << capability_number(*c)))
}

/// Drops every capability not in the bounding set (done while still privileged).
pub fn drop_bounding(sys: &dyn Syscall, caps: &LinuxCapabilities, last: u8) -> SysResult {
    let keep = mask(caps.bounding().as_ref());
    for cap in 0..=last {
        if keep & (1u64 << cap) == 0 {
            sys.drop_bounding_cap(cap)?;
        }
    }
    Ok(())
}

/// Sets effective, permitted and inheritable, then raises the ambient ones (after the uid
/// change, which `keep_caps` survived).
pub fn set_sets(sys: &dyn Syscall, caps: &LinuxCapabilities) -> SysResult {
    sys.capset(CapSets {
        effective: mask(caps.effective().as_ref()),
        permitted: mask(caps.permitted().as_ref()),
        inheritable: mask(caps.inheritable().as_ref()),
    })?;
    let ambient = mask(caps.ambient().as_ref());
    // The kernel only lets a capability be ambient if it is permitted and inheritable; like
    // runc 1.2, others are skipped with a warning instead of failing the container.
    let allowed = mask(caps.permitted().as_ref()) & mask(caps.inheritable().as_ref());
    for cap in 0..64u8 {
        if ambient & (1u64 << cap) != 0 {
            if allowed & (1u64 << cap) == 0 {
                tracing::debug!(
                    cap,
                    "ambient capability not in permitted and inheritable sets, skipped"
                );
                continue;
            }
            sys.raise_ambient_cap(cap)?;
        }
    }
    Ok(())
}

/// Whether the current process has a capability in its effective set (for tests and checks).
pub fn has_effective(status: &str, cap: u8) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn masks_and_calls() {
        let set: Capabilities = [Capability::Chown, Capability::Kill].into_iter().collect();
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(set.clone())
            .effective(set.clone())
            .permitted(set.clone())
            .inheritable([Capability::Kill].into_iter().collect::<Capabilities>())
            .ambient([Capability::Kill].into_iter().collect::<Capabilities>())
            .build()
            .unwrap();
        assert_eq!(mask(Some(&set)), 0b10_0001);
        let sys = RecordingSyscall::default();
        drop_bounding(&sys, &caps, 5).unwrap();
        assert_eq!(
            sys.calls(),
            (1..5).map(Call::DropBounding).collect::<Vec<_>>(),
            "0 (chown) and 5 (kill) kept"
        );
        let sys = RecordingSyscall::default();
        set_sets(&sys, &caps).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::Capset(CapSets {
                    effective: 0b10_0001,
                    permitted: 0b10_0001,
                    inheritable: 0b10_0000
                }),
                Call::RaiseAmbient(5)
            ]
        );
    }

    #[test]
    fn reads_cap_eff() {
        assert!(has_effective("Name:\tx\nCapEff:\t0000000000200000\n", 21));
        assert!(!has_effective("CapEff:\t00000000a80425fb\n", 21));
    }
}
