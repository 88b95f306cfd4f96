//! Image references, parsed and normalized as Docker does.
//!
//! `busybox` is `docker.io/library/busybox:latest`; `host:5000/a/b:tag` keeps its registry;
//! `name@sha256:<hex>` names a manifest by digest. [`Reference::familiar`] gives the short form
//! people see (`busybox:latest`), [`Reference`]'s `Display` the full normalized one (the key
//! the tag store uses).

use std::fmt;

/// The registry a name without one belongs to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The namespace single-component Docker Hub names live in.
const OFFICIAL_PREFIX: &str = "library/";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on a whole name.
const NAME_MAX: usize = 255;

/// Why a reference is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing given.
    #[error("invalid reference format: the image name is empty")]
    Empty,
    /// Upper-case letters in the repository part.
    #[error("invalid reference format {0:?}: repository name must be lowercase")]
    Uppercase(String),
    /// A 64-hex-digit name, which would be confused with an image id.
    #[error("invalid repository name {0:?}: cannot be 64 hexadecimal digits (an image id)")]
    LooksLikeId(String),
    /// Too long.
    #[error("invalid reference format {0:?}: the repository name is longer than 255 characters")]
    TooLong(String),
    /// A bad tag.
    #[error("invalid reference format {0:?}: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")]
    Tag(String),
    /// A bad digest.
    #[error("invalid reference format {0:?}: a digest is sha256: and 64 lowercase hex digits")]
    Digest(String),
    /// Anything else.
    #[error("invalid reference format {0:?}: {1}")]
    Format(String, &'static str),
}

/// A normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || i == start {
            return false;
        }
    }
    true
}

fn is_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host.len() > 2
            && host[1..host.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `s` is 64 lowercase hex digits (an image id without its `sha256:`).
pub fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Reference {
    /// Parses and normalizes a reference; a reference with neither tag nor digest gets `latest`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Self::parse_name_only(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses without adding the default tag.
    pub fn parse_name_only(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let fmt_err = |why| ReferenceError::Format(s.to_string(), why);
        let (rest, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !is_digest(d) {
                    return Err(ReferenceError::Digest(s.to_string()));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !is_tag(t) {
                    return Err(ReferenceError::Tag(s.to_string()));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(fmt_err("the repository name is empty"));
        }
        if name.len() > NAME_MAX {
            return Err(ReferenceError::TooLong(s.to_string()));
        }
        let (domain, path) = match name.split_once('/') {
            Some((d, p))
                if d.contains('.')
                    || d.contains(':')
                    || d == "localhost"
                    || d.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !is_domain(d) {
                    return Err(fmt_err("the registry host is not a valid host[:port]"));
                }
                (d.to_string(), p.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(s.to_string()));
        }
        if path.split('/').any(|c| !is_path_component(c)) {
            return Err(fmt_err(
                "a name is lowercase letters, digits and separators (., _, __, -) between '/'",
            ));
        }
        if domain == DEFAULT_DOMAIN && is_full_hex_id(&path) {
            return Err(ReferenceError::LooksLikeId(s.to_string()));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name people see: `busybox`, `me/app`, `host:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The short form with tag or digest: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The same name with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("host:5000/a/b:tag"), "host:5000/a/b:tag");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("quay.io/a/b-c__d.e"), "quay.io/a/b-c__d.e:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("name@{d}")),
            format!("docker.io/library/name@{d}")
        );
        assert_eq!(norm(&format!("r.io/n:t@{d}")), format!("r.io/n:t@{d}"));
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            Reference::parse("host:5000/a/b:tag").unwrap().familiar(),
            "host:5000/a/b:tag"
        );
        assert_eq!(Reference::parse("me/app:1").unwrap().familiar(), "me/app:1");
        assert_eq!(Reference::parse_name_only("x").unwrap().tag(), None);
    }

    #[test]
    fn refuses_bad_ones() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/b/",
            "-a",
            "a@sha256:abc",
            "a:b:c/d",
            "a..b",
            &"a".repeat(300),
            &"f".repeat(64),
        ] {
            let e = Reference::parse(bad).err();
            assert!(e.is_some(), "{bad:?} accepted");
            let msg = e.unwrap().to_string();
            assert!(!msg.contains('\n') && msg.starts_with("invalid"), "{msg}");
        }
        assert!(matches!(
            Reference::parse("Busybox"),
            Err(ReferenceError::Uppercase(_))
        ));
    }
}
