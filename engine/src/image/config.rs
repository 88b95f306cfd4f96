//! Image configs: chain ids, times, the configs `import` and `commit` write, and the Docker-shaped
//! documents `inspect` and `history` return.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::reference::Reference;
use super::store::{ImageRecord, LayerRecord};
use crate::content::Digest;

/// The PATH an imported image gets, as Docker's default.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Chain ids of a list of diff ids: `chain(L1) = diff(L1)`, `chain(Ln) = sha256(chain(Ln-1) + " "
/// + diff(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.to_string(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `+01:00`); 0 if it
/// is not one.
pub fn parse_time(s: &str) -> i64 {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return 0;
    };
    let mut t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    let mut i = 19;
    while i < b.len() && (b[i] == b'.' || b[i].is_ascii_digit()) {
        i += 1;
    }
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        if let (Some(oh), Some(om)) = (num(i + 1..i + 3), num(i + 4..i + 6)) {
            let off = oh * 3600 + om * 60;
            t += if b[i] == b'+' { -off } else { off };
        }
    }
    t
}

/// RFC 3339 UTC of seconds since the epoch.
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The Go name of this machine's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// The config of an image imported from a flat root filesystem tar.
pub fn import_config(diff_id: &Digest, created: i64) -> Value {
    let t = format_time(created);
    json!({
        "architecture": go_arch(),
        "os": "linux",
        "created": t,
        "config": { "Env": [DEFAULT_PATH] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.as_str()] },
        "history": [{ "created": t, "created_by": "strata import", "comment": "Imported from tarball" }],
    })
}

/// The config of a committed image: its parent's, with one more layer and history entry.
pub fn commit_config(
    parent: &Value,
    diff_id: &Digest,
    created: i64,
    comment: &str,
    author: &str,
) -> Value {
    let t = format_time(created);
    let mut c = parent.clone();
    c["created"] = json!(t);
    if !author.is_empty() {
        c["author"] = json!(author);
    }
    let mut ids = c["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ids.push(json!(diff_id.as_str()));
    c["rootfs"] = json!({ "type": "layers", "diff_ids": ids });
    let mut h = json!({ "created": t, "created_by": "strata commit" });
    if !comment.is_empty() {
        h["comment"] = json!(comment);
    }
    if !author.is_empty() {
        h["author"] = json!(author);
    }
    let mut hist = c["history"].as_array().cloned().unwrap_or_default();
    hist.push(h);
    c["history"] = Value::Array(hist);
    c
}

fn familiar_tags(rec: &ImageRecord) -> Vec<String> {
    rec.tags
        .iter()
        .filter_map(|t| Reference::parse(t).ok())
        .filter(|r| r.tag().is_some())
        .map(|r| r.familiar())
        .collect()
}

/// Docker's `RepoDigests`: each name the image has, with its manifest digest.
fn repo_digests(rec: &ImageRecord) -> Vec<String> {
    let mut names: Vec<String> = rec
        .tags
        .iter()
        .filter_map(|t| Reference::parse(t).ok())
        .map(|r| format!("{}@{}", r.familiar_name(), rec.manifest_digest))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The image part of `docker inspect`.
pub fn inspect(rec: &ImageRecord, cfg: &Value, driver: &str, unpacked: bool) -> Value {
    let top = rec
        .layers
        .last()
        .map(|l| l.chain_id.clone())
        .unwrap_or_default();
    let comment = cfg["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|h| h["comment"].as_str())
        .unwrap_or("");
    let mut doc = json!({
        "Id": rec.id,
        "RepoTags": familiar_tags(rec),
        "RepoDigests": repo_digests(rec),
        "Parent": "",
        "Comment": comment,
        "Created": cfg["created"].as_str().map_or_else(|| format_time(rec.created), str::to_string),
        "DockerVersion": cfg["docker_version"].as_str().unwrap_or(""),
        "Author": cfg["author"].as_str().unwrap_or(""),
        "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": cfg["architecture"].as_str().unwrap_or(""),
        "Os": cfg["os"].as_str().unwrap_or(""),
        "Size": rec.size,
        "GraphDriver": {
            "Name": driver,
            "Data": { "ChainID": top, "Unpacked": unpacked.to_string() },
        },
        "RootFS": {
            "Type": "layers",
            "Layers": rec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "Metadata": { "ManifestDigest": rec.manifest_digest, "ManifestMediaType": rec.manifest_media_type },
    });
    if let Some(v) = cfg["variant"].as_str() {
        doc["Variant"] = json!(v);
    }
    doc
}

/// One row of `docker history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image id for the top row, `<missing>` for the others (as Docker).
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// The instruction.
    pub created_by: String,
    /// Bytes its layer adds.
    pub size: u64,
    /// Its comment.
    pub comment: String,
    /// It made no layer.
    pub empty_layer: bool,
}

/// `docker history`, newest first: the config's history entries, each non-empty one matched to
/// the next layer; `layer_size` gives a layer's uncompressed size.
pub fn history(
    rec: &ImageRecord,
    cfg: &Value,
    layer_size: impl Fn(&str) -> Option<LayerRecord>,
) -> Vec<HistoryRow> {
    let mut rows = Vec::new();
    let mut layers = rec.layers.iter();
    let entries = cfg["history"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        for l in rec.layers.iter() {
            rows.push(HistoryRow {
                id: "<missing>".into(),
                created: rec.created,
                created_by: String::new(),
                size: layer_size(&l.chain_id).map_or(l.size, |r| r.size),
                comment: String::new(),
                empty_layer: false,
            });
        }
    }
    for h in entries {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers
                .next()
                .map_or(0, |l| layer_size(&l.chain_id).map_or(l.size, |r| r.size))
        };
        rows.push(HistoryRow {
            id: "<missing>".into(),
            created: h["created"].as_str().map_or(0, parse_time),
            created_by: h["created_by"].as_str().unwrap_or("").to_string(),
            size,
            comment: h["comment"].as_str().unwrap_or("").to_string(),
            empty_layer: empty,
        });
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = rec.id.clone();
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_and_times() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a.to_string());
        let want = hex::encode(Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(c[1], format!("sha256:{want}"));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), 0);
        assert_eq!(parse_time("2024-02-29T12:34:56.789Z"), 1_709_210_096);
        assert_eq!(parse_time("2024-02-29T13:34:56+01:00"), 1_709_210_096);
        assert_eq!(format_time(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(parse_time("garbage"), 0);
        for t in [0, 1, 951_782_400, 4_102_444_800, 1_764_130_000] {
            assert_eq!(parse_time(&format_time(t)), t);
        }
    }
}
