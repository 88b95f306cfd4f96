//! Finding the cgroup hierarchies of the host: v1, v2 or hybrid, decided at run time from
//! `/proc/self/mountinfo`.

use std::path::PathBuf;

/// The kind of cgroup host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// The unified hierarchy only, mounted at the cgroup root.
    V2,
    /// v1 hierarchies for the controllers plus a cgroup2 mount beside them (often holding only
    /// a controller or two, like `hugetlb` here). The v1 hierarchies are used for resources;
    /// the unified one is joined too, as runc does, and used for the controllers only it has.
    Hybrid,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Its root inside the cgroup tree (usually `/`).
    pub root: String,
    /// v1 controllers (e.g. `["cpu", "cpuacct"]`, or `["name=systemd"]`); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Whether this is the cgroup2 (unified) hierarchy.
    pub unified: bool,
}

/// Decodes the octal escapes (`\040` for a space) of a mountinfo field.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the cgroup hierarchies out of a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let (root, mount) = (unescape(l[3]), PathBuf::from(unescape(l[4])));
        match r[0] {
            "cgroup2" => out.push(Hierarchy {
                mount,
                root,
                controllers: Vec::new(),
                unified: true,
            }),
            "cgroup" => {
                let controllers = r[2]
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro"
                                | "xattr"
                                | "clone_children"
                                | "noprefix"
                                | "cpuset_v2_mode"
                        )
                    })
                    .filter(|o| !o.starts_with("release_agent="))
                    .map(str::to_string)
                    .collect();
                out.push(Hierarchy {
                    mount,
                    root,
                    controllers,
                    unified: false,
                })
            }
            _ => {}
        }
    }
    out
}

/// The host's mode, given its hierarchies.
pub fn mode_of(hierarchies: &[Hierarchy]) -> Option<CgroupMode> {
    let v1 = hierarchies
        .iter()
        .any(|h| !h.unified && h.controllers.iter().any(|c| !c.starts_with("name=")));
    let v2 = hierarchies.iter().any(|h| h.unified);
    match (v1, v2) {
        (true, true) => Some(CgroupMode::Hybrid),
        (true, false) => Some(CgroupMode::V1),
        (false, true) => Some(CgroupMode::V2),
        (false, false) => None,
    }
}

/// The cgroup path of this process in each hierarchy, from a `/proc/self/cgroup` text:
/// (controllers, path); the unified entry has no controllers.
pub fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            let ctrls = ctrl
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((ctrls, path.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host() {
        let h = parse_mountinfo(HYBRID);
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h[2].controllers, vec!["name=systemd"]);
        assert!(h[3].unified);
        assert_eq!(mode_of(&h), Some(CgroupMode::Hybrid));
    }

    #[test]
    fn pure_modes() {
        let v2 =
            parse_mountinfo("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(mode_of(&v2), Some(CgroupMode::V2));
        let v1 =
            parse_mountinfo("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
        assert_eq!(mode_of(&v1), Some(CgroupMode::V1));
        assert_eq!(mode_of(&[]), None);
    }

    #[test]
    fn escaped_mount_points() {
        let h = parse_mountinfo("35 31 0:32 / /a\\040b rw - cgroup cgroup rw,memory\n");
        assert_eq!(h[0].mount, PathBuf::from("/a b"));
    }

    #[test]
    fn proc_cgroup() {
        let p = parse_proc_cgroup("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/x\n");
        assert_eq!(p[0], (vec!["memory".to_string()], "/a/b".to_string()));
        assert_eq!(p[2], (vec![], "/x".to_string()));
    }
}
