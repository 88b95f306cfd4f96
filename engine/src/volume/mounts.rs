//! What a container mounts, parsed as Docker parses it: `-v [SOURCE:]DEST[:MODE]`,
//! `--mount type=…,source=…,target=…[,…]` and `--tmpfs DEST[:OPTIONS]`, into [`MountPoint`]s
//! (kept with the container) and the options a volume is made with when it does not exist yet.
//! Pure: nothing here touches the filesystem.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// The kind of a mount, as Docker names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bind,
    #[default]
    Volume,
    Tmpfs,
}

impl Kind {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bind => "bind",
            Kind::Volume => "volume",
            Kind::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container, as resolved at create and kept with the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountPoint {
    pub kind: Kind,
    /// A bind's host path, a volume's name (empty until an anonymous one is named), "" for a
    /// tmpfs.
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// Docker's `Mode`: what followed the destination in `-v` ("ro", "z", "rw,nocopy" …).
    pub mode: String,
    /// A bind's propagation (rprivate unless asked).
    pub propagation: String,
    /// Bind only the source, not the mounts under it (`bind-nonrecursive`).
    pub non_recursive: bool,
    /// Do not fill an empty volume with the image's content at its path.
    pub nocopy: bool,
    /// A directory inside the volume mounted instead of its root (`volume-subpath`).
    pub subpath: String,
    /// A tmpfs's mount options, Docker's defaults merged in.
    pub tmpfs: Vec<String>,
    /// A volume made for this container without a name (removed by `rm -v` and `--rm`).
    pub anonymous: bool,
    /// A `-v` bind makes a missing host directory when the container starts, as Docker does.
    pub make_source: bool,
    /// `--mount`'s consistency (accepted and shown, as on Docker for Linux: no effect).
    pub consistency: String,
    /// The container it was taken from (`--volumes-from`), if any.
    pub from: String,
}

/// A volume mount's wish for the volume, used when the volume does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewVolume {
    pub labels: BTreeMap<String, String>,
    pub driver_opts: BTreeMap<String, String>,
}

/// A parsed mount: the mount point and, for volumes, how to make the volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub point: MountPoint,
    pub volume: NewVolume,
}

/// A mount the flags describe badly.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MountError {
    #[error("invalid volume specification {0:?}: expected [SOURCE:]/container/path[:MODE]")]
    Spec(String),
    #[error(
        "invalid mode {mode:?} in volume specification {spec:?}: use ro or rw, z or Z, nocopy, and for binds a propagation (rprivate, private, rshared, shared, rslave, slave)"
    )]
    Mode { spec: String, mode: String },
    #[error("invalid volume specification {spec:?}: {reason}")]
    Volume { spec: String, reason: String },
    #[error("invalid --mount {spec:?}: {reason}")]
    Mount { spec: String, reason: String },
    #[error("invalid --tmpfs {spec:?}: {reason}")]
    Tmpfs { spec: String, reason: String },
    #[error("invalid mount path {0:?}: it must be absolute, not \"/\" and without \"..\"")]
    Destination(String),
    #[error("duplicate mount point {0}")]
    Duplicate(String),
    #[error("invalid --volumes-from {spec:?}: the mode {mode:?} is not ro or rw")]
    VolumesFrom { spec: String, mode: String },
    #[error("cannot mount a volume over the image's file {0}: it is not a directory")]
    OverFile(String),
    #[error("the image's VOLUME {0:?} is not a valid mount path: it must be absolute, not \"/\" and without \"..\"")]
    ImageVolume(String),
}

type Result<T, E = MountError> = std::result::Result<T, E>;

/// Whether `name` is a valid local volume name (Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The error line for a bad volume name.
pub fn volume_name_error(name: &str) -> String {
    format!(
        "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two \
         characters (a host directory must be given as an absolute path)"
    )
}

