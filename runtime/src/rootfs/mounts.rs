//! One spec mount: option parsing, safe destination paths, and the mount calls.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::RootfsError;
use crate::cgroups::{Cgroup, CgroupMode};
use crate::syscall::Syscall;

/// A mount's options, split into flags, propagation changes and filesystem data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call.
    pub flags: MsFlags,
    /// Flags to clear (`rw`, `suid`...), recorded so a bind remount does not set them.
    pub cleared: MsFlags,
    /// Propagation changes, applied after the mount, each by its own call.
    pub propagation: Vec<MsFlags>,
    /// Everything else, passed to the filesystem as data.
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl MountOptions {
    /// Whether this is a bind mount.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The data string, if any.
    pub fn data_str(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// Parses mount(8)-style options.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                o.propagation
                    .push(propagation_flags(p).unwrap_or(MsFlags::MS_PRIVATE));
                continue;
            }
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
        o.cleared.insert(clear);
    }
    o
}

/// The flags of a propagation name (`rslave`, `private`...).
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Joins `unsafe_path` under `root`, resolving symlinks as if `root` were `/`, so that a
/// symlink in the image cannot point a mount outside the rootfs.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf, RootfsError> {
    let mut pending: Vec<PathBuf> = vec![unsafe_path.to_path_buf()];
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(p) = pending.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    current.pop();
                }
                Component::Normal(name) => {
                    let next = current.join(name);
                    let full = root.join(&next);
                    match std::fs::symlink_metadata(&full) {
                        Ok(m) if m.file_type().is_symlink() => {
                            links += 1;
                            if links > 255 {
                                return Err(RootfsError::SymlinkLoop(unsafe_path.to_path_buf()));
                            }
                            let target =
                                std::fs::read_link(&full).map_err(|source| RootfsError::Io {
                                    op: "readlink",
                                    path: full.clone(),
                                    source,
                                })?;
                            let rest: PathBuf = comps.iter().rev().collect();
                            comps.clear();
                            if target.is_absolute() {
                                current = PathBuf::new();
                            }
                            pending.push(rest);
                            pending.push(target);
                            break;
                        }
                        _ => current = next,
                    }
                }
            }
        }
    }
    Ok(root.join(current))
}

/// Makes the mount point: a directory, or an empty file when binding a file.
fn make_target(target: &Path, as_file: bool) -> Result<(), RootfsError> {
    let io = |op, source| RootfsError::Io {
        op,
        path: target.to_path_buf(),
        source,
    };
    if as_file {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("mkdir", e))?;
        }
        if !target.exists() {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(target)
                .map_err(|e| io("create", e))?;
        }
        Ok(())
    } else {
        std::fs::create_dir_all(target).map_err(|e| io("mkdir", e))
    }
}

/// Mounts one spec entry under `rootfs`.
pub fn mount_entry(
    sys: &dyn Syscall,
    rootfs: &Path,
    bundle: &Path,
    m: &Mount,
    cgroup: Option<&Cgroup>,
    new_cgroupns: bool,
) -> Result<(), RootfsError> {
    if !m.destination().is_absolute() {
        return Err(RootfsError::Invalid(format!(
            "mount destination {} is not absolute",
            m.destination().display()
        )));
    }
    let target = secure_join(rootfs, m.destination())?;
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    if typ == "bind" || opts.is_bind() {
        let src = m.source().as_ref().ok_or_else(|| {
            RootfsError::Invalid(format!(
                "bind mount to {} has no source",
                m.destination().display()
            ))
        })?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            bundle.join(src)
        };
        let meta = std::fs::metadata(&src).map_err(|source| RootfsError::Io {
            op: "stat bind source",
            path: src.clone(),
            source,
        })?;
        make_target(&target, !meta.is_dir())?;
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        sys.mount(Some(&src), &target, None, flags, None)?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            sys.mount(
                None,
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                None,
            )?;
        }
    } else if typ == "cgroup" {
        mount_cgroup(sys, &target, &opts, cgroup, new_cgroupns)?;
    } else {
        make_target(&target, false)?;
        let data = opts.data_str();
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let flags = opts.flags & !MsFlags::MS_REMOUNT;
        match sys.mount(Some(&src), &target, Some(typ), flags, data.as_deref()) {
            // Like runc: in a user namespace without its own network namespace sysfs cannot
            // be mounted; bind the host's read-only instead.
            Err(e) if typ == "sysfs" && e.errno == nix::errno::Errno::EPERM => {
                sys.mount(
                    Some(Path::new("/sys")),
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                sys.mount(
                    None,
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
                    None,
                )?;
            }
            other => other?,
        }
    }
    for p in &opts.propagation {
        sys.mount(None, &target, None, *p, None)?;
    }
    Ok(())
}

