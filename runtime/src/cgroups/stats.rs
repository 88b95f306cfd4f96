//! Reading a cgroup's usage (read-only): memory, pids, block I/O, for `strata stats`. CPU time
//! is [`Cgroup::cpu_usage_ns`].
//!
//! v1 (and hybrid hosts) read `memory.usage_in_bytes`, `memory.limit_in_bytes`,
//! `memory.stat`'s `total_inactive_file`, `pids.current` and
//! `blkio.throttle.io_service_bytes_recursive`; v2 reads `memory.current`, `memory.max`,
//! `memory.stat`'s `inactive_file`, `pids.current` and `io.stat`. An interface file the host
//! lacks (a controller not enabled) reads as zero.

use std::path::Path;

use super::{stat_value, Cgroup, CgroupError, CgroupMode, Result};

/// A v1 memory limit at or above this is "unlimited" (the kernel's is PAGE_COUNTER_MAX pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// What a cgroup uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory charged to the cgroup, page cache included, in bytes.
    pub memory: u64,
    /// Inactive file cache (what Docker's CLI subtracts from `memory`).
    pub inactive_file: u64,
    /// The memory limit; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Processes (and threads) in the cgroup.
    pub pids: u64,
    /// Bytes read from and written to block devices.
    pub block_read: u64,
    pub block_write: u64,
}

/// A file's text, or `None` when the host does not have it.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A file holding one number (or "max"); `None` for "max" or a missing file.
fn read_number(path: &Path) -> Result<Option<u64>> {
    Ok(read_optional(path)?.and_then(|t| t.trim().parse().ok()))
}

/// Sums v1 `blkio.throttle.io_service_bytes*` lines ("8:0 Read 4096") into (read, write).
pub fn parse_v1_blkio(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, v] = f[..] {
            let v: u64 = v.parse().unwrap_or(0);
            match op {
                "Read" => r += v,
                "Write" => w += v,
                _ => {}
            }
        }
    }
    (r, w)
}

/// Sums v2 `io.stat` lines ("8:0 rbytes=4096 wbytes=0 rios=1 …") into (read, write).
pub fn parse_v2_io(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for kv in text.split_whitespace() {
        match kv.split_once('=') {
            Some(("rbytes", v)) => r += v.parse().unwrap_or(0),
            Some(("wbytes", v)) => w += v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (r, w)
}

impl Cgroup {
    /// The cgroup's memory, pids and block I/O usage.
    pub fn usage(&self) -> Result<Usage> {
        let mut u = Usage::default();
        if self.mode == CgroupMode::V2 {
            let Some(dir) = self.dirs.first().map(|d| d.dir.as_path()) else {
                return Ok(u);
            };
            u.memory = read_number(&dir.join("memory.current"))?.unwrap_or(0);
            u.memory_limit = read_number(&dir.join("memory.max"))?;
            let stat = read_optional(&dir.join("memory.stat"))?.unwrap_or_default();
            u.inactive_file = stat_value(&stat, "inactive_file").unwrap_or(0);
            u.pids = read_number(&dir.join("pids.current"))?.unwrap_or(0);
            let io = read_optional(&dir.join("io.stat"))?.unwrap_or_default();
            (u.block_read, u.block_write) = parse_v2_io(&io);
            return Ok(u);
        }
        if let Some(dir) = self.dir_for("memory") {
            u.memory = read_number(&dir.join("memory.usage_in_bytes"))?.unwrap_or(0);
            u.memory_limit =
                read_number(&dir.join("memory.limit_in_bytes"))?.filter(|l| *l < V1_UNLIMITED);
            let stat = read_optional(&dir.join("memory.stat"))?.unwrap_or_default();
            u.inactive_file = stat_value(&stat, "total_inactive_file").unwrap_or(0);
        }
        if let Some(dir) = self.dir_for("pids") {
            u.pids = read_number(&dir.join("pids.current"))?.unwrap_or(0);
        }
        if let Some(dir) = self.dir_for("blkio") {
            let text = match read_optional(&dir.join("blkio.throttle.io_service_bytes_recursive"))?
            {
                Some(t) => Some(t),
                None => read_optional(&dir.join("blkio.throttle.io_service_bytes"))?,
            };
            (u.block_read, u.block_write) = parse_v1_blkio(&text.unwrap_or_default());
        }
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_io_of_both_versions() {
        let v1 = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:16 Read 10\nTotal 4618\n";
        assert_eq!(parse_v1_blkio(v1), (4106, 512));
        let v2 = "8:0 rbytes=100 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n";
        assert_eq!(parse_v2_io(v2), (101, 22));
    }

    #[test]
    fn usage_of_a_fake_v1_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = tmp.path().join("memory");
        std::fs::create_dir(&mem).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "1048576\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "cache 0\ntotal_inactive_file 4096\n",
        )
        .unwrap();
        let cg = Cgroup {
            mode: CgroupMode::V1,
            path: "/x".into(),
            dirs: vec![super::super::CgroupDir {
                controllers: vec!["memory".into()],
                unified: false,
                dir: mem,
                created: Vec::new(),
            }],
        };
        let u = cg.usage().unwrap();
        assert_eq!(u.memory, 1_048_576);
        assert_eq!(u.inactive_file, 4096);
        assert_eq!(u.memory_limit, None, "the kernel's huge value is no limit");
        assert_eq!(u.pids, 0, "no pids hierarchy reads as zero");
    }

    #[test]
    fn usage_of_a_fake_v2_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("memory.current"), "2097152\n").unwrap();
        std::fs::write(dir.join("memory.max"), "67108864\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "anon 1\ninactive_file 8192\n").unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        std::fs::write(
            dir.join("io.stat"),
            "8:0 rbytes=10 wbytes=20 rios=1 wios=1\n",
        )
        .unwrap();
        let cg = Cgroup {
            mode: CgroupMode::V2,
            path: "/x".into(),
            dirs: vec![super::super::CgroupDir {
                controllers: Vec::new(),
                unified: true,
                dir: dir.clone(),
                created: Vec::new(),
            }],
        };
        let u = cg.usage().unwrap();
        assert_eq!(
            u,
            Usage {
                memory: 2_097_152,
                inactive_file: 8192,
                memory_limit: Some(64 << 20),
                pids: 3,
                block_read: 10,
                block_write: 20,
            }
        );
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(cg.usage().unwrap().memory_limit, None, "max is no limit");
    }
}