/// A mount destination, cleaned: absolute, not `/`, no `..`.
pub fn destination(d: &str) -> Result<String> {
    let p = Path::new(d);
    let bad = || MountError::Destination(d.to_string());
    if !p.is_absolute() {
        return Err(bad());
    }
    let mut out = String::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                out.push('/');
                out.push_str(&n.to_string_lossy());
            }
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

const PROPAGATIONS: [&str; 6] = [
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

/// Parses `-v [SOURCE:]DEST[:MODE]`: an absolute SOURCE is a bind, another a named volume, none
/// an anonymous volume.
pub fn parse_volume_flag(spec: &str) -> Result<Request> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(MountError::Spec(spec.to_string())),
    };
    if (parts.len() > 1 && src.is_empty()) || dst.is_empty() {
        return Err(MountError::Spec(spec.to_string()));
    }
    let destination = destination(dst)?;
    let kind = if src.starts_with('/') {
        Kind::Bind
    } else {
        Kind::Volume
    };
    if kind == Kind::Volume && !src.is_empty() && !valid_volume_name(src) {
        return Err(MountError::Volume {
            spec: spec.to_string(),
            reason: volume_name_error(src),
        });
    }
    let bad_mode = || MountError::Mode {
        spec: spec.to_string(),
        mode: mode.to_string(),
    };
    let (mut rw, mut label, mut propagation, mut nocopy, mut consistency) =
        (None, None, None, false, None);
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" | "rw" if rw.is_none() => rw = Some(m == "rw"),
            "z" | "Z" if label.is_none() => label = Some(m),
            "nocopy" if !nocopy => nocopy = true,
            "consistent" | "cached" | "delegated" if consistency.is_none() => consistency = Some(m),
            p if PROPAGATIONS.contains(&p) && propagation.is_none() => propagation = Some(p),
            _ => return Err(bad_mode()),
        }
    }
    let reason = match kind {
        Kind::Bind if nocopy => Some("nocopy is only for volumes"),
        Kind::Volume if propagation.is_some() => Some("a propagation is only for bind mounts"),
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(MountError::Volume {
            spec: spec.to_string(),
            reason: reason.into(),
        });
    }
    let mode = if kind == Kind::Volume && !src.is_empty() && mode.is_empty() {
        "z".to_string()
    } else {
        mode.to_string()
    };
    let source = if kind == Kind::Bind {
        clean_host_path(src)
    } else {
        src.to_string()
    };
    Ok(Request {
        point: MountPoint {
            kind,
            source,
            destination,
            rw: rw.unwrap_or(true),
            mode,
            propagation: match kind {
                Kind::Bind => propagation.unwrap_or("rprivate").to_string(),
                _ => String::new(),
            },
            nocopy,
            anonymous: src.is_empty(),
            make_source: kind == Kind::Bind,
            consistency: consistency.unwrap_or_default().to_string(),
            ..Default::default()
        },
        volume: NewVolume::default(),
    })
}

/// The anonymous volume of an image's `VOLUME` at `path` (as `-v PATH` makes one).
pub fn image_volume(path: &str) -> Result<Request> {
    let destination = destination(path).map_err(|_| MountError::ImageVolume(path.to_string()))?;
    Ok(Request {
        point: MountPoint {
            kind: Kind::Volume,
            destination,
            rw: true,
            anonymous: true,
            ..Default::default()
        },
        volume: NewVolume::default(),
    })
}

/// `/a//b/./c/` → `/a/b/c` (lexically; `..` is kept for the kernel to resolve).
fn clean_host_path(p: &str) -> String {
    let mut out = String::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            other => {
                out.push('/');
                out.push_str(&other.as_os_str().to_string_lossy());
            }
        }
    }
    if out.is_empty() {
        "/".into()
    } else {
        out
    }
}

/// Splits `a,"b,c",d` as a CSV line, as Docker's `--mount` does.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `64m`, `1g`, `4096` (binary units, as Docker's `RAMInBytes`) → bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}

