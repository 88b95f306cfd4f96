//! Resolving `--user` (or the image's USER) to numbers, from the container's own /etc/passwd
//! and /etc/group, as Docker does.

use std::path::Path;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

fn read(root: &Path, file: &str) -> String {
    // The files are read through the rootfs path; a symlink pointing out of it is not followed.
    let p = root.join(file);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_file() => std::fs::read_to_string(p).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Resolves `spec` (`""`, `uid`, `uid:gid`, `name`, `name:group`) against the rootfs at `root`.
pub fn resolve(spec: &str, root: &Path) -> Result<User, String> {
    let passwd = read(root, "etc/passwd");
    let group = read(root, "etc/group");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(':').map(String::from).collect())
            .collect()
    };
    let users = entries(&passwd);
    let groups = entries(&group);
    let (uid, name, mut gid) = if u.is_empty() {
        (0, "root".to_string(), 0)
    } else if let Ok(n) = u.parse::<u32>() {
        let e = users
            .iter()
            .find(|e| e.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(n));
        (
            n,
            e.map(|e| e[0].clone()).unwrap_or_default(),
            e.and_then(|e| e.get(3)?.parse().ok()).unwrap_or(0),
        )
    } else {
        let e = users
            .iter()
            .find(|e| e.first().map(String::as_str) == Some(u))
            .ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
        let uid = e
            .get(2)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| format!("bad passwd entry for {u}"))?;
        let gid = e.get(3).and_then(|x| x.parse().ok()).unwrap_or(0);
        (uid, u.to_string(), gid)
    };
    if let Some(g) = g {
        gid = if let Ok(n) = g.parse::<u32>() {
            n
        } else {
            groups
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(g))
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?
        };
    }
    let additional_gids = if name.is_empty() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|e| e.get(3).is_some_and(|m| m.split(',').any(|m| m == name)))
            .filter_map(|e| e.get(2)?.parse().ok())
            .filter(|g| *g != gid)
            .collect()
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// `--group-add`: `user`'s groups and these (gids, or names from the image's /etc/group).
pub fn add_groups(mut user: User, extra: &[String], root: &Path) -> Result<User, String> {
    if extra.is_empty() {
        return Ok(user);
    }
    let group = read(root, "etc/group");
    for g in extra {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|e| e.first() == Some(&g.as_str()))
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
        if gid != user.gid && !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:33:34::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:34:\nextra:x:50:web\n",
        )
        .unwrap();
        assert_eq!(
            resolve("", d.path()).unwrap(),
            User {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve("web", d.path()).unwrap(),
            User {
                uid: 33,
                gid: 34,
                additional_gids: vec![50]
            }
        );
        assert_eq!(resolve("1000:1000", d.path()).unwrap().gid, 1000);
        assert_eq!(resolve("33:root", d.path()).unwrap().gid, 0);
        assert!(resolve("nobody", d.path()).unwrap_err().contains("nobody"));
    }
}