/// The `cgroup` mount type: cgroup2 on a v2 host; on v1/hybrid hosts a tmpfs with one mount
/// per hierarchy (the hierarchy itself inside a new cgroup namespace, else a bind of the
/// container's own directory), like runc.
fn mount_cgroup(
    sys: &dyn Syscall,
    target: &Path,
    opts: &MountOptions,
    cgroup: Option<&Cgroup>,
    new_cgroupns: bool,
) -> Result<(), RootfsError> {
    make_target(target, false)?;
    let flags = opts.flags
        & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let Some(cg) = cgroup else {
        return Err(RootfsError::Invalid(
            "a cgroup mount needs the container's cgroup".into(),
        ));
    };
    if cg.mode == CgroupMode::V2 {
        if new_cgroupns {
            sys.mount(
                Some(Path::new("cgroup2")),
                target,
                Some("cgroup2"),
                flags,
                None,
            )?;
        } else {
            sys.mount(
                Some(&cg.dirs[0].dir),
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            sys.mount(
                None,
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                None,
            )?;
        }
        return Ok(());
    }
    sys.mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )?;
    for d in &cg.dirs {
        let name = if d.unified {
            "unified".to_string()
        } else {
            d.controllers.join(",").replace("name=", "")
        };
        let sub = target.join(&name);
        make_target(&sub, false)?;
        if new_cgroupns {
            let (fstype, data) = if d.unified {
                ("cgroup2", None)
            } else {
                ("cgroup", Some(d.controllers.join(",")))
            };
            // Named hierarchies (name=systemd) get their name as the source, as with runc.
            let source = d
                .controllers
                .first()
                .and_then(|c| c.strip_prefix("name="))
                .unwrap_or(fstype);
            sys.mount(
                Some(Path::new(source)),
                &sub,
                Some(fstype),
                flags,
                data.as_deref(),
            )?;
        } else {
            sys.mount(
                Some(&d.dir),
                &sub,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            sys.mount(
                None,
                &sub,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                None,
            )?;
        }
        // cpu,cpuacct style joint mounts get per-controller symlinks as on the host.
        if d.controllers.len() > 1 {
            for c in &d.controllers {
                let link = target.join(c);
                if !link.exists() {
                    std::os::unix::fs::symlink(&name, &link).map_err(|source| RootfsError::Io {
                        op: "symlink",
                        path: link.clone(),
                        source,
                    })?;
                }
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        sys.mount(
            None,
            target,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};
    use oci_spec::runtime::MountBuilder;

    #[test]
    fn options() {
        let o = parse_options(&[
            "ro".into(),
            "nosuid".into(),
            "rbind".into(),
            "rslave".into(),
            "mode=755".into(),
            "rw".into(),
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data_str().as_deref(), Some("mode=755"));
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var-run")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("escape")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/var-run/x")).unwrap(),
            root.join("run/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/escape/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../a")).unwrap(),
            root.join("a")
        );
    }

    #[test]
    fn read_only_bind_is_remounted() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::write(&src, "x").unwrap();
        let rootfs = tmp.path().join("root");
        std::fs::create_dir(&rootfs).unwrap();
        let m = MountBuilder::default()
            .destination("/etc/hosts")
            .typ("bind")
            .source(&src)
            .options(vec!["rbind".into(), "ro".into()])
            .build()
            .unwrap();
        let sys = RecordingSyscall::default();
        mount_entry(&sys, &rootfs, tmp.path(), &m, None, false).unwrap();
        assert!(rootfs.join("etc/hosts").is_file(), "file mount point made");
        let calls = sys.calls();
        assert_eq!(calls.len(), 2);
        assert!(
            matches!(&calls[1], Call::Mount { flags, .. } if flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT | MsFlags::MS_BIND))
        );
    }

    #[test]
    fn proc_mount_passes_type_and_flags() {
        let tmp = tempfile::tempdir().unwrap();
        let m = MountBuilder::default()
            .destination("/dev/pts")
            .typ("devpts")
            .source("devpts")
            .options(vec![
                "nosuid".into(),
                "newinstance".into(),
                "ptmxmode=0666".into(),
            ])
            .build()
            .unwrap();
        let sys = RecordingSyscall::default();
        mount_entry(&sys, tmp.path(), tmp.path(), &m, None, false).unwrap();
        assert_eq!(
            sys.calls(),
            vec![Call::Mount {
                source: Some("devpts".into()),
                target: tmp.path().join("dev/pts"),
                fstype: Some("devpts".into()),
                flags: MsFlags::MS_NOSUID,
                data: Some("newinstance,ptmxmode=0666".into()),
            }]
        );
    }

    #[test]
    fn relative_destination_is_refused() {
        let m = MountBuilder::default()
            .destination("proc")
            .typ("proc")
            .build()
            .unwrap();
        let sys = RecordingSyscall::default();
        assert!(mount_entry(&sys, Path::new("/tmp"), Path::new("/tmp"), &m, None, false).is_err());
    }
}
