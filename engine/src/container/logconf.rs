//! `--log-driver` and `--log-opt`: Docker's `json-file` driver (the default) with its rotation
//! options, or `none`.
//!
//! With `max-size`, the container's monitor rotates the log when a line takes it to that size:
//! `<id>-json.log` becomes `<id>-json.log.1`, the older ones move up by one, and the oldest
//! beyond `max-file` (default 1) goes; with `max-file=1` the full log is dropped. `logs` reads
//! the rotated files first, oldest first, and `logs -f` follows the log across rotations.
//! With `none` nothing is logged and `logs` says so, as Docker's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// How a container's output is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `--log-driver none`: no log at all.
    pub none: bool,
    /// Bytes at which the log is rotated; 0: never.
    pub max_size: u64,
    /// How many files are kept, the log itself included (at least 1).
    pub max_files: u32,
}

impl Default for LogConfig {
    /// json-file, never rotated.
    fn default() -> Self {
        LogConfig {
            none: false,
            max_size: 0,
            max_files: 1,
        }
    }
}

/// Docker's message when the driver keeps nothing to read.
pub const NOT_READABLE: &str = "configured logging driver does not support reading";

/// A size with Docker's units: `10m`, `1k`, `2g`, or bytes.
fn size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|n| *n > 0)
}

/// The log configuration of `--log-driver driver` (empty: json-file) and `--log-opt`s.
pub fn parse(driver: &str, opts: &[String]) -> Result<LogConfig, String> {
    let mut c = LogConfig::default();
    match driver {
        "" | "json-file" => {}
        "none" => {
            if let Some(o) = opts.first() {
                return Err(format!(
                    "invalid --log-opt {o:?}: the none log driver takes no options"
                ));
            }
            c.none = true;
            return Ok(c);
        }
        other => {
            return Err(format!(
                "invalid --log-driver {other:?}: use json-file (the default) or none"
            ))
        }
    }
    let mut files = None;
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| format!("invalid --log-opt {o:?}: expected KEY=VALUE"))?;
        match k {
            "max-size" => {
                c.max_size = size(v).ok_or_else(|| {
                    format!("invalid --log-opt {o:?}: expected a size such as 10m, 512k or 1g")
                })?;
            }
            "max-file" => {
                let n = v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("invalid --log-opt {o:?}: expected a number of files, at least 1")
                })?;
                files = Some(n);
            }
            _ => {
                return Err(format!(
                    "invalid --log-opt {o:?}: unknown log opt '{k}' for json-file log driver (known: max-size, max-file)"
                ))
            }
        }
    }
    if let Some(n) = files {
        if n > 1 && c.max_size == 0 {
            return Err("invalid --log-opt \"max-file\": it needs max-size".into());
        }
        c.max_files = n;
    }
    Ok(c)
}

/// `HostConfig.LogConfig`, as Docker's.
pub fn doc(driver: &str, opts: &[String]) -> Value {
    let config: Map<String, Value> = opts
        .iter()
        .filter_map(|o| o.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "Type": if driver.is_empty() { "json-file" } else { driver },
        "Config": config,
    })
}

/// The `n`th rotated file of the log at `path` (1 is the newest).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The log's rotated files that exist, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for n in 1.. {
        let p = rotated(path, n);
        if !p.exists() {
            break;
        }
        found.push(p);
    }
    found.reverse();
    found
}

/// Rotates the log at `path` (whose writer reopens it after): `path.1` … up to `max_files`
/// files in all; with one file, the full log is dropped.
pub fn rotate(path: &Path, max_files: u32) -> std::io::Result<()> {
    if max_files <= 1 {
        return std::fs::remove_file(path);
    }
    for n in (1..max_files - 1).rev() {
        let from = rotated(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dockers_options_parse() {
        assert_eq!(
            parse("", &[]).unwrap(),
            LogConfig {
                none: false,
                max_size: 0,
                max_files: 1
            }
        );
        let c = parse("json-file", &opts(&["max-size=10m", "max-file=3"])).unwrap();
        assert_eq!((c.max_size, c.max_files), (10 << 20, 3));
        assert_eq!(parse("", &opts(&["max-size=512"])).unwrap().max_size, 512);
        assert_eq!(parse("", &opts(&["max-size=1KB"])).unwrap().max_size, 1024);
        assert!(parse("none", &[]).unwrap().none);
    }

    #[test]
    fn bad_options_are_named() {
        for (driver, o, want) in [
            ("syslog", vec![], "invalid --log-driver \"syslog\""),
            ("", vec!["max-size=0"], "expected a size"),
            ("", vec!["max-size=ten"], "expected a size"),
            ("", vec!["max-file=0"], "at least 1"),
            ("", vec!["max-file=3"], "it needs max-size"),
            ("", vec!["compress=true"], "unknown log opt 'compress'"),
            ("", vec!["max-size"], "expected KEY=VALUE"),
            ("none", vec!["max-size=1m"], "takes no options"),
        ] {
            let e = parse(driver, &opts(&o)).unwrap_err();
            assert!(e.contains(want), "{driver} {o:?}: {e}");
        }
    }

    #[test]
    fn rotation_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        for round in 0..4 {
            std::fs::write(&log, format!("{round}")).unwrap();
            rotate(&log, 3).unwrap();
        }
        assert!(!log.exists());
        assert_eq!(std::fs::read_to_string(rotated(&log, 1)).unwrap(), "3");
        assert_eq!(std::fs::read_to_string(rotated(&log, 2)).unwrap(), "2");
        assert!(!rotated(&log, 3).exists());
        assert_eq!(
            rotated_files(&log),
            vec![rotated(&log, 2), rotated(&log, 1)]
        );
        std::fs::write(&log, "x").unwrap();
        rotate(&log, 1).unwrap();
        assert!(!log.exists());
        assert_eq!(
            doc("", &opts(&["max-size=1m"])),
            json!({ "Type": "json-file", "Config": { "max-size": "1m" } })
        );
    }
}
