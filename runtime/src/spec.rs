//! Loading and checking an OCI runtime spec (`config.json`), and the defaults the engine uses.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capabilities, Capability, Spec};

/// What can be wrong with a bundle or a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid OCI runtime spec.
    #[error("malformed spec {}: {source}", .path.display())]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A required part of the spec is missing.
    #[error("invalid spec: {0}")]
    Missing(&'static str),
    /// The root filesystem does not exist or is not a directory.
    #[error("rootfs {} does not exist or is not a directory", .0.display())]
    NoRootfs(PathBuf),
    /// Some value in the spec cannot be honoured.
    #[error("invalid spec: {0}")]
    Invalid(String),
    /// A container id that is not allowed.
    #[error("invalid container id {0:?}: use 1 to 1024 characters from [A-Za-z0-9_.+-], not starting with '.'")]
    InvalidId(String),
}

/// Reads `bundle/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let file = File::open(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_reader(BufReader::new(file))
        .map_err(|source| SpecError::Malformed { path, source })
}

/// Reads a process description (`exec --process FILE`).
pub fn load_process(path: &Path) -> Result<oci_spec::runtime::Process, SpecError> {
    let file = File::open(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_reader(BufReader::new(file)).map_err(|source| SpecError::Malformed {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks a container id the way runc does (no path separators, no `.`/`..`).
pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::InvalidId(id.to_string()))
    }
}

/// The absolute rootfs path of `spec` in `bundle`, checked to exist.
pub fn rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    let root = spec.root().as_ref().ok_or(SpecError::Missing("no root"))?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::canonicalize(&path) {
        Ok(p) if p.is_dir() => Ok(p),
        _ => Err(SpecError::NoRootfs(path)),
    }
}

/// Checks what the runtime needs before it forks anything, so that bad input fails early.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or(SpecError::Missing("no process"))?;
    validate_process(process)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or(SpecError::Missing("no linux section"))?;
    crate::namespaces::Namespaces::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))
        .map_err(|e| SpecError::Invalid(e.to_string()))?;
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Uts)
    {
        return Err(SpecError::Invalid(
            "a hostname needs a new or joined uts namespace".into(),
        ));
    }
    Ok(())
}

/// Checks a process description (also used for `exec`).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<(), SpecError> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::Missing("process.args is empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(SpecError::Invalid(format!(
            "process.cwd {} is not absolute",
            process.cwd().display()
        )));
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(SpecError::Invalid(
            "apparmor profiles are not supported by strata-runtime".into(),
        ));
    }
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(SpecError::Invalid(
            "selinux labels are not supported by strata-runtime".into(),
        ));
    }
    if process.io_priority().is_some()
        || process.scheduler().is_some()
        || process.exec_cpu_affinity().is_some()
    {
        return Err(SpecError::Invalid(
            "process.ioPriority, process.scheduler and process.execCPUAffinity are not supported by strata-runtime".into(),
        ));
    }
    Ok(())
}

/// Docker's default capability set (the one `docker run` grants without `--cap-add`).
pub fn docker_default_capabilities() -> Capabilities {
    use Capability::*;
    [
        Chown,
        DacOverride,
        Fsetid,
        Fowner,
        Mknod,
        NetRaw,
        Setgid,
        Setuid,
        Setfcap,
        Setpcap,
        NetBindService,
        SysChroot,
        Kill,
        AuditWrite,
    ]
    .into_iter()
    .collect::<HashSet<_>>()
}

/// A spec like the one Docker makes for `docker run IMAGE ARGS...`: runc's default mounts and
/// namespaces (pid, net, ipc, uts, mount, cgroup), Docker's capability set, masked and
/// read-only paths, no_new_privs off (Docker's default), and `args` as the process.
pub fn docker_default_spec(args: Vec<String>) -> Spec {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args));
    process.set_no_new_privileges(Some(false));
    let caps = docker_default_capabilities();
    let mut lc = process.capabilities().clone().unwrap_or_default();
    lc.set_bounding(Some(caps.clone()));
    lc.set_effective(Some(caps.clone()));
    lc.set_permitted(Some(caps));
    lc.set_inheritable(None);
    lc.set_ambient(None);
    process.set_capabilities(Some(lc));
    spec.set_process(Some(process));
    if let Some(linux) = spec.linux_mut() {
        linux.set_masked_paths(Some(docker_default_masked_paths()));
        linux.set_readonly_paths(Some(docker_default_readonly_paths()));
    }
    spec
}

/// Docker's default masked paths.
pub fn docker_default_masked_paths() -> Vec<String> {
    [
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Docker's default read-only paths.
pub fn docker_default_readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The kernel number of a capability.
pub fn capability_number(cap: Capability) -> u8 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// Every capability the crate knows, for `features`.
pub fn all_capabilities() -> Vec<Capability> {
    use Capability::*;
    vec![
        Chown,
        DacOverride,
        DacReadSearch,
        Fowner,
        Fsetid,
        Kill,
        Setgid,
        Setuid,
        Setpcap,
        LinuxImmutable,
        NetBindService,
        NetBroadcast,
        NetAdmin,
        NetRaw,
        IpcLock,
        IpcOwner,
        SysModule,
        SysRawio,
        SysChroot,
        SysPtrace,
        SysPacct,
        SysAdmin,
        SysBoot,
        SysNice,
        SysResource,
        SysTime,
        SysTtyConfig,
        Mknod,
        Lease,
        AuditWrite,
        AuditControl,
        Setfcap,
        MacOverride,
        MacAdmin,
        Syslog,
        WakeAlarm,
        BlockSuspend,
        AuditRead,
        Perfmon,
        Bpf,
        CheckpointRestore,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_spec_is_valid() {
        let s = docker_default_spec(vec!["true".into()]);
        validate(&s).unwrap();
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(!caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", ".hidden", &"x".repeat(1025)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn capability_numbers_are_distinct() {
        let all = all_capabilities();
        let nums: HashSet<u8> = all.iter().map(|c| capability_number(*c)).collect();
        assert_eq!(nums.len(), all.len());
        assert_eq!(capability_number(Capability::SysAdmin), 21);
        assert!(!docker_default_capabilities().contains(&Capability::SysAdmin));
    }

    #[test]
    fn malformed_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn unknown_namespace_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"bogus"}]}}"#,
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
