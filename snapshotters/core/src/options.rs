//! `--storage-opt KEY=VALUE` options: parsed once at start, each taken by the driver that
//! knows it; whatever is left is refused with its name.

use std::collections::BTreeMap;

/// A storage option that is unknown or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Not of the form KEY=VALUE.
    #[error("storage option {0:?} is not of the form KEY=VALUE")]
    Malformed(String),
    /// Given twice.
    #[error("storage option {0:?} is given more than once")]
    Duplicate(String),
    /// No driver option has this name.
    #[error("unknown storage option {key:?} for the {driver} driver (known: {known})")]
    Unknown {
        /// The option's name.
        key: String,
        /// The driver.
        driver: String,
        /// The options the driver knows.
        known: String,
    },
    /// The value does not fit the option.
    #[error("storage option {key}={value:?}: {reason}")]
    Invalid {
        /// The option's name.
        key: String,
        /// The value given.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
}

/// The storage options of one plugin start.
#[derive(Debug, Clone, Default)]
pub struct StorageOpts {
    opts: BTreeMap<String, String>,
}

impl StorageOpts {
    /// Parses `KEY=VALUE` strings. Keys are case-insensitive, as Docker's are.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, OptionError> {
        let mut opts = BTreeMap::new();
        for r in raw {
            let r = r.as_ref();
            let (k, v) = r
                .split_once('=')
                .ok_or_else(|| OptionError::Malformed(r.to_string()))?;
            let k = k.trim().to_ascii_lowercase();
            if k.is_empty() {
                return Err(OptionError::Malformed(r.to_string()));
            }
            if opts.insert(k.clone(), v.trim().to_string()).is_some() {
                return Err(OptionError::Duplicate(k));
            }
        }
        Ok(StorageOpts { opts })
    }

    /// Takes the option `key`, if given.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.opts.remove(key)
    }

    /// Takes `key` and parses it with `parse`, naming the option in the error.
    pub fn take_with<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, OptionError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => parse(&value)
                .map(Some)
                .map_err(|reason| OptionError::Invalid {
                    key: key.to_string(),
                    value,
                    reason,
                }),
        }
    }

    /// Fails on the first option no one took.
    pub fn finish(self, driver: &str, known: &[&str]) -> Result<(), OptionError> {
        match self.opts.into_iter().next() {
            None => Ok(()),
            Some((key, _)) => Err(OptionError::Unknown {
                key,
                driver: driver.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }),
        }
    }
}

/// Parses a size like Docker's: `10G`, `512M`, `100GB`, `64k`, `1.5G`, `4096` (bytes);
/// binary units (K = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 10G, 512M or 4096"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        other => return Err(format!("unknown size unit {other:?} (use K, M, G, T or P)")),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a boolean option (`true`/`false`, `1`/`0`, `yes`/`no`).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_take_finish() {
        let mut o = StorageOpts::parse(&["overlay2.Size=10G", "x=1"]).unwrap();
        assert_eq!(
            o.take_with("overlay2.size", parse_size).unwrap(),
            Some(10 << 30)
        );
        let err = o.finish("overlay2", &["overlay2.size"]).unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert!(matches!(
            StorageOpts::parse(&["novalue"]),
            Err(OptionError::Malformed(_))
        ));
        assert!(matches!(
            StorageOpts::parse(&["a=1", "A=2"]),
            Err(OptionError::Duplicate(_))
        ));
        let mut o = StorageOpts::parse(&["overlay2.size=ten"]).unwrap();
        let err = o.take_with("overlay2.size", parse_size).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("storage option overlay2.size=\"ten\""),
            "{err}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("100GB").unwrap(), 100 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("").is_err());
    }
}
