//! Archive tests: Docker legacy tarballs, our Docker and OCI saves read back identically, bad
//! archives leave nothing behind, and skopeo and umoci read what we write (and we read theirs).

use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::image::config::chain_ids;
use crate::image::save::{write_archive, Format, SaveImage};

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A two-layer image as a Docker legacy `save` tarball: (archive, config digest).
fn legacy_archive(tag: &str) -> (Vec<u8>, Digest) {
    let l1 = tar_of(&[("bin/hello", b"#!/bin/sh\necho hello\n"), ("etc/os", b"x")]);
    let l2 = tar_of(&[("etc/os", b"y"), ("etc/.wh.gone", b"")]);
    let diffs = [Digest::of(&l1), Digest::of(&l2)];
    let cfg = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/hello"], "Env": ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": diffs.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        "history": [{"created_by": "one"}, {"created_by": "two"}],
    }))
    .unwrap();
    let cd = Digest::of(&cfg);
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{}.json", cd.hex()),
        "RepoTags": [tag],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]))
    .unwrap();
    let cfg_name = format!("{}.json", cd.hex());
    let files: Vec<(&str, &[u8])> = vec![
        ("aaa/VERSION", b"1.0"),
        ("aaa/json", b"{}"),
        ("aaa/layer.tar", &l1),
        ("bbb/layer.tar", &l2),
        (&cfg_name, &cfg),
        ("manifest.json", &manifest),
    ];
    (tar_of(&files), cd)
}

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ContentStore::open(dir.path()).unwrap();
    (dir, s)
}

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("content/blobs/sha256"))
        .unwrap()
        .count()
}

fn to_save(img: &ArchiveImage) -> SaveImage {
    SaveImage {
        manifest: img.manifest_digest.clone(),
        manifest_media_type: img.manifest_media_type.clone(),
        config: img.config_digest.clone(),
        layers: img.layers.iter().map(|l| l.digest.clone()).collect(),
        references: img.tags.clone(),
    }
}

#[test]
fn legacy_docker_archive_loads_and_round_trips_in_both_formats() {
    let (tar, cd) = legacy_archive("busybox:1");
    let (dir, s) = store();
    let r = read_archive(&tar[..], &s).unwrap();
    assert_eq!(r.images.len(), 1);
    let img = &r.images[0];
    assert_eq!(img.config_digest, cd);
    assert_eq!(img.tags, [Reference::parse("busybox:1").unwrap()]);
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.layers[0].media_type, media::OCI_LAYER);
    assert_eq!(
        chain_ids(&[img.layers[0].diff_id.clone()])[0],
        img.layers[0].diff_id.to_string()
    );
    // config, two layers, the synthesized manifest; VERSION and json are not kept
    assert_eq!(blob_count(dir.path()), 4);
    assert_eq!(r.new_blobs.len(), 4);

    for format in [Format::Docker, Format::Oci] {
        let mut out = Vec::new();
        write_archive(&[to_save(img)], format, &s, &mut out).unwrap();
        let (_d2, s2) = store();
        let again = read_archive(&out[..], &s2).unwrap();
        assert_eq!(again.images, r.images, "{format:?} round trip");
        // And gzip-compressed.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&out).unwrap();
        let (_d3, s3) = store();
        assert_eq!(
            read_archive(&gz.finish().unwrap()[..], &s3).unwrap().images,
            r.images
        );
    }
}