/// Parses a `--mount` spec (Docker's keys and aliases; the type defaults to volume).
pub fn parse_mount_flag(spec: &str) -> Result<Request> {
    let err = |reason: String| MountError::Mount {
        spec: spec.to_string(),
        reason,
    };
    let mut kind = Kind::Volume;
    let (mut source, mut target, mut readonly) = (String::new(), String::new(), false);
    let mut consistency = String::new();
    // Which option families were used (checked against the type at the end).
    let (mut bind_opts, mut volume_opts, mut tmpfs_opts) = (None, None, None);
    let (mut propagation, mut non_recursive) = (String::new(), false);
    let (mut nocopy, mut subpath) = (false, String::new());
    let mut volume = NewVolume::default();
    let (mut size, mut mode) = (None, None);
    for field in csv_fields(spec).map_err(err)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let bool_val = |v: &Option<String>| match v {
            None => Ok(true),
            Some(v) => parse_bool(v).ok_or_else(|| err(format!("invalid value for {key}: {v}"))),
        };
        let value = |v: Option<String>| {
            v.ok_or_else(|| {
                err(format!(
                    "invalid field {field:?}: it must be a key=value pair"
                ))
            })
        };
        match key.as_str() {
            "type" => {
                kind = match value(val)?.to_ascii_lowercase().as_str() {
                    "bind" => Kind::Bind,
                    "volume" => Kind::Volume,
                    "tmpfs" => Kind::Tmpfs,
                    other => {
                        return Err(err(format!(
                            "mount type {other:?} is not supported: use bind, volume or tmpfs"
                        )))
                    }
                }
            }
            "source" | "src" => source = value(val)?,
            "target" | "dst" | "destination" => target = value(val)?,
            "readonly" | "ro" => readonly = bool_val(&val)?,
            "consistency" => {
                consistency = value(val)?.to_ascii_lowercase();
                if !matches!(
                    consistency.as_str(),
                    "default" | "consistent" | "cached" | "delegated"
                ) {
                    return Err(err(format!(
                        "invalid consistency {consistency:?}: use default, consistent, cached or delegated"
                    )));
                }
            }
            "bind-propagation" => {
                bind_opts = Some(key.clone());
                propagation = value(val)?.to_ascii_lowercase();
                if !PROPAGATIONS.contains(&propagation.as_str()) {
                    return Err(err(format!(
                        "invalid bind-propagation {propagation:?}: use {}",
                        PROPAGATIONS.join(", ")
                    )));
                }
            }
            "bind-nonrecursive" => {
                bind_opts = Some(key.clone());
                non_recursive = bool_val(&val)?;
            }
            "bind-recursive" => {
                bind_opts = Some(key.clone());
                non_recursive = match value(val)?.as_str() {
                    "enabled" => false,
                    "disabled" => true,
                    other => {
                        return Err(err(format!(
                            "invalid bind-recursive {other:?}: use enabled or disabled"
                        )))
                    }
                };
            }
            "volume-nocopy" => {
                volume_opts = Some(key.clone());
                nocopy = bool_val(&val)?;
            }
            "volume-subpath" => {
                volume_opts = Some(key.clone());
                subpath = value(val)?;
                let p = Path::new(&subpath);
                if subpath.is_empty()
                    || p.is_absolute()
                    || p.components().any(|c| !matches!(c, Component::Normal(_)))
                {
                    return Err(err(format!(
                        "invalid volume-subpath {subpath:?}: it must be a relative path without \"..\""
                    )));
                }
            }
            "volume-label" => {
                volume_opts = Some(key.clone());
                let v = value(val)?;
                let (k, v) = v.split_once('=').unwrap_or((v.as_str(), ""));
                volume.labels.insert(k.to_string(), v.to_string());
            }
            "volume-driver" => {
                volume_opts = Some(key.clone());
                let d = value(val)?;
                if d != "local" {
                    return Err(err(format!(
                        "volume driver {d:?} is not available: only local is"
                    )));
                }
            }
            "volume-opt" => {
                volume_opts = Some(key.clone());
                let v = value(val)?;
                let Some((k, v)) = v.split_once('=') else {
                    return Err(err(format!("invalid value for volume-opt: {v}")));
                };
                volume.driver_opts.insert(k.to_string(), v.to_string());
            }
            "tmpfs-size" => {
                tmpfs_opts = Some(key.clone());
                let v = value(val)?;
                size = Some(parse_size(&v).ok_or_else(|| {
                    err(format!("invalid tmpfs-size {v:?}: use a size like 64m"))
                })?);
            }
            "tmpfs-mode" => {
                tmpfs_opts = Some(key.clone());
                let v = value(val)?;
                mode = Some(
                    u32::from_str_radix(&v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            err(format!("invalid tmpfs-mode {v:?}: use octal like 1777"))
                        })?,
                );
            }
            _ => {
                return Err(err(format!("unexpected key {key:?} in {field:?}")));
            }
        }
    }
    if target.is_empty() {
        return Err(err("target is required".into()));
    }
    let mix = |used: Option<String>, family: &str, want: Kind| match used {
        Some(k) if kind != want => Err(err(format!(
            "cannot use {k} ({family} option) with mount type {}",
            kind.as_str()
        ))),
        _ => Ok(()),
    };
    mix(bind_opts, "a bind", Kind::Bind)?;
    mix(volume_opts, "a volume", Kind::Volume)?;
    mix(tmpfs_opts, "a tmpfs", Kind::Tmpfs)?;
    let destination = destination(&target).map_err(|e| err(e.to_string()))?;
    let mut point = MountPoint {
        kind,
        destination,
        rw: !readonly,
        consistency,
        ..Default::default()
    };
    match kind {
        Kind::Bind => {
            if source.is_empty() {
                return Err(err("a bind mount needs a source".into()));
            }
            if !source.starts_with('/') {
                return Err(err(format!("bind source path {source:?} must be absolute")));
            }
            point.source = clean_host_path(&source);
            point.propagation = if propagation.is_empty() {
                "rprivate".into()
            } else {
                propagation
            };
            point.non_recursive = non_recursive;
        }
        Kind::Volume => {
            if !source.is_empty() && !valid_volume_name(&source) {
                return Err(err(volume_name_error(&source)));
            }
            point.anonymous = source.is_empty();
            point.source = source;
            point.nocopy = nocopy;
            point.subpath = subpath;
        }
        Kind::Tmpfs => {
            if !source.is_empty() {
                return Err(err("a tmpfs mount takes no source".into()));
            }
            let mut opts = Vec::new();
            if let Some(s) = size {
                opts.push(format!("size={s}"));
            }
            if let Some(m) = mode {
                opts.push(format!("mode={m:o}"));
            }
            if readonly {
                opts.push("ro".into());
            }
            point.tmpfs = tmpfs_options(&opts).map_err(err)?;
        }
    }
    Ok(Request { point, volume })
}

