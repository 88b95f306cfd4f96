//! `stratad`'s settings: defaults, then `/etc/strata/config.toml` (or `--config FILE`), then
//! command-line flags.
//!
//! ```toml
//! root = "/var/lib/strata"
//! run_root = "/run/strata"
//! address = "/run/strata/strata.sock"
//! log_level = "info"
//! warm_pool = 0                       # containers made ahead of time (container/pool.rs)
//!
//! [storage]
//! driver = "overlay2"                 # or devicemapper, aufs; unset: chosen as DESIGN §4 says
//! options = ["overlay2.size=10G"]     # --storage-opt
//! address = ""                        # use an already-running snapshotter on this socket
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default config file, read when it exists and no `--config` is given.
pub const DEFAULT_CONFIG: &str = "/etc/strata/config.toml";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (names the bad key).
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The `[storage]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The storage driver: overlay2, devicemapper or aufs.
    pub driver: Option<String>,
    /// Driver options, `KEY=VALUE`.
    #[serde(default)]
    pub options: Vec<String>,
    /// Use an already-running snapshotter (any containerd proxy snapshotter) on this socket
    /// instead of starting a plugin.
    pub address: Option<PathBuf>,
}

/// The settings file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where images, containers and storage live.
    pub root: Option<PathBuf>,
    /// Where sockets and runtime state live.
    pub run_root: Option<PathBuf>,
    /// The engine API socket.
    pub address: Option<PathBuf>,
    /// error, warn, info, debug or trace.
    pub log_level: Option<String>,
    /// How many containers to make ahead of time (0: none).
    pub warm_pool: Option<usize>,
    /// Storage settings.
    #[serde(default)]
    pub storage: StorageConfig,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where images, containers and storage live.
    pub root: PathBuf,
    /// Where sockets and runtime state live.
    pub run_root: PathBuf,
    /// The engine API socket.
    pub address: PathBuf,
    /// The log level.
    pub log_level: String,
    /// How many containers to make ahead of time (0: none).
    pub warm_pool: usize,
    /// Storage settings.
    pub storage: StorageConfig,
}

/// Settings given on the command line (each overrides the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--root`.
    pub root: Option<PathBuf>,
    /// `--run-root`.
    pub run_root: Option<PathBuf>,
    /// `--address`.
    pub address: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--storage-driver`.
    pub storage_driver: Option<String>,
    /// `--storage-opt` (replace the file's options when any are given).
    pub storage_opts: Vec<String>,
    /// `--warm-pool`.
    pub warm_pool: Option<usize>,
}

/// The most containers `warm_pool` may keep made ahead of time.
pub const MAX_WARM_POOL: usize = 64;

/// The log levels `--log-level` takes.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl Config {
    /// Reads `file` (or the default config if it exists) and applies the overrides.
    pub fn load(file: Option<&Path>, o: Overrides) -> Result<Config, ConfigError> {
        let fc = match file {
            Some(p) => Self::read(p)?,
            None if Path::new(DEFAULT_CONFIG).exists() => Self::read(Path::new(DEFAULT_CONFIG))?,
            None => FileConfig::default(),
        };
        let run_root = o
            .run_root
            .or(fc.run_root)
            .unwrap_or_else(|| PathBuf::from("/run/strata"));
        let mut storage = fc.storage;
        if o.storage_driver.is_some() {
            storage.driver = o.storage_driver;
        }
        if !o.storage_opts.is_empty() {
            storage.options = o.storage_opts;
        }
        let c = Config {
            root: o
                .root
                .or(fc.root)
                .unwrap_or_else(|| PathBuf::from("/var/lib/strata")),
            address: o
                .address
                .or(fc.address)
                .unwrap_or_else(|| run_root.join("strata.sock")),
            run_root,
            log_level: o
                .log_level
                .or(fc.log_level)
                .unwrap_or_else(|| "info".into()),
            warm_pool: o.warm_pool.or(fc.warm_pool).unwrap_or(0),
            storage,
        };
        if c.warm_pool > MAX_WARM_POOL {
            return Err(ConfigError::Invalid(format!(
                "warm pool {} is more than {MAX_WARM_POOL} containers",
                c.warm_pool
            )));
        }
        if !LOG_LEVELS.contains(&c.log_level.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "log level {:?} is not one of {}",
                c.log_level,
                LOG_LEVELS.join(", ")
            )));
        }
        for (what, p) in [
            ("root", &c.root),
            ("run root", &c.run_root),
            ("address", &c.address),
        ] {
            if !p.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "{what} {} must be an absolute path",
                    p.display()
                )));
            }
        }
        if let Some(d) = &c.storage.driver {
            if !crate::storage::DRIVERS.contains(&d.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "unknown storage driver {d:?} (known: {})",
                    crate::storage::DRIVERS.join(", ")
                )));
            }
        }
        Ok(c)
    }

    fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.message().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "root = \"/srv/strata\"\n[storage]\ndriver = \"aufs\"\noptions = [\"a=b\"]\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            Overrides {
                storage_driver: Some("overlay2".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/strata"));
        assert_eq!(c.storage.driver.as_deref(), Some("overlay2"));
        assert_eq!(c.storage.options, vec!["a=b".to_string()]);
        assert_eq!(c.address, PathBuf::from("/run/strata/strata.sock"));
    }

    #[test]
    fn bad_files_and_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "rooot = \"/x\"\n").unwrap();
        let e = Config::load(Some(&f), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rooot"), "{e}");
        let e = Config::load(Some(&f.with_extension("missing")), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("read config"), "{e}");
        let e = Config::load(
            None,
            Overrides {
                storage_driver: Some("zfs".into()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("zfs"), "{e}");
        let e = Config::load(
            None,
            Overrides {
                root: Some("rel".into()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = Config::load(
            None,
            Overrides {
                warm_pool: Some(MAX_WARM_POOL + 1),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "warm pool 65 is more than 64 containers");
    }

    #[test]
    fn the_warm_pool_is_off_unless_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        assert_eq!(
            Config::load(None, Overrides::default()).unwrap().warm_pool,
            0
        );
        std::fs::write(&f, "warm_pool = 2\n").unwrap();
        let from_file = Config::load(Some(&f), Overrides::default()).unwrap();
        assert_eq!(from_file.warm_pool, 2);
        let flag = Overrides {
            warm_pool: Some(1),
            ..Default::default()
        };
        assert_eq!(Config::load(Some(&f), flag).unwrap().warm_pool, 1);
    }
}
