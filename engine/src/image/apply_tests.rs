//! Tests for layer application, including hand-built malicious layers.

use super::*;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use tar::EntryType as T;

/// A tar built entry by entry with raw names (so `..` and absolute names get in).
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn raw(
        &mut self,
        kind: T,
        path: &str,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, p: &str) -> &mut Self {
        self.raw(T::Directory, p, None, b"", 0o755)
    }

    fn file(&mut self, p: &str, data: &[u8]) -> &mut Self {
        self.raw(T::Regular, p, None, data, 0o644)
    }

    fn symlink(&mut self, p: &str, target: &str) -> &mut Self {
        self.raw(T::Symlink, p, Some(target), b"", 0o777)
    }

    fn hardlink(&mut self, p: &str, target: &str) -> &mut Self {
        self.raw(T::Link, p, Some(target), b"", 0o644)
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// A sandbox: `<tmp>/root` is the target, `<tmp>/outside` must stay as it was.
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/secret"), b"secret").unwrap();
        Sandbox { tmp }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn apply(&self, tar: &[u8], mode: ApplyMode) -> Result<Applied, ApplyError> {
        apply_layer(tar, &self.root(), mode)
    }

    /// Everything outside the root is as it was.
    fn untouched(&self) {
        let mut top: Vec<_> = fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["outside", "root"]);
        let out: Vec<_> = fs::read_dir(self.tmp.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(out, ["secret"]);
        assert_eq!(
            fs::read(self.tmp.path().join("outside/secret")).unwrap(),
            b"secret"
        );
        let m = fs::metadata(self.tmp.path().join("outside/secret")).unwrap();
        assert_eq!(m.nlink(), 1, "no hard link to a file outside");
    }
}

fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    strata_snapshotter::xattr::get(p, name.as_ref()).ok()
}