#[test]
fn bad_archives_leave_no_blob_behind() {
    let (tar, _) = legacy_archive("x:1");
    let (dir, s) = store();
    // Truncated in the middle of a file, and at a header boundary (manifest.json lost).
    for cut in [tar.len() / 2, 1536, tar.len() - 2048] {
        let e = read_archive(&tar[..cut], &s).unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
        assert_eq!(blob_count(dir.path()), 0, "cut at {cut}: {e}");
    }
    // A blob whose content does not match its name.
    let r = read_archive(&tar[..], &s).unwrap();
    let mut out = Vec::new();
    write_archive(&[to_save(&r.images[0])], Format::Oci, &s, &mut out).unwrap();
    let (dir2, s2) = store();
    let layer = r.images[0].layers[0].digest.hex().to_string();
    let mut ar = tar::Archive::new(&out[..]);
    let mut b = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if e.path().unwrap().to_string_lossy().ends_with(&layer) {
            data[600] ^= 1;
        }
        let mut h = e.header().clone();
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    let bad = b.into_inner().unwrap();
    let e = read_archive(&bad[..], &s2).unwrap_err();
    assert!(e.to_string().contains("not the"), "{e}");
    assert_eq!(blob_count(dir2.path()), 0);
    // Not an archive at all.
    assert!(read_archive(&b"hello"[..], &s2).is_err());
    assert_eq!(blob_count(dir2.path()), 0);
    // A legacy layer that is not the config's diff id.
    let (tar, _) = legacy_archive("x:1");
    let pos = tar
        .windows(12)
        .position(|w| w == b"echo hello\n\0")
        .unwrap_or(0);
    let mut t2 = tar.clone();
    t2[pos] = b'E';
    let (dir3, s3) = store();
    let e = read_archive(&t2[..], &s3).unwrap_err();
    assert!(e.to_string().contains("diff id"), "{e}");
    assert_eq!(blob_count(dir3.path()), 0);
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// skopeo reads our Docker and OCI archives; umoci reads and unpacks our OCI layout; we load
/// what `skopeo copy` writes in both formats, with the same config and layers.
#[test]
fn interop_skopeo_and_umoci() {
    let (tar, cd) = legacy_archive("busybox:latest");
    let (dir, s) = store();
    let r = read_archive(&tar[..], &s).unwrap();
    let img = &r.images[0];
    let docker = dir.path().join("docker.tar");
    let oci = dir.path().join("oci.tar");
    let mut out = Vec::new();
    write_archive(&[to_save(img)], Format::Docker, &s, &mut out).unwrap();
    std::fs::write(&docker, &out).unwrap();
    let mut out = Vec::new();
    write_archive(&[to_save(img)], Format::Oci, &s, &mut out).unwrap();
    std::fs::write(&oci, &out).unwrap();

    let inspect = |what: String| -> serde_json::Value {
        serde_json::from_str(&run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(what)))
        .unwrap()
    };
    let config_of = |what: String| -> serde_json::Value {
        serde_json::from_str(&run(Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(what)))
        .unwrap()
    };
    for what in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}", oci.display()),
    ] {
        let cfg = config_of(what.clone());
        assert_eq!(cfg["config"]["Cmd"], json!(["/bin/hello"]), "{what}");
        let raw = inspect(what.clone());
        assert_eq!(raw["layers"].as_array().unwrap().len(), 2, "{what}: {raw}");
    }
    let raw = inspect(format!("oci-archive:{}", oci.display()));
    assert_eq!(raw["config"]["digest"], json!(cd.to_string()));

    // umoci: unpack the OCI layout and see the files, the whiteout applied.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&oci)
        .arg("-C")
        .arg(&layout));
    let tags = run(Command::new("umoci").args(["ls", "--layout"]).arg(&layout));
    assert!(tags.contains("busybox:latest"), "{tags}");
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:busybox:latest", layout.display()))
        .arg(&bundle));
    assert_eq!(std::fs::read(bundle.join("rootfs/etc/os")).unwrap(), b"y");
    assert!(bundle.join("rootfs/bin/hello").is_file());

    // What skopeo writes, we load: same config and layers.
    for (dest, name) in [
        (
            format!(
                "docker-archive:{}/s.tar:busybox:latest",
                dir.path().display()
            ),
            "s.tar",
        ),
        (
            format!(
                "oci-archive:{}/s-oci.tar:busybox:latest",
                dir.path().display()
            ),
            "s-oci.tar",
        ),
    ] {
        run(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("docker-archive:{}", docker.display()))
            .arg(&dest));
        let (_d, s2) = store();
        let f = std::fs::File::open(dir.path().join(name)).unwrap();
        let got = read_archive(f, &s2).unwrap();
        assert_eq!(got.images.len(), 1, "{dest}");
        let g = &got.images[0];
        if name == "s.tar" {
            assert_eq!(g.config_digest, cd, "{dest}");
        } else {
            // Converting to OCI, skopeo re-encodes the config; its content is the same.
            let c: serde_json::Value =
                serde_json::from_slice(&s2.read(&g.config_digest).unwrap()).unwrap();
            assert_eq!(c["config"]["Cmd"], json!(["/bin/hello"]), "{dest}");
        }
        assert_eq!(
            g.tags,
            [Reference::parse("busybox:latest").unwrap()],
            "{dest}"
        );
        let diffs: Vec<_> = g.layers.iter().map(|l| &l.diff_id).collect();
        assert_eq!(
            diffs,
            img.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()
        );
    }
}

/// Random corruption of an archive: reading it never panics, and a failed read leaves no blob.
#[test]
fn mutated_archives_never_panic_or_leave_blobs() {
    use rand::{Rng, SeedableRng};
    let (tar, _) = legacy_archive("m:1");
    let (_d, s0) = store();
    let img = read_archive(&tar[..], &s0).unwrap().images.remove(0);
    let mut oci = Vec::new();
    write_archive(&[to_save(&img)], Format::Oci, &s0, &mut oci).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..300 {
        let mut t = if round % 2 == 0 {
            tar.clone()
        } else {
            oci.clone()
        };
        for _ in 0..rng.random_range(1..6) {
            let i = rng.random_range(0..t.len());
            t[i] = rng.random();
        }
        let (dir, s) = store();
        if read_archive(&t[..], &s).is_err() {
            assert_eq!(blob_count(dir.path()), 0, "round {round}");
        }
    }
}
