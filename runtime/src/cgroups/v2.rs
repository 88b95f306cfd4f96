//! cgroup v2: one unified hierarchy, controllers enabled from the parents down.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{read, stat_value, write, CgroupError, Result};

/// Enables every controller `parent` has for its children. Failures are logged only: a
/// controller that stays off makes the later limit write fail with a clear error.
pub(super) fn enable_controllers(parent: &Path) {
    let Ok(available) = std::fs::read_to_string(parent.join("cgroup.controllers")) else {
        return;
    };
    for c in available.split_whitespace() {
        if let Err(e) = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{c}")) {
            tracing::debug!(controller = c, parent = %parent.display(), error = %e, "cannot enable controller");
        }
    }
}

/// Whether `cgroup.events` says frozen.
pub(super) fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(stat_value(&read(&dir.join("cgroup.events"))?, "frozen") == Some(1))
}

/// runc's conversion of cgroup v1 cpu shares (2..262144) to a v2 weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// runc's conversion of a v1 blkio weight (10..1000) to a v2 io weight (1..10000).
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

fn unsupported(what: &str) -> CgroupError {
    CgroupError::Unsupported {
        what: what.to_string(),
        reason: "cgroup v2 has no such interface".into(),
    }
}

/// Applies the resources to a v2 cgroup.
pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<()> {
    if let Some(mem) = res.memory() {
        memory(dir, mem)?;
    }
    if let Some(cpu) = res.cpu() {
        apply_cpu(dir, cpu)?;
    }
    if let Some(pids) = res.pids() {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        write(dir, "pids.max", &v)?;
    }
    if let Some(bio) = res.block_io() {
        io(dir, bio)?;
    }
    for l in res.hugepage_limits().iter().flatten() {
        write(
            dir,
            &format!("hugetlb.{}.max", l.page_size()),
            &l.limit().to_string(),
        )?;
    }
    if res.network().is_some() {
        return Err(CgroupError::Unsupported {
            what: "network class ids and priorities".into(),
            reason: "cgroup v2 has no net_cls/net_prio".into(),
        });
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(CgroupError::Unsupported {
            what: "rdma limits".into(),
            reason: "not implemented by strata-runtime".into(),
        });
    }
    let mut unified: Vec<_> = res.unified().iter().flatten().collect();
    unified.sort();
    for (key, value) in unified {
        if key.contains('/') || key.starts_with('.') || !key.contains('.') {
            return Err(CgroupError::Invalid(format!(
                "unified key {key:?} is not a cgroup interface file name"
            )));
        }
        write(dir, key, value)?;
    }
    let rules = super::device_rules(res);
    if !rules.is_empty() {
        super::bpf::attach_device_filter(dir, &rules)?;
    }
    Ok(())
}

fn memory(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let num = |v: i64| {
        if v < 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(limit) = mem.limit() {
        write(dir, "memory.max", &num(limit))?;
    }
    if let Some(swap) = mem.swap() {
        let v = match (swap, mem.limit()) {
            (-1, _) => "max".to_string(),
            (_, None) | (_, Some(-1)) => {
                return Err(CgroupError::Invalid(
                    "a swap limit needs a memory limit".into(),
                ))
            }
            (s, Some(l)) if s < l => {
                return Err(CgroupError::Invalid(format!(
                    "memory+swap limit {s} is below the memory limit {l}"
                )))
            }
            (s, Some(l)) => (s - l).to_string(),
        };
        write(dir, "memory.swap.max", &v)?;
    }
    if let Some(r) = mem.reservation() {
        write(dir, "memory.low", &num(r))?;
    }
    if mem.swappiness().is_some() {
        return Err(unsupported("memory swappiness"));
    }
    if mem.disable_oom_killer() == Some(true) {
        return Err(unsupported("disabling the OOM killer"));
    }
    if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
        return Err(unsupported("kernel memory limits"));
    }
    Ok(())
}

fn apply_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(s) = cpu.shares() {
        write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if cpu.quota().is_some() || cpu.period().is_some() {
        let quota = match cpu.quota() {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        let period = cpu.period().unwrap_or(100_000);
        write(dir, "cpu.max", &format!("{quota} {period}"))?;
    }
    if let Some(b) = cpu.burst() {
        write(dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = cpu.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    if cpu.realtime_period().is_some() || cpu.realtime_runtime().is_some() {
        return Err(unsupported("realtime cpu limits"));
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|c| !c.is_empty()) {
        write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

fn io(dir: &Path, bio: &LinuxBlockIo) -> Result<()> {
    if let Some(w) = bio.weight() {
        write(
            dir,
            "io.weight",
            &format!("default {}", blkio_weight_to_io(w)),
        )?;
    }
    if bio.leaf_weight().is_some() {
        return Err(unsupported("block I/O leaf weights"));
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            write(
                dir,
                "io.weight",
                &format!("{}:{} {}", d.major(), d.minor(), blkio_weight_to_io(w)),
            )?;
        }
    }
    let throttles = [
        ("rbps", bio.throttle_read_bps_device()),
        ("wbps", bio.throttle_write_bps_device()),
        ("riops", bio.throttle_read_iops_device()),
        ("wiops", bio.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.iter().flatten() {
            write(
                dir,
                "io.max",
                &format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
    }

    #[test]
    fn writes_v2_files() {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["memory.max", "memory.swap.max", "cpu.max", "cpu.weight"] {
            std::fs::write(tmp.path().join(f), "").unwrap();
        }
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(100i64)
                    .swap(150i64)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(1024u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        apply(tmp.path(), &res).unwrap();
        let r = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(r("memory.max"), "100");
        assert_eq!(r("memory.swap.max"), "50");
        assert_eq!(r("cpu.max"), "50000 100000");
        assert_eq!(r("cpu.weight"), "39");
    }
}