/// Parses `--tmpfs DEST[:OPTIONS]`.
pub fn parse_tmpfs_flag(spec: &str) -> Result<MountPoint> {
    let (dst, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let destination = destination(dst)?;
    let given: Vec<String> = opts
        .split(',')
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect();
    let tmpfs = tmpfs_options(&given).map_err(|reason| MountError::Tmpfs {
        spec: spec.to_string(),
        reason,
    })?;
    Ok(MountPoint {
        kind: Kind::Tmpfs,
        rw: !tmpfs.iter().any(|o| o == "ro"),
        destination,
        tmpfs,
        ..Default::default()
    })
}

/// The groups of mount flags of which only the last one given counts.
const FLAG_GROUPS: [&[&str]; 11] = [
    &["ro", "rw"],
    &["suid", "nosuid"],
    &["dev", "nodev"],
    &["exec", "noexec"],
    &["sync", "async"],
    &["dirsync"],
    &["mand", "nomand"],
    &["atime", "noatime"],
    &["diratime", "nodiratime"],
    &["relatime", "norelatime", "strictatime", "nostrictatime"],
    &[
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "unbindable",
        "runbindable",
    ],
];

/// tmpfs's own options (Docker's list).
const TMPFS_DATA: [&str; 7] = [
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// Docker's default tmpfs options merged with `given` as Docker's `MergeTmpfsOptions` does:
/// of the flags of one group and of each `key=value`, the last one counts.
pub fn tmpfs_options(given: &[String]) -> Result<Vec<String>, String> {
    let all: Vec<String> = ["noexec", "nosuid", "nodev", "rprivate"]
        .iter()
        .map(|s| s.to_string())
        .chain(given.iter().cloned())
        .collect();
    let mut seen_groups = Vec::new();
    let mut seen_keys = Vec::new();
    let mut out = Vec::new();
    for o in all.iter().rev() {
        if o == "defaults" {
            continue;
        }
        if let Some(g) = FLAG_GROUPS.iter().position(|g| g.contains(&o.as_str())) {
            if !seen_groups.contains(&g) {
                seen_groups.push(g);
                out.push(o.clone());
            }
            continue;
        }
        let key = match o.split_once('=') {
            Some((k, _)) if TMPFS_DATA.contains(&k) => k,
            _ => {
                return Err(format!(
                    "invalid tmpfs option {o:?}: use mount flags (ro, noexec …) or {}=…",
                    TMPFS_DATA.join("=…, ")
                ))
            }
        };
        if key == "size" && parse_size(&o[5..]).is_none() && !o[5..].ends_with('%') {
            return Err(format!("invalid tmpfs option {o:?}: size is not a size"));
        }
        if !seen_keys.contains(&key) {
            seen_keys.push(key);
            out.push(o.clone());
        }
    }
    out.reverse();
    Ok(out)
}

/// Refuses two mounts on one destination.
pub fn check_duplicates<'a>(dests: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for d in dests {
        if !seen.insert(d) {
            return Err(MountError::Duplicate(d.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flag_kinds_and_modes() {
        let b = parse_volume_flag("/host/dir/:/ctr:ro").unwrap().point;
        assert_eq!(
            (b.kind, b.source.as_str(), b.destination.as_str(), b.rw),
            (Kind::Bind, "/host/dir", "/ctr", false)
        );
        assert_eq!(b.propagation, "rprivate");
        let n = parse_volume_flag("data:/var/lib/x").unwrap().point;
        assert_eq!(
            (n.kind, n.source.as_str(), n.anonymous),
            (Kind::Volume, "data", false)
        );
        assert_eq!(n.mode, "z");
        let a = parse_volume_flag("/scratch").unwrap().point;
        assert_eq!(
            (a.kind, a.anonymous, a.source.as_str()),
            (Kind::Volume, true, "")
        );
        let nc = parse_volume_flag("data:/d:ro,nocopy").unwrap().point;
        assert!(nc.nocopy && !nc.rw);
        let p = parse_volume_flag("/h:/d:rshared").unwrap().point;
        assert_eq!(p.propagation, "rshared");
    }

    #[test]
    fn volume_flag_refusals() {
        for bad in ["a:b:c:d", ":/d", "/h:", "x:relative", "/h:/", "/h:/a/../b"] {
            assert!(parse_volume_flag(bad).is_err(), "{bad}");
        }
        let e = parse_volume_flag("./data:/d").unwrap_err().to_string();
        assert!(e.contains("invalid volume name \"./data\""), "{e}");
        let e = parse_volume_flag("data/x:/d").unwrap_err().to_string();
        assert!(e.contains("absolute path"), "{e}");
        assert!(matches!(
            parse_volume_flag("/h:/d:rx"),
            Err(MountError::Mode { .. })
        ));
        assert!(parse_volume_flag("/h:/d:ro,rw").is_err(), "two rw modes");
        assert!(parse_volume_flag("/h:/d:nocopy").is_err());
        assert!(parse_volume_flag("v1:/d:rshared").is_err());
        assert!(parse_volume_flag("a:/d").is_err(), "one-character name");
    }

    #[test]
    fn mount_flag_keys_and_aliases() {
        let r = parse_mount_flag("type=volume,src=v1,dst=/data,ro,volume-nocopy,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-label=a=b")
            .unwrap();
        assert_eq!(r.point.source, "v1");
        assert_eq!(r.point.destination, "/data");
        assert!(!r.point.rw && r.point.nocopy);
        assert_eq!(r.volume.driver_opts["type"], "tmpfs");
        assert_eq!(r.volume.labels["a"], "b");
        let r = parse_mount_flag("target=/anon").unwrap();
        assert!(r.point.anonymous && r.point.kind == Kind::Volume);
        let r = parse_mount_flag(
            "type=bind,source=/h,destination=/d,readonly=false,bind-propagation=rslave",
        )
        .unwrap();
        assert!(r.point.rw && r.point.propagation == "rslave");
        let r = parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            r.point.tmpfs,
            [
                "noexec",
                "nosuid",
                "nodev",
                "rprivate",
                "size=67108864",
                "mode=1770"
            ]
        );
        let r =
            parse_mount_flag("\"type=volume\",\"volume-opt=o=size=1m,uid=5\",target=/q").unwrap();
        assert_eq!(r.volume.driver_opts["o"], "size=1m,uid=5");
    }

    #[test]
    fn mount_flag_refusals_name_the_problem() {
        let e = parse_mount_flag("type=bind,source=/h,target=/d,colour=red")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unexpected key \"colour\""), "{e}");
        let e = parse_mount_flag("type=volume,source=v1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("target is required"), "{e}");
        let e = parse_mount_flag("type=volume,target=/d,tmpfs-size=1m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tmpfs-size"), "{e}");
        assert!(parse_mount_flag("type=bind,target=/d").is_err());
        assert!(parse_mount_flag("type=bind,source=rel,target=/d").is_err());
        assert!(parse_mount_flag("type=tmpfs,source=x,target=/d").is_err());
        assert!(parse_mount_flag("type=npipe,target=/d").is_err());
        assert!(parse_mount_flag("type=volume,source=a/b,target=/d").is_err());
        assert!(parse_mount_flag("type=volume,target=/d,readonly=maybe").is_err());
        assert!(parse_mount_flag("type=volume,target=/d,volume-driver=nfs").is_err());
        assert!(parse_mount_flag("type=volume,target=/d,volume-subpath=../x").is_err());
    }

    #[test]
    fn tmpfs_flag_merges_docker_defaults() {
        let t = parse_tmpfs_flag("/run:exec,size=1m,mode=700").unwrap();
        assert_eq!(
            t.tmpfs,
            ["nosuid", "nodev", "rprivate", "exec", "size=1m", "mode=700"]
        );
        assert!(t.rw);
        let t = parse_tmpfs_flag("/t").unwrap();
        assert_eq!(t.tmpfs, ["noexec", "nosuid", "nodev", "rprivate"]);
        assert!(!parse_tmpfs_flag("/t:ro").unwrap().rw);
        assert!(parse_tmpfs_flag("/t:bogus").is_err());
        assert!(parse_tmpfs_flag("/t:size=huge").is_err());
        assert!(parse_tmpfs_flag("t").is_err());
    }

    #[test]
    fn names_and_duplicates() {
        assert!(valid_volume_name("my_vol.1-x"));
        for bad in ["", "a", "-x", "a/b", "a b", "_x"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
        assert!(check_duplicates(["/a", "/b"]).is_ok());
        assert_eq!(
            check_duplicates(["/a", "/a"]),
            Err(MountError::Duplicate("/a".into()))
        );
    }
}
