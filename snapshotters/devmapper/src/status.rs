//! Status rows like `docker info`'s for devicemapper, and the xfs ENOSPC retry setting.

use std::fs;
use std::path::Path;

use crate::device::Devices;
use crate::dm::META_BLOCK;
use crate::error::DevResult;

/// A size the way Docker prints it (decimal units, four significant digits).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{bytes}B");
    }
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let t = format!("{v:.digits$}");
    let s = t.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{}", UNITS[i])
}

/// The rows of Status.
pub fn rows(d: &Devices, version: &str, snapshots: usize) -> DevResult<Vec<(String, String)>> {
    let s = d.dm.pool_status(&d.pool.name)?;
    let bs = d.pool.block_size;
    let base = d.store.base()?.map_or(d.cfg.base_size, |b| b.size);
    let yes = |b: bool| if b { "true" } else { "false" }.to_string();
    let row = |k: &str, v: String| (k.to_string(), v);
    Ok(vec![
        row("Pool Name", d.pool.name.clone()),
        row("Pool Blocksize", human(bs)),
        row("Base Device Size", human(base)),
        row("Backing Filesystem", d.cfg.fs.name().to_string()),
        row("Data file", d.pool.data.clone()),
        row("Metadata file", d.pool.metadata.clone()),
        row("Data Space Used", human(s.data_used * bs)),
        row("Data Space Total", human(s.data_total * bs)),
        row(
            "Data Space Available",
            human(s.data_total.saturating_sub(s.data_used) * bs),
        ),
        row("Metadata Space Used", human(s.meta_used * META_BLOCK)),
        row("Metadata Space Total", human(s.meta_total * META_BLOCK)),
        row(
            "Metadata Space Available",
            human(s.meta_total.saturating_sub(s.meta_used) * META_BLOCK),
        ),
        row(
            "Thin Pool Minimum Free Space",
            human(s.data_total * bs * u64::from(d.cfg.min_free_space) / 100),
        ),
        row("Deferred Removal Enabled", yes(d.cfg.deferred_removal)),
        row("Deferred Deletion Enabled", yes(d.cfg.deferred_deletion)),
        row(
            "Deferred Deleted Device Count",
            d.store.deferred()?.len().to_string(),
        ),
        row("Library Version", version.to_string()),
        row("Snapshots", snapshots.to_string()),
    ])
}

/// Sets `/sys/fs/xfs/dm-N/error/metadata/ENOSPC/max_retries` on every mounted xfs of the
/// driver's devices that does not have `n` yet.
pub fn apply_xfs_retries(d: &Devices, n: u32) {
    let Ok(list) = d.dm.list(&format!("{}-", d.prefix)) else {
        return;
    };
    let want = n.to_string();
    for (_, dev) in list {
        let path = format!(
            "/sys/fs/xfs/dm-{}/error/metadata/ENOSPC/max_retries",
            dev.minor
        );
        let path = Path::new(&path);
        match fs::read_to_string(path) {
            Ok(v) if v.trim() != want => {
                if let Err(e) = fs::write(path, &want) {
                    tracing::warn!(%e, path = %path.display(), "setting xfs ENOSPC retries failed");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human(65536), "65.54kB");
        assert_eq!(human(10 << 30), "10.74GB");
        assert_eq!(human(512), "512B");
        assert_eq!(human(107_374_182_400), "107.4GB");
    }
}
