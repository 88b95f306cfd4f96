//! Mounting what Prepare and View return, as containerd's `mount.All` would, and making sure
//! nothing stays mounted after a test.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{umount2, MntFlags};
use strata_proto::types::Mount;

/// A mounted snapshot. Dropping it unmounts (best effort); call [`MountGuard::unmount`] to see
/// the error.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
}

impl MountGuard {
    /// Mounts `mounts` on `target` (which must exist) with Strata's mounter.
    pub fn mount(mounts: &[Mount], target: &Path) -> Result<Self> {
        strata_snapshotter::mount::mount_all(mounts, target).with_context(|| {
            format!("mount {} on {}", describe_mounts(mounts), target.display())
        })?;
        Ok(Self {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// Where the snapshot is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure.
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        // A mount list may stack several mounts on one target: take them all off.
        strata_snapshotter::mount::unmount_all(&self.target)
            .with_context(|| format!("unmount {}", self.target.display()))
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(err) = strata_snapshotter::mount::unmount_all(&self.target) {
                eprintln!("unmount {}: {err}", self.target.display());
            }
            detach_all(&self.target);
        }
    }
}

/// A one-line description of a mount list for error messages.
pub fn describe_mounts(mounts: &[Mount]) -> String {
    let parts: Vec<String> = mounts
        .iter()
        .map(|m| {
            let mut opts = m.options.join(",");
            if opts.len() > 300 {
                let mut cut = 300;
                while !opts.is_char_boundary(cut) {
                    cut -= 1;
                }
                opts.truncate(cut);
                opts.push_str("...");
            }
            format!("{{type={} source={} options={opts}}}", m.r#type, m.source)
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Lazily unmounts `target` until nothing is mounted there.
fn detach_all(target: &Path) {
    for _ in 0..16 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// Every mount point at or below `dir`, deepest first, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Unmounts everything at or below `dir` (lazily), deepest first.
pub fn unmount_all_under(dir: &Path) {
    for _ in 0..4 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            if let Err(err) = umount2(&m, MntFlags::MNT_DETACH) {
                eprintln!("cleanup: unmount {}: {err}", m.display());
            }
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(value) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn unescapes_octal_sequences() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/tmp/plain"), "/tmp/plain");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }
}
