//! Kernel aufs: detection and the mount options Docker's aufs driver uses.
//!
//! `br:<rw>=rw:<ro>=ro+wh:...,dio,xino=/dev/shm/aufs.xino[,dirperm1]`; the mount data is one
//! page, so branches that do not fit are appended afterwards, one remount `append:<ro>=ro+wh`
//! each. No machine we build on has aufs, so this is tested on the strings it builds.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// Where aufs keeps its external inode number table (Docker's choice).
pub const XINO: &str = "/dev/shm/aufs.xino";

/// Whether the running kernel has aufs.
pub fn available() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| has_aufs(&s))
}

/// Whether a /proc/filesystems text lists aufs.
pub fn has_aufs(filesystems: &str) -> bool {
    filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("aufs"))
}

/// The mount data for the first mount and the remounts that append the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Data of the first mount (at most `page` bytes).
    pub data: String,
    /// Data of each following `MS_REMOUNT`.
    pub appends: Vec<String>,
}

/// Builds the mount data for a union of `rw` (None: a read-only union of `ro` alone) over
/// `ro` (nearest first), as Docker's aufs driver does: branches are added to the first mount
/// while they fit in `page` bytes, with room kept for the options.
pub fn plan(rw: Option<&Path>, ro: &[PathBuf], dirperm1: bool, page: usize) -> MountPlan {
    let mut opts = format!("dio,xino={XINO}");
    if dirperm1 {
        opts.push_str(",dirperm1");
    }
    let room = page.saturating_sub(opts.len() + 1);
    let branch = |p: &Path, mode: &str| format!("{}={mode}", p.display());
    let mut br = String::from("br:");
    let mut first = true;
    if let Some(rw) = rw {
        br.push_str(&branch(rw, "rw"));
        first = false;
    }
    let mut index = 0;
    for (i, p) in ro.iter().enumerate() {
        // A read-only union's top branch needs no whiteouts; the rest are ro+wh.
        let b = branch(p, if first { "ro" } else { "ro+wh" });
        let add = if first { b.len() } else { b.len() + 1 };
        if br.len() + add > room {
            break;
        }
        if !first {
            br.push(':');
        }
        br.push_str(&b);
        first = false;
        index = i + 1;
    }
    let appends = ro[index..]
        .iter()
        .map(|p| format!("append:{}", branch(p, "ro+wh")))
        .collect();
    MountPlan {
        data: format!("{br},{opts}"),
        appends,
    }
}

/// Mounts a plan at `target`.
pub fn mount_plan(target: &Path, p: &MountPlan, read_only: bool) -> io::Result<()> {
    let flags = if read_only {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(
        Some("none"),
        target,
        Some("aufs"),
        flags,
        Some(p.data.as_str()),
    )?;
    for a in &p.appends {
        mount(
            Some("none"),
            target,
            Some("aufs"),
            flags | MsFlags::MS_REMOUNT,
            Some(a.as_str()),
        )?;
    }
    Ok(())
}

/// Whether this kernel's aufs takes `dirperm1` (Docker's probe: mount a tiny union with it).
pub fn probe_dirperm1(scratch: &Path) -> bool {
    let (rw, mnt) = (scratch.join("dirperm1-rw"), scratch.join("dirperm1-mnt"));
    let ok = std::fs::create_dir_all(&rw).is_ok()
        && std::fs::create_dir_all(&mnt).is_ok()
        && mount(
            Some("none"),
            &mnt,
            Some("aufs"),
            MsFlags::empty(),
            Some(format!("br:{}=rw,dirperm1", rw.display()).as_str()),
        )
        .is_ok();
    if ok {
        let _ = nix::mount::umount(&mnt);
    }
    let _ = std::fs::remove_dir(&rw);
    let _ = std::fs::remove_dir(&mnt);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_aufs_in_proc_filesystems() {
        assert!(has_aufs("nodev\tsysfs\n\text4\nnodev\taufs\n"));
        assert!(!has_aufs("nodev\tsysfs\n\text4\nnodev\toverlay\n"));
    }

    #[test]
    fn short_chain_fits_one_mount() {
        let ro = vec![PathBuf::from("/r/diff/2"), PathBuf::from("/r/diff/1")];
        let p = plan(Some(Path::new("/r/diff/3")), &ro, true, 4096);
        assert_eq!(
            p.data,
            "br:/r/diff/3=rw:/r/diff/2=ro+wh:/r/diff/1=ro+wh,dio,xino=/dev/shm/aufs.xino,dirperm1"
        );
        assert!(p.appends.is_empty());
        let p = plan(Some(Path::new("/r/diff/3")), &[], false, 4096);
        assert_eq!(p.data, "br:/r/diff/3=rw,dio,xino=/dev/shm/aufs.xino");
    }

    #[test]
    fn read_only_union_has_no_rw_branch() {
        let ro = vec![PathBuf::from("/r/diff/2"), PathBuf::from("/r/diff/1")];
        let p = plan(None, &ro, false, 4096);
        assert_eq!(
            p.data,
            "br:/r/diff/2=ro:/r/diff/1=ro+wh,dio,xino=/dev/shm/aufs.xino"
        );
    }

    #[test]
    fn long_chain_is_appended_by_remount() {
        let ro: Vec<PathBuf> = (0..300)
            .map(|i| PathBuf::from(format!("/var/lib/strata/aufs/diff/{i:064}")))
            .collect();
        let p = plan(
            Some(Path::new("/var/lib/strata/aufs/diff/top")),
            &ro,
            true,
            4096,
        );
        assert!(p.data.len() <= 4096, "{}", p.data.len());
        assert!(p.data.ends_with(",dio,xino=/dev/shm/aufs.xino,dirperm1"));
        let in_first = p.data.matches("=ro+wh").count();
        assert!(in_first > 10 && in_first < 300);
        assert_eq!(in_first + p.appends.len(), 300);
        assert_eq!(
            p.appends[0],
            format!("append:{}=ro+wh", ro[in_first].display())
        );
        assert!(p.appends.iter().all(|a| a.len() < 4096));
        // Order is kept: the first append follows the last branch of the first mount.
        assert!(p
            .data
            .contains(&format!("{}=ro+wh,", ro[in_first - 1].display())));
    }
}
