//! cgroup v1 (and the v1 half of hybrid hosts): one hierarchy per controller group.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{read, write, Cgroup, CgroupError, CgroupMode, Result};

/// A new cpuset cgroup starts with empty `cpus`/`mems` and refuses tasks: copy the parent's.
pub(super) fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = read(&dir.join(file))?;
        if current.trim().is_empty() {
            let value = read(&parent.join(file))?;
            write(dir, file, value.trim())?;
        }
    }
    Ok(())
}

fn need<'a>(cg: &'a Cgroup, controller: &str, what: &str) -> Result<&'a Path> {
    cg.dir_for(controller)
        .ok_or_else(|| CgroupError::Unsupported {
            what: what.to_string(),
            reason: format!("no {controller} cgroup hierarchy is mounted"),
        })
}

/// Applies the resources to the v1 hierarchies (and, on hybrid hosts, the controllers only the
/// unified hierarchy has).
pub(super) fn apply(cg: &Cgroup, res: &LinuxResources) -> Result<()> {
    if let Some(mem) = res.memory() {
        memory(need(cg, "memory", "memory limits")?, mem)?;
    }
    if let Some(cpu) = res.cpu() {
        apply_cpu(cg, cpu)?;
    }
    if let Some(pids) = res.pids() {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        write(need(cg, "pids", "pids limit")?, "pids.max", &v)?;
    }
    if let Some(bio) = res.block_io() {
        blkio(need(cg, "blkio", "block I/O limits")?, bio)?;
    }
    let rules = super::device_rules(res);
    if !rules.is_empty() {
        let dir = need(cg, "devices", "device rules")?;
        for r in &rules {
            let file = if r.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write(dir, file, &r.to_string())?;
        }
    }
    if let Some(limits) = res.hugepage_limits() {
        for l in limits {
            if let Some(dir) = cg.dir_for("hugetlb") {
                write(
                    dir,
                    &format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                    &l.limit().to_string(),
                )?;
            } else if let (CgroupMode::Hybrid, Some(dir)) = (cg.mode, cg.unified_dir()) {
                write(
                    dir,
                    &format!("hugetlb.{}.max", l.page_size()),
                    &l.limit().to_string(),
                )?;
            } else {
                return Err(CgroupError::Unsupported {
                    what: "hugepage limits".into(),
                    reason: "no hugetlb controller".into(),
                });
            }
        }
    }
    if let Some(net) = res.network() {
        if let Some(class) = net.class_id() {
            write(
                need(cg, "net_cls", "network class id")?,
                "net_cls.classid",
                &class.to_string(),
            )?;
        }
        for p in net.priorities().iter().flatten() {
            write(
                need(cg, "net_prio", "network priorities")?,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::Unsupported {
            what: "linux.resources.unified".into(),
            reason: "it needs a cgroup v2 host".into(),
        });
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(CgroupError::Unsupported {
            what: "rdma limits".into(),
            reason: "not implemented by strata-runtime".into(),
        });
    }
    Ok(())
}

fn memory(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    if let Some(limit) = mem.limit() {
        write(dir, "memory.limit_in_bytes", &limit.to_string())?;
    }
    if let Some(swap) = mem.swap() {
        if mem.limit().is_none() && swap != -1 {
            return Err(CgroupError::Invalid(
                "a swap limit needs a memory limit".into(),
            ));
        }
        write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
    }
    if let Some(r) = mem.reservation() {
        write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(CgroupError::Invalid(format!("swappiness {s} is over 100")));
        }
        write(dir, "memory.swappiness", &s.to_string())?;
    }
    if mem.disable_oom_killer() == Some(true) {
        write(dir, "memory.oom_control", "1")?;
    }
    if let Some(k) = mem.kernel() {
        write(dir, "memory.kmem.limit_in_bytes", &k.to_string())?;
    }
    if let Some(k) = mem.kernel_tcp() {
        write(dir, "memory.kmem.tcp.limit_in_bytes", &k.to_string())?;
    }
    Ok(())
}

fn apply_cpu(cg: &Cgroup, cpu: &LinuxCpu) -> Result<()> {
    let wants_cpu = cpu.shares().is_some()
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.realtime_period().is_some()
        || cpu.realtime_runtime().is_some()
        || cpu.burst().is_some();
    if wants_cpu {
        let dir = need(cg, "cpu", "cpu limits")?;
        if let Some(s) = cpu.shares() {
            write(dir, "cpu.shares", &s.to_string())?;
        }
        if let Some(p) = cpu.period() {
            write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = cpu.quota() {
            write(dir, "cpu.cfs_quota_us", &q.to_string())?;
        }
        if let Some(b) = cpu.burst() {
            write(dir, "cpu.cfs_burst_us", &b.to_string())?;
        }
        if let Some(p) = cpu.realtime_period() {
            write(dir, "cpu.rt_period_us", &p.to_string())?;
        }
        if let Some(r) = cpu.realtime_runtime() {
            write(dir, "cpu.rt_runtime_us", &r.to_string())?;
        }
    }
    if cpu.idle().is_some() {
        return Err(CgroupError::Unsupported {
            what: "cpu idle".into(),
            reason: "it needs a cgroup v2 host".into(),
        });
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        write(need(cg, "cpuset", "cpuset")?, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|c| !c.is_empty()) {
        write(need(cg, "cpuset", "cpuset")?, "cpuset.mems", mems)?;
    }
    Ok(())
}

fn blkio(dir: &Path, bio: &LinuxBlockIo) -> Result<()> {
    if let Some(w) = bio.weight() {
        write(dir, "blkio.weight", &w.to_string())?;
    }
    if let Some(w) = bio.leaf_weight() {
        write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            write(
                dir,
                "blkio.weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
        if let Some(w) = d.leaf_weight() {
            write(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            bio.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            bio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            bio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            bio.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            write(
                dir,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::CgroupDir;
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    fn fake(tmp: &Path, ctrls: &[(&str, &[&str])]) -> Cgroup {
        let dirs = ctrls
            .iter()
            .map(|(c, files)| {
                let dir = tmp.join(c);
                std::fs::create_dir_all(&dir).unwrap();
                for f in *files {
                    std::fs::write(dir.join(f), "").unwrap();
                }
                CgroupDir {
                    controllers: vec![c.to_string()],
                    unified: false,
                    dir,
                    created: vec![],
                }
            })
            .collect();
        Cgroup {
            mode: CgroupMode::V1,
            path: "/x".into(),
            dirs,
        }
    }

    #[test]
    fn writes_limits_to_the_v1_files() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = fake(
            tmp.path(),
            &[
                (
                    "memory",
                    &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
                ),
                (
                    "cpu",
                    &["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
                ),
                ("pids", &["pids.max"]),
            ],
        );
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 20)
                    .swap(2i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50000i64)
                    .period(100000u64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .build()
            .unwrap();
        apply(&cg, &res).unwrap();
        let r = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(r("memory/memory.limit_in_bytes"), "1048576");
        assert_eq!(r("memory/memory.memsw.limit_in_bytes"), "2097152");
        assert_eq!(r("cpu/cpu.cfs_quota_us"), "50000");
        assert_eq!(r("pids/pids.max"), "10");
    }

    #[test]
    fn a_missing_interface_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = fake(tmp.path(), &[("memory", &["memory.limit_in_bytes"])]);
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 20)
                    .swap(2i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = apply(&cg, &res).unwrap_err().to_string();
        assert!(err.contains("memory.memsw.limit_in_bytes"), "{err}");
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .build()
            .unwrap();
        assert!(matches!(
            apply(&cg, &res),
            Err(CgroupError::Unsupported { .. })
        ));
    }
}
