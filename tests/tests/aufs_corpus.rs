//! strata-aufs' FUSE union filesystem against the kernel's overlayfs on the same layers: a
//! corpus of file operations must leave the same visible tree and the same layer diff (aufs'
//! `.wh.` files and opaque markers read as overlay's whiteout devices and opaque xattrs).
//! Also: a tree laid out by Docker's aufs driver (hex ids, `layers/` files, `.wh.` entries,
//! aufs' meta directories) is read as Docker showed it.
//!
//! Needs root and the built `strata-aufs` binary. Each case mounts its own union with
//! `strata-aufs fuse` (the server the plugin starts) and an overlay, and unmounts both and
//! stops the server even when it fails.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use sha2::{Digest, Sha256};
use strata_snapshotter::xattr;
use strata_tests::fstest::check_trees_equal;
use strata_tests::harness::find_binary;

/// A mount that is undone on drop: unmounted (lazily, so a busy one cannot block), and its
/// FUSE server, if any, stopped.
struct Mounted {
    path: PathBuf,
    server: Option<Child>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        if let Some(mut child) = self.server.take() {
            // It exits by itself once unmounted; do not wait forever if it does not.
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Serves layer `id` of the aufs tree at `root` on `root/mnt/<id>` with strata-aufs' FUSE
/// server.
fn aufs_mount(root: &Path, id: &str, read_only: bool) -> Result<Mounted> {
    let mnt = root.join("mnt").join(id);
    fs::create_dir_all(&mnt)?;
    let mut cmd = Command::new(find_binary("strata-aufs"));
    cmd.args(["fuse", "--root"]).arg(root).args(["--id", id]);
    if read_only {
        cmd.arg("--read-only");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("start strata-aufs fuse")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let guard = Mounted {
        path: mnt,
        server: Some(child),
    };
    ensure!(
        line.trim() == "ready",
        "strata-aufs fuse did not mount: {line:?}"
    );
    Ok(guard)
}

fn overlay_mount(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<Mounted> {
    for d in [upper, work, target] {
        fs::create_dir_all(d)?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .context("mount overlay")?;
    Ok(Mounted {
        path: target.to_path_buf(),
        server: None,
    })
}

fn write(p: &Path, content: &[u8], mode: u32) -> Result<()> {
    fs::write(p, content).with_context(|| format!("write {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The base layer every case starts from.
fn base_layer(dir: &Path) -> Result<()> {
    for d in ["etc", "home/user", "data", "dir/sub", "bin", "lib"] {
        fs::create_dir_all(dir.join(d))?;
    }
    write(
        &dir.join("etc/passwd"),
        b"root:x:0:0::/root:/bin/sh\n",
        0o644,
    )?;
    write(&dir.join("etc/hosts"), b"127.0.0.1 localhost\n", 0o644)?;
    write(&dir.join("etc/shadow"), b"root:*:::::::\n", 0o640)?;
    write(&dir.join("etc/a"), b"file a\n", 0o644)?;
    write(&dir.join("etc/b"), b"file b\n", 0o600)?;
    xattr::set(&dir.join("etc/b"), "user.base".as_ref(), b"1", 0).context("setxattr")?;
    write(&dir.join("home/user/file"), b"mine\n", 0o644)?;
    write(&dir.join("dir/x"), b"x\n", 0o644)?;
    write(&dir.join("dir/sub/y"), b"y\n", 0o644)?;
    write(&dir.join("data/log"), b"0123456789abcdef", 0o644)?;
    let mm: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    write(&dir.join("data/mm"), &mm, 0o644)?;
    let big: Vec<u8> = (0..(48u32 << 20)).map(|i| (i % 251) as u8).collect();
    write(&dir.join("data/big"), &big, 0o644)?;
    write(&dir.join("bin/busybox"), b"\x7fELF", 0o755)?;
    fs::hard_link(dir.join("bin/busybox"), dir.join("bin/sh"))?;
    std::os::unix::fs::symlink("lib", dir.join("lib64"))?;
    std::os::unix::fs::symlink("../etc/passwd", dir.join("lib/passwd-link"))?;
    Ok(())
}

type Op = fn(&Path) -> Result<()>;

fn op_create(r: &Path) -> Result<()> {
    write(&r.join("new.txt"), b"new", 0o644)?;
    fs::create_dir(r.join("newdir"))?;
    write(&r.join("newdir/inner"), b"inner", 0o600)?;
    write(&r.join("dir/sub/z"), b"z in a lower dir", 0o644)
}

fn op_overwrite(r: &Path) -> Result<()> {
    write(&r.join("etc/passwd"), b"replaced\n", 0o644)
}

fn op_append(r: &Path) -> Result<()> {
    let mut f = OpenOptions::new().append(true).open(r.join("etc/hosts"))?;
    f.write_all(b"10.0.0.1 other\n")?;
    Ok(())
}

fn op_truncate(r: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(r.join("data/log"))?
        .set_len(5)?;
    Ok(())
}

fn op_rename_over_lower(r: &Path) -> Result<()> {
    fs::rename(r.join("etc/a"), r.join("etc/b"))?;
    Ok(())
}

fn op_delete_lower_file(r: &Path) -> Result<()> {
    fs::remove_file(r.join("etc/hosts"))?;
    Ok(())
}

fn op_recreate_lower_dir(r: &Path) -> Result<()> {
    fs::remove_dir_all(r.join("dir"))?;
    fs::create_dir(r.join("dir"))?;
    write(&r.join("dir/fresh"), b"fresh", 0o644)
}

fn op_link_then_delete(r: &Path) -> Result<()> {
    fs::hard_link(r.join("etc/passwd"), r.join("etc/passwd2"))?;
    fs::remove_file(r.join("etc/passwd"))?;
    Ok(())
}

fn op_chmod_chown(r: &Path) -> Result<()> {
    fs::set_permissions(r.join("etc/shadow"), fs::Permissions::from_mode(0o600))?;
    std::os::unix::fs::chown(r.join("home/user/file"), Some(1000), Some(1000))?;
    std::os::unix::fs::chown(r.join("home/user"), Some(1000), Some(1000))?;
    Ok(())
}

fn op_symlinks(r: &Path) -> Result<()> {
    std::os::unix::fs::symlink("etc/passwd", r.join("link"))?;
    fs::remove_file(r.join("lib64"))?;
    std::os::unix::fs::symlink("/usr/lib", r.join("lib64"))?;
    let via = fs::read(r.join("lib/passwd-link"))?;
    ensure!(via.starts_with(b"root:"), "reading through a lower symlink");
    std::os::unix::fs::lchown(r.join("link"), Some(7), Some(7))?;
    Ok(())
}

fn op_mmap_write(r: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    const LEN: usize = 65536;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(r.join("data/mm"))?;
    // SAFETY: a fresh shared mapping of a file we hold open, of its exact length; nothing
    // else maps it, and it is unmapped below before the file is closed.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    ensure!(
        ptr != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the mapping is LEN bytes long and writable, and only this slice uses it.
    let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), LEN) };
    bytes[100..113].copy_from_slice(b"MMAP-WRITTEN!");
    bytes[40000] = b'#';
    // SAFETY: ptr/LEN are the mapping made above.
    let synced = unsafe { libc::msync(ptr, LEN, libc::MS_SYNC) };
    let err = std::io::Error::last_os_error();
    // SAFETY: unmapping the mapping made above; `bytes` is not used afterwards.
    unsafe { libc::munmap(ptr, LEN) };
    ensure!(synced == 0, "msync: {err}");
    Ok(())
}

fn op_large_copy_up(r: &Path) -> Result<()> {
    let mut f = OpenOptions::new().append(true).open(r.join("data/big"))?;
    f.write_all(b"one more line\n")?;
    Ok(())
}

fn op_unlinked_but_open(r: &Path) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(r.join("etc/a"))?;
    fs::remove_file(r.join("etc/a"))?;
    f.set_len(3)?;
    f.write_all(b"tail")?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    let m = f.metadata()?;
    ensure!(
        m.len() == 4 && m.mode() & 0o777 == 0o600,
        "fstat after unlink: {m:?}"
    );
    ensure!(!r.join("etc/a").exists());
    Ok(())
}

fn op_rename_lower_dir(r: &Path) -> Result<()> {
    // Both refuse to move a directory with lower parts (aufs without dirren, overlayfs without
    // redirect_dir); what mv then does is a copy and a removal.
    match fs::rename(r.join("dir"), r.join("moved")) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        other => bail!("rename of a lower directory gave {other:?}, want EXDEV"),
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(r.join("dir"))
        .arg(r.join("moved"))
        .status()?;
    ensure!(status.success(), "cp -a: {status}");
    fs::remove_dir_all(r.join("dir"))?;
    Ok(())
}

fn op_xattrs(r: &Path) -> Result<()> {
    let set = |p: &Path, name: &str, value: &[u8]| -> Result<()> {
        xattr::set(p, name.as_ref(), value, 0).with_context(|| format!("setxattr {name}"))
    };
    set(&r.join("etc/b"), "user.added", b"in the top")?;
    set(&r.join("dir/sub"), "trusted.dir", b"on a copied-up dir")?;
    xattr::remove(&r.join("etc/b"), "user.base".as_ref()).context("removexattr")?;
    Ok(())
}

fn op_non_root_creates(r: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::os::unix::fs::chown(r.join("home/user"), Some(1000), Some(1000))?;
    std::os::unix::fs::chown(r.join("dir/sub"), Some(0), Some(50))?;
    fs::set_permissions(r.join("dir/sub"), fs::Permissions::from_mode(0o2777))?;
    let script = "umask 022 && cd \"$1\" && echo x > home/user/new && mkdir home/user/d && \
                  ln -s new home/user/l && mkfifo home/user/p && mkdir dir/sub/sg && \
                  echo f > dir/sub/sg/f && ! touch etc/denied 2>/dev/null";
    let status = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(r)
        .uid(1000)
        .gid(1000)
        .status()?;
    ensure!(status.success(), "the unprivileged script failed: {status}");
    Ok(())
}

const CORPUS: &[(&str, Op)] = &[
    ("non-root creates", op_non_root_creates),
    ("rename lower dir", op_rename_lower_dir),
    ("xattrs of lower entries", op_xattrs),
    ("unlinked but open", op_unlinked_but_open),
    ("create", op_create),
    ("overwrite", op_overwrite),
    ("append", op_append),
    ("truncate", op_truncate),
    ("rename over lower", op_rename_over_lower),
    ("delete lower file", op_delete_lower_file),
    ("delete and recreate lower dir", op_recreate_lower_dir),
    ("hard link then delete original", op_link_then_delete),
    ("chmod/chown of lower", op_chmod_chown),
    ("symlinks", op_symlinks),
    ("mmap write", op_mmap_write),
    ("large-file copy-up", op_large_copy_up),
];

/// One entry of a layer diff, in a form both formats map to.
#[derive(Debug, PartialEq, Eq)]
enum DiffEntry {
    Whiteout,
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        opaque: bool,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        sha256: String,
    },
    Symlink {
        target: PathBuf,
        uid: u32,
        gid: u32,
    },
    Other {
        mode: u32,
        rdev: u64,
    },
}

fn has_opaque_xattr(p: &Path) -> bool {
    xattr::get(p, "trusted.overlay.opaque".as_ref()).is_ok_and(|v| v == b"y")
}

fn sha(p: &Path) -> Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads a layer diff. `aufs`: `.wh.<name>` is a whiteout, `.wh..wh..opq` makes its directory
/// opaque, other `.wh..wh.*` names are aufs' own; otherwise overlay's format.
fn read_diff(root: &Path, aufs: bool) -> Result<BTreeMap<String, DiffEntry>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut opaque = false;
        let mut names = Vec::new();
        for e in fs::read_dir(&dir)? {
            names.push(e?.file_name());
        }
        for name in names {
            let p = dir.join(&name);
            let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
            let n = name.to_string_lossy();
            if aufs && n == ".wh..wh..opq" {
                opaque = true;
                continue;
            }
            if aufs && n.starts_with(".wh..wh.") {
                continue;
            }
            if aufs && n.starts_with(".wh.") {
                let hidden = dir.join(&n[4..]);
                out.insert(
                    hidden.strip_prefix(root)?.to_string_lossy().into_owned(),
                    DiffEntry::Whiteout,
                );
                continue;
            }
            let m = fs::symlink_metadata(&p)?;
            let ft = m.file_type();
            let entry = if ft.is_dir() {
                stack.push(p.clone());
                DiffEntry::Dir {
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    opaque: !aufs && has_opaque_xattr(&p),
                }
            } else if ft.is_file() {
                DiffEntry::File {
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    sha256: sha(&p)?,
                }
            } else if ft.is_symlink() {
                DiffEntry::Symlink {
                    target: fs::read_link(&p)?,
                    uid: m.uid(),
                    gid: m.gid(),
                }
            } else if !aufs && ft.is_char_device() && m.rdev() == 0 {
                DiffEntry::Whiteout
            } else {
                DiffEntry::Other {
                    mode: m.mode(),
                    rdev: m.rdev(),
                }
            };
            out.insert(rel, entry);
        }
        if opaque {
            let rel = dir.strip_prefix(root)?.to_string_lossy().into_owned();
            match out.get_mut(&rel) {
                Some(DiffEntry::Dir { opaque, .. }) => *opaque = true,
                _ => bail!(
                    "opaque marker in {} outside a diff directory entry",
                    dir.display()
                ),
            }
        }
    }
    Ok(out)
}

fn run_op(scratch: &Path, name: &str, op: Op) -> Result<()> {
    let case = scratch.join(name.replace(['/', ' '], "-"));
    // aufs: diff/1 is the base, diff/2 the writable layer over it.
    let root = case.join("aufs");
    for d in ["diff/1", "diff/2", "layers", "mnt"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::write(root.join("layers/1"), "")?;
    fs::write(root.join("layers/2"), "1\n")?;
    let base = root.join("diff/1");
    base_layer(&base)?;
    let ovl = case.join("overlay");
    let upper = ovl.join("upper");
    let (u, o) = {
        let u = aufs_mount(&root, "2", false)?;
        let o = overlay_mount(&base, &upper, &ovl.join("work"), &ovl.join("merged"))?;
        (u, o)
    };
    op(&u.path).with_context(|| format!("{name}: through strata-aufs"))?;
    op(&o.path).with_context(|| format!("{name}: through overlayfs"))?;
    check_trees_equal(&o.path, &u.path)
        .with_context(|| format!("{name}: the visible trees differ (expected: overlayfs)"))?;
    drop(u);
    drop(o);
    let aufs_diff = read_diff(&root.join("diff/2"), true)?;
    let ovl_diff = read_diff(&upper, false)?;
    if aufs_diff != ovl_diff {
        bail!(
            "{name}: the layer diffs differ\n  overlayfs: {ovl_diff:#?}\n  strata-aufs: {aufs_diff:#?}"
        );
    }
    ensure!(
        !ovl_diff.is_empty(),
        "{name}: the operation changed nothing"
    );
    Ok(())
}

#[test]
fn aufs_corpus_matches_overlayfs() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut failures = Vec::new();
    for (name, op) in CORPUS {
        if let Err(e) = run_op(scratch.path(), name, *op) {
            failures.push(format!("{e:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// aufs keeps hard links within a layer across a copy-up (overlayfs without `index=on` breaks
/// them): writing through one name of a lower file shows through its other names, also after
/// the union is mounted again, and the layer holds one inode under both names.
#[test]
fn aufs_lower_hard_links_stay_linked() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let root = scratch.path().join("aufs");
    let result = (|| -> Result<()> {
        for d in ["diff/1/dir", "diff/2", "layers", "mnt"] {
            fs::create_dir_all(root.join(d))?;
        }
        fs::write(root.join("layers/1"), "")?;
        fs::write(root.join("layers/2"), "1\n")?;
        write(&root.join("diff/1/dir/h1"), b"original", 0o640)?;
        fs::hard_link(root.join("diff/1/dir/h1"), root.join("diff/1/h2"))?;
        write(&root.join("diff/1/other"), b"other", 0o644)?;
        let ino = |p: &Path| fs::metadata(p).map(|m| m.ino());
        {
            let u = aufs_mount(&root, "2", false)?;
            ensure!(ino(&u.path.join("dir/h1"))? == ino(&u.path.join("h2"))?);
            OpenOptions::new()
                .append(true)
                .open(u.path.join("dir/h1"))?
                .write_all(b" + appended")?;
            ensure!(fs::read(u.path.join("h2"))? == b"original + appended");
            ensure!(ino(&u.path.join("dir/h1"))? == ino(&u.path.join("h2"))?);
        }
        let u = aufs_mount(&root, "2", false)?;
        ensure!(fs::read(u.path.join("h2"))? == b"original + appended");
        ensure!(fs::read(u.path.join("other"))? == b"other");
        drop(u);
        let top = root.join("diff/2");
        ensure!(ino(&top.join("dir/h1"))? == ino(&top.join("h2"))?);
        ensure!(fs::metadata(top.join("h2"))?.mode() & 0o7777 == 0o640);
        ensure!(
            !top.join("other").exists(),
            "an untouched file was copied up"
        );
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

/// A tree as Docker's aufs driver left it: hex ids, `layers/` files (Docker writes no trailing
/// newline), aufs' meta directories in every branch, whiteouts and an opaque directory.
#[test]
fn aufs_reads_a_docker_aufs_tree() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let root = scratch.path().join("aufs");
    let result = (|| -> Result<()> {
        let ids = [
            "0b1d1d5fbd1c0e4bbc14a3fbcd2c3f5e8b4a8c0e7a8e5f4b0c2d1e3f4a5b6c7d",
            "5d2a5ef8ad4e1c3f0b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ];
        for id in ids {
            let d = root.join("diff").join(id);
            for meta in [".wh..wh.aufs", ".wh..wh.orph", ".wh..wh.plnk"] {
                fs::create_dir_all(d.join(meta))?;
            }
        }
        fs::create_dir_all(root.join("layers"))?;
        fs::create_dir_all(root.join("mnt"))?;
        fs::write(root.join("layers").join(ids[0]), "")?;
        fs::write(root.join("layers").join(ids[1]), ids[0])?;
        fs::write(
            root.join("layers").join(ids[2]),
            format!("{}\n{}", ids[1], ids[0]),
        )?;
        let (l0, l1, l2) = (
            root.join("diff").join(ids[0]),
            root.join("diff").join(ids[1]),
            root.join("diff").join(ids[2]),
        );
        fs::create_dir_all(l0.join("etc/opt"))?;
        fs::create_dir_all(l0.join("var/cache"))?;
        write(&l0.join("etc/passwd"), b"root\n", 0o644)?;
        write(&l0.join("etc/opt/old"), b"old\n", 0o644)?;
        write(&l0.join("var/cache/c"), b"cache\n", 0o644)?;
        write(&l0.join("gone"), b"gone\n", 0o644)?;
        fs::create_dir_all(l1.join("etc/opt"))?;
        write(&l1.join("etc/opt/.wh..wh..opq"), b"", 0o444)?;
        write(&l1.join("etc/opt/new"), b"new\n", 0o644)?;
        write(&l1.join(".wh.gone"), b"", 0o444)?;
        write(&l1.join("etc/passwd"), b"root\nuser\n", 0o644)?;
        fs::create_dir_all(l2.join("var"))?;
        write(&l2.join("var/.wh.cache"), b"", 0o444)?;
        write(&l2.join("top"), b"top\n", 0o600)?;
        // What Docker showed.
        let want = scratch.path().join("want");
        fs::create_dir_all(want.join("etc/opt"))?;
        fs::create_dir_all(want.join("var"))?;
        write(&want.join("etc/passwd"), b"root\nuser\n", 0o644)?;
        write(&want.join("etc/opt/new"), b"new\n", 0o644)?;
        write(&want.join("top"), b"top\n", 0o600)?;
        for (w, l) in [("etc", &l1), ("etc/opt", &l1), ("var", &l2), ("", &l2)] {
            let mode = fs::metadata(l.join(w))?.mode() & 0o7777;
            fs::set_permissions(want.join(w), fs::Permissions::from_mode(mode))?;
        }
        let u = aufs_mount(&root, ids[2], true)?;
        check_trees_equal(&want, &u.path).context("the union of Docker's tree")?;
        let e = fs::write(u.path.join("x"), b"x").expect_err("a read-only union took a write");
        ensure!(e.raw_os_error() == Some(libc::EROFS), "write gave {e}");
        Ok(())
    })();
    if let Err(e) = result {
        panic!("{e:#}");
    }
}
