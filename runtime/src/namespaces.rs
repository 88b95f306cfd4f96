//! Which namespaces a container gets: new ones (unshared) and existing ones (joined by path).

use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};

use crate::syscall::{SysResult, Syscall};

/// A namespace list that cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// The same type appears twice.
    #[error("namespace type {0} is listed twice")]
    Duplicate(LinuxNamespaceType),
    /// A path to join does not exist.
    #[error("namespace path {} for {typ} does not exist", .path.display())]
    NoPath {
        typ: LinuxNamespaceType,
        path: PathBuf,
    },
    /// A user namespace without id mappings.
    #[error("a new user namespace needs uidMappings and gidMappings")]
    NoMappings,
    /// Could not write the id maps of the child.
    #[error("cannot write {}: {source}", .path.display())]
    WriteMap {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The clone flag of a namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME is 0x80, which nix does not name.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(0x0000_0080),
    }
}

/// The `/proc/<pid>/ns/<name>` file name of a namespace type.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// All types, user first: joining the user namespace first gives the rights to join the rest.
pub const ALL_TYPES: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

/// The plan: what to join (in order) and what to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Namespaces {
    /// Namespaces to join, user first, mount last.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
    /// Namespaces to create.
    pub new: Vec<LinuxNamespaceType>,
}

impl Namespaces {
    /// Builds the plan from the spec's list, refusing duplicates and missing paths.
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Self, NamespaceError> {
        let mut plan = Namespaces::default();
        for typ in ALL_TYPES {
            let mut matching = list.iter().filter(|n| n.typ() == typ);
            let Some(ns) = matching.next() else { continue };
            if matching.next().is_some() {
                return Err(NamespaceError::Duplicate(typ));
            }
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    if !p.exists() {
                        return Err(NamespaceError::NoPath {
                            typ,
                            path: p.clone(),
                        });
                    }
                    plan.join.push((typ, p.clone()));
                }
                _ => plan.new.push(typ),
            }
        }
        Ok(plan)
    }

    /// The plan for `exec`: join every namespace of the running container process `pid`.
    pub fn join_all_of(pid: i32, of_container: &Namespaces) -> Self {
        let mut join = Vec::new();
        for typ in ALL_TYPES {
            let has =
                of_container.new.contains(&typ) || of_container.join.iter().any(|(t, _)| *t == typ);
            if has {
                join.push((
                    typ,
                    PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(typ))),
                ));
            }
        }
        Namespaces {
            join,
            new: Vec::new(),
        }
    }

    /// Whether a namespace of this type is created or joined.
    pub fn has(&self, typ: LinuxNamespaceType) -> bool {
        self.new.contains(&typ) || self.join.iter().any(|(t, _)| *t == typ)
    }

    /// Whether a new namespace of this type is created.
    pub fn creates(&self, typ: LinuxNamespaceType) -> bool {
        self.new.contains(&typ)
    }

    /// The flags to unshare, except the user namespace (unshared first, on its own).
    pub fn unshare_flags(&self) -> CloneFlags {
        self.new
            .iter()
            .filter(|t| **t != LinuxNamespaceType::User)
            .fold(CloneFlags::empty(), |acc, t| acc | clone_flag(*t))
    }

    /// Joins every namespace of the plan, in order.
    pub fn join_all(&self, sys: &dyn Syscall) -> SysResult {
        for (typ, path) in &self.join {
            sys.setns(path, clone_flag(*typ))?;
        }
        Ok(())
    }
}

/// The text of a `uid_map`/`gid_map` file.
pub fn id_map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the id maps of `pid` (done by the parent, which holds the rights in the parent
/// user namespace).
pub fn write_id_maps(
    pid: i32,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let write = |name: &str, text: String| {
        let path = Path::new("/proc").join(pid.to_string()).join(name);
        std::fs::write(&path, text).map_err(|source| NamespaceError::WriteMap { path, source })
    };
    write("uid_map", id_map_text(uids))?;
    write("gid_map", id_map_text(gids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(typ: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p).build().unwrap(),
            None => b.build().unwrap(),
        }
    }

    #[test]
    fn plan_orders_user_first_and_mount_last() {
        let plan = Namespaces::from_spec(&[
            ns(LinuxNamespaceType::Mount, Some("/proc/self/ns/mnt")),
            ns(LinuxNamespaceType::Network, None),
            ns(LinuxNamespaceType::User, Some("/proc/self/ns/user")),
            ns(LinuxNamespaceType::Pid, None),
        ])
        .unwrap();
        assert_eq!(plan.join[0].0, LinuxNamespaceType::User);
        assert_eq!(plan.join[1].0, LinuxNamespaceType::Mount);
        assert_eq!(
            plan.unshare_flags(),
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNET
        );
        let sys = RecordingSyscall::default();
        plan.join_all(&sys).unwrap();
        assert_eq!(
            sys.calls()[0],
            Call::Setns {
                path: "/proc/self/ns/user".into(),
                nstype: CloneFlags::CLONE_NEWUSER
            }
        );
    }

    #[test]
    fn duplicates_and_missing_paths_are_refused() {
        let dup = Namespaces::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Pid, None),
        ]);
        assert!(matches!(dup, Err(NamespaceError::Duplicate(_))));
        let missing =
            Namespaces::from_spec(&[ns(LinuxNamespaceType::Network, Some("/nonexistent/ns"))]);
        assert!(matches!(missing, Err(NamespaceError::NoPath { .. })));
    }

    #[test]
    fn exec_joins_what_the_container_has() {
        let c = Namespaces {
            join: vec![],
            new: vec![LinuxNamespaceType::Pid, LinuxNamespaceType::Mount],
        };
        let e = Namespaces::join_all_of(42, &c);
        assert_eq!(
            e.join,
            vec![
                (LinuxNamespaceType::Pid, PathBuf::from("/proc/42/ns/pid")),
                (LinuxNamespaceType::Mount, PathBuf::from("/proc/42/ns/mnt")),
            ]
        );
    }

    #[test]
    fn id_map_format() {
        let m = oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(1000u32)
            .size(65536u32)
            .build()
            .unwrap();
        assert_eq!(id_map_text(&[m]), "0 1000 65536\n");
    }
}