#[test]
fn applies_files_with_metadata_and_returns_the_diff_id() {
    let s = Sandbox::new();
    let mut l = Layer::new();
    l.dir("a/");
    l.0.append_pax_extensions([
        ("SCHILY.xattr.user.k", &b"v"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
        ("SCHILY.xattr.user.overlay.opaque", &b"y"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("a/f").unwrap();
    h.set_size(2);
    h.set_mode(0o4750);
    h.set_uid(1000);
    h.set_gid(2000);
    h.set_mtime(1_234_567);
    h.set_entry_type(T::Regular);
    h.set_cksum();
    l.0.append(&h, &b"hi"[..]).unwrap();
    l.symlink("a/l", "f")
        .hardlink("a/h", "a/f")
        .raw(T::Fifo, "a/p", None, b"", 0o600);
    l.symlink("abs", "/")
        .file("abs/through-abs", b"x")
        .file("./dot-slash", b"y");
    let tar = l.bytes();
    let applied = s.apply(&tar, ApplyMode::Mounted).unwrap();
    assert_eq!(applied.diff_id, Digest::of(&tar));
    assert_eq!(applied.tar_size, tar.len() as u64);
    assert_eq!(applied.content_size, 4);
    let r = s.root();
    let m = fs::symlink_metadata(r.join("a/f")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o4750, 1000, 2000, 1_234_567)
    );
    assert_eq!(
        getxattr(&r.join("a/f"), "user.k").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(getxattr(&r.join("a/f"), "trusted.overlay.redirect"), None);
    assert_eq!(getxattr(&r.join("a/f"), "user.overlay.opaque"), None);
    assert_eq!(fs::read_link(r.join("a/l")).unwrap(), Path::new("f"));
    assert_eq!(fs::metadata(r.join("a/h")).unwrap().ino(), m.ino());
    assert!(fs::symlink_metadata(r.join("a/p"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fs::metadata(r.join("a")).unwrap().mtime(), 1_000_000);
    assert_eq!(fs::read(r.join("through-abs")).unwrap(), b"x");
    assert_eq!(fs::read(r.join("dot-slash")).unwrap(), b"y");
    s.untouched();

    // gzip gives the same diff id (of the uncompressed tar).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let s2 = Sandbox::new();
    assert_eq!(
        s2.apply(&gz, ApplyMode::OverlayUpper).unwrap().diff_id,
        Digest::of(&tar)
    );
    assert_eq!(
        diff_id(&gz[..]).unwrap(),
        (Digest::of(&tar), tar.len() as u64)
    );
}

/// Each malicious layer is refused with an error naming the entry, and nothing outside changes.
#[test]
fn malicious_layers_write_nothing_outside() {
    type Case = (&'static str, fn(&mut Layer));
    let cases: Vec<Case> = vec![
        ("../evil", |l| {
            l.file("../evil", b"x");
        }),
        ("/abs-evil", |l| {
            l.file("/abs-evil", b"x");
        }),
        ("a/../../evil", |l| {
            l.file("a/../../evil", b"x");
        }),
        ("up/evil", |l| {
            l.symlink("up", "..").file("up/evil", b"x");
        }),
        ("out/evil", |l| {
            l.symlink("out", "../outside").file("out/evil", b"x");
        }),
        ("s1/evil", |l| {
            l.symlink("s2", "d/../../outside")
                .dir("d/")
                .symlink("s1", "s2")
                .file("s1/evil", b"x");
        }),
        ("deep/x/evil", |l| {
            l.dir("deep/")
                .symlink("deep/x", "../../outside")
                .file("deep/x/evil", b"x");
        }),
        ("out/sub/", |l| {
            l.symlink("out", "../outside").dir("out/sub/");
        }),
        ("h", |l| {
            l.hardlink("h", "../outside/secret");
        }),
        ("h2", |l| {
            l.symlink("out", "../outside").hardlink("h2", "out/secret");
        }),
        ("h3", |l| {
            l.hardlink("h3", "/nonexistent");
        }),
        ("blk", |l| {
            let mut h = tar::Header::new_gnu();
            h.set_path("blk").unwrap();
            h.set_entry_type(T::Block);
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
            h.set_size(0);
            h.set_mode(0o600);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            l.0.append(&h, &b""[..]).unwrap();
        }),
        ("null", |l| {
            let mut h = tar::Header::new_gnu();
            h.set_path("null").unwrap();
            h.set_entry_type(T::Char);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_size(0);
            h.set_mode(0o600);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            l.0.append(&h, &b""[..]).unwrap();
        }),
        ("d/.wh..", |l| {
            l.dir("d/").file("d/.wh..", b"");
        }),
        ("up/.wh.outside", |l| {
            l.symlink("up", "..").file("up/.wh.outside", b"");
        }),
    ];
    for mode in [
        ApplyMode::Mounted,
        ApplyMode::OverlayUpper,
        ApplyMode::AufsBranch,
    ] {
        for (entry, build) in &cases {
            if mode == ApplyMode::AufsBranch && entry.contains(".wh.") && !entry.starts_with("up") {
                continue; // stored as a plain name there
            }
            let s = Sandbox::new();
            let mut l = Layer::new();
            build(&mut l);
            let err = s.apply(&l.bytes(), mode).expect_err(entry);
            let msg = err.to_string();
            assert!(
                matches!(err, ApplyError::Refused { .. }),
                "{entry} in {mode:?}: {msg}"
            );
            assert!(
                msg.contains(&format!("{entry:?}")),
                "{msg} does not name {entry}"
            );
            s.untouched();
        }
    }
}

/// An entry over a symlink that points out replaces the symlink rather than writing through it.
#[test]
fn entries_replace_symlinks_instead_of_following_them() {
    let s = Sandbox::new();
    let mut l = Layer::new();
    l.symlink("link", "../outside/secret").file("link", b"mine");
    l.symlink("dirlink", "../outside").dir("dirlink/");
    l.symlink("ln2", "../outside/secret")
        .raw(T::Fifo, "ln2", None, b"", 0o600);
    s.apply(&l.bytes(), ApplyMode::Mounted).unwrap();
    assert_eq!(fs::read(s.root().join("link")).unwrap(), b"mine");
    assert!(fs::symlink_metadata(s.root().join("dirlink"))
        .unwrap()
        .is_dir());
    s.untouched();
}

#[test]
fn whiteouts_in_each_mode() {
    let lower = |r: &Path| {
        fs::create_dir_all(r.join("d")).unwrap();
        fs::write(r.join("x"), b"").unwrap();
        fs::write(r.join("keep"), b"").unwrap();
        fs::write(r.join("d/old"), b"").unwrap();
    };
    let mut l = Layer::new();
    l.file(".wh.x", b"")
        .dir("d/")
        .file("d/new", b"n")
        .file("d/.wh..wh..opq", b"");
    l.file(".wh..wh.plnk", b"");
    let tar = l.bytes();

    let s = Sandbox::new();
    lower(&s.root());
    s.apply(&tar, ApplyMode::Mounted).unwrap();
    let r = s.root();
    assert!(!r.join("x").exists() && r.join("keep").exists());
    assert!(!r.join("d/old").exists() && r.join("d/new").exists());
    assert!(!r.join(".wh.x").exists() && !r.join(".wh..wh.plnk").exists());
    s.untouched();

    let s = Sandbox::new();
    s.apply(&tar, ApplyMode::OverlayUpper).unwrap();
    let r = s.root();
    let m = fs::symlink_metadata(r.join("x")).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
    assert_eq!(
        getxattr(&r.join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(r.join("d/new").exists() && !r.join(".wh.x").exists());
    s.untouched();

    let s = Sandbox::new();
    s.apply(&tar, ApplyMode::AufsBranch).unwrap();
    let r = s.root();
    assert!(r.join(".wh.x").is_file() && r.join("d/.wh..wh..opq").is_file());
    assert!(r.join(".wh..wh.plnk").is_file());
    s.untouched();
}

#[test]
fn truncated_and_corrupt_layers_fail() {
    let mut l = Layer::new();
    l.file("big", &[7u8; 10_000]);
    let tar = l.bytes();
    let s = Sandbox::new();
    let e = s.apply(&tar[..4000], ApplyMode::Mounted).unwrap_err();
    assert!(matches!(e, ApplyError::Read(_)), "{e}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let e = s
        .apply(&gz[..gz.len() / 2], ApplyMode::Mounted)
        .unwrap_err();
    assert!(matches!(e, ApplyError::Read(_)), "{e}");
    s.untouched();
}

/// Empty numeric header fields read as 0 (as Go's archive/tar reads them); garbage is refused.
#[test]
fn empty_header_fields_are_zero_and_garbage_is_refused() {
    let header = |mode: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path("f").unwrap();
        h.set_entry_type(T::Regular);
        h.set_size(0);
        h.as_old_mut().mode = [0; 8];
        h.as_old_mut().mode[..mode.len()].copy_from_slice(mode);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b""[..]).unwrap();
        b.into_inner().unwrap()
    };
    let s = Sandbox::new();
    s.apply(&header(b""), ApplyMode::Mounted).unwrap();
    let m = fs::symlink_metadata(s.root().join("f")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.mtime()), (0, 0, 0));
    let e = s.apply(&header(b"zz"), ApplyMode::Mounted).unwrap_err();
    assert!(e.to_string().contains("corrupt mode"), "{e}");
    s.untouched();
}

/// Random corruption of a layer (a cheap stand-in for a fuzzer): applying never panics, and
/// whatever happens, nothing outside the root changes.
#[test]
fn mutated_layers_never_panic_or_escape() {
    use rand::{Rng, SeedableRng};
    let mut l = Layer::new();
    l.dir("a/")
        .file("a/f", b"hello")
        .symlink("a/l", "../../outside")
        .hardlink("a/h", "a/f");
    l.file("a/.wh.x", b"")
        .file("a/.wh..wh..opq", b"")
        .dir("b/")
        .file("b/g", &[1u8; 700]);
    let tar = l.bytes();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..400 {
        let mut t = tar.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..t.len());
            t[i] = rng.random();
        }
        if round % 5 == 0 {
            t.truncate(rng.random_range(0..t.len()));
        }
        let s = Sandbox::new();
        let mode = [
            ApplyMode::Mounted,
            ApplyMode::OverlayUpper,
            ApplyMode::AufsBranch,
        ][round % 3];
        let _ = s.apply(&t, mode);
        s.untouched();
    }
}

/// A known diff id skips hashing an uncompressed tar, but never a gzipped one.
#[test]
fn known_diff_ids_only_for_uncompressed_tars() {
    let mut l = Layer::new();
    l.file("f", b"x");
    let tar = l.bytes();
    let claimed = Digest::of(b"claimed");
    let s = Sandbox::new();
    let a = apply_layer_known(&tar[..], &s.root(), ApplyMode::Mounted, Some(&claimed)).unwrap();
    assert_eq!((a.diff_id, a.tar_size), (claimed.clone(), tar.len() as u64));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let a = apply_layer_known(&gz[..], &s.root(), ApplyMode::Mounted, Some(&claimed)).unwrap();
    assert_eq!(a.diff_id, Digest::of(&tar));
}
