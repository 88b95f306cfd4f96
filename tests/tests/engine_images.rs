//! End-to-end: the image verbs of `strata` against a real `stratad` — save/load round trips with
//! identical digests, shared layers unpacked once, `rmi` semantics, commit, crash cleanup, and
//! bad archives and malicious layers refused with one clear line, nothing written outside the
//! rootfs and nothing left behind. Interoperability with skopeo, umoci and containerd is in
//! `engine_images_interop.rs`.

mod images_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use images_support::*;
use serde_json::Value;
use strata_tests::engine::{Engine, BUSYBOX};
use strata_tests::harness::unique_name;
use strata_tests::image::{busybox_layer, docker_archive, Entry};

#[test]
fn engine_images_save_load_round_trip_keeps_digests() {
    let e = engine();
    let e2 = Engine::start(&[]).unwrap_or_else(|e| panic!("{e:?}"));
    check((|| {
        let app = app_archive(&e, "example.com/team/app:1.0")?;
        e.ok(&["load", "-i", &app.to_string_lossy()])?;
        ensure!(e.ok(&["run", "--rm", "example.com/team/app:1.0"])? == "from the app layer\n");
        let out = e.ok(&[
            "run",
            "--rm",
            "example.com/team/app:1.0",
            "sh",
            "-c",
            "test -e /etc/gone && echo present || echo deleted",
        ])?;
        ensure!(out == "deleted\n", "the whiteout did not delete: {out:?}");
        let dir = e.scratch("saves")?;
        for format in ["docker", "oci"] {
            let f = dir.join(format!("both-{format}.tar"));
            e.ok(&[
                "save",
                "-o",
                &f.to_string_lossy(),
                "--format",
                format,
                BUSYBOX,
                "example.com/team/app:1.0",
            ])?;
            let fresh = Engine::start(&[])?;
            let loaded = fresh.ok(&["load", "-i", &f.to_string_lossy()])?;
            ensure!(
                loaded.contains("Loaded image: busybox:latest")
                    && loaded.contains("Loaded image: example.com/team/app:1.0"),
                "{loaded}"
            );
            for image in [BUSYBOX, "example.com/team/app:1.0"] {
                let (a, b) = (inspect(&e, image)?, inspect(&fresh, image)?);
                for key in ["Id", "RepoTags", "RepoDigests", "RootFS", "Config", "Size"] {
                    ensure!(
                        a[key] == b[key],
                        "{format} {image} {key}: {} vs {}",
                        a[key],
                        b[key]
                    );
                }
                ensure!(a["Metadata"]["ManifestDigest"] == b["Metadata"]["ManifestDigest"]);
            }
            ensure!(
                fresh.ok(&["run", "--rm", "example.com/team/app:1.0"])? == "from the app layer\n"
            );
            // Saving again from the fresh root writes the very same bytes.
            let g = dir.join(format!("again-{format}.tar"));
            fresh.ok(&[
                "save",
                "-o",
                &g.to_string_lossy(),
                "--format",
                format,
                BUSYBOX,
                "example.com/team/app:1.0",
            ])?;
            ensure!(
                fs::read(&f)? == fs::read(&g)?,
                "{format} save is not reproducible"
            );
        }
        // stdin, gzip-compressed.
        let f = dir.join("both-docker.tar");
        run(Command::new("gzip").arg("-k").arg("-f").arg(&f))?;
        let gz = fs::File::open(dir.join("both-docker.tar.gz"))?;
        let out = e2.command(&["load"]).stdin(Stdio::from(gz)).output()?;
        ensure!(
            out.status.success(),
            "load from stdin: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            inspect(&e2, "example.com/team/app:1.0")?["Id"]
                == inspect(&e, "example.com/team/app:1.0")?["Id"]
        );
        Ok(())
    })());
}

#[test]
fn engine_images_shared_layers_are_unpacked_once() {
    let e = engine();
    check((|| {
        ensure!(
            snapshots(&e) == 1,
            "busybox: one layer snapshot, got {}",
            snapshots(&e)
        );
        let app = app_archive(&e, "app:1")?;
        e.ok(&["load", "-i", &app.to_string_lossy()])?;
        // app's base layer differs from busybox's (it has /etc/gone), so two more.
        ensure!(snapshots(&e) == 3, "got {}", snapshots(&e));
        let app2 = app_archive(&e, "app:2")?;
        e.ok(&["load", "-i", &app2.to_string_lossy()])?;
        ensure!(
            snapshots(&e) == 3,
            "the same layers again made snapshots: {}",
            snapshots(&e)
        );
        e.ok(&["rmi", "app:1"])?; // app:2 still names it: only untagged
        ensure!(snapshots(&e) == 3);
        let out = e.ok(&["rmi", "app:2"])?;
        ensure!(
            out.contains("Untagged: app:2") && out.contains("Deleted: sha256:"),
            "{out}"
        );
        ensure!(
            snapshots(&e) == 1,
            "layers of a removed image stay: {}",
            snapshots(&e)
        );
        Ok(())
    })());
}

#[test]
fn engine_images_malicious_layers_are_refused_and_write_nothing_outside() {
    let e = engine();
    check((|| {
        let victim = PathBuf::from("/tmp").join(unique_name("strata-victim-"));
        fs::create_dir_all(&victim)?;
        fs::write(victim.join("secret"), "secret")?;
        let v = victim.to_string_lossy().trim_start_matches('/').to_string();
        let up = "../".repeat(12);
        let cases: Vec<(&str, Build)> = vec![
            (
                "'..' component",
                Box::new(|b| {
                    raw_entry(
                        b,
                        tar::EntryType::Regular,
                        &format!("{up}{v}/dotdot"),
                        "",
                        b"x",
                        None,
                    )
                }),
            ),
            (
                "absolute path",
                Box::new(|b| {
                    raw_entry(
                        b,
                        tar::EntryType::Regular,
                        &format!("/{v}/abs"),
                        "",
                        b"x",
                        None,
                    )
                }),
            ),
            (
                "symlink out",
                Box::new(|b| {
                    raw_entry(
                        b,
                        tar::EntryType::Symlink,
                        "out",
                        &format!("{up}{v}"),
                        b"",
                        None,
                    );
                    raw_entry(
                        b,
                        tar::EntryType::Regular,
                        "out/through-link",
                        "",
                        b"x",
                        None,
                    );
                }),
            ),
            (
                "hard link out",
                Box::new(|b| {
                    raw_entry(
                        b,
                        tar::EntryType::Link,
                        "hl",
                        &format!("{up}{v}/secret"),
                        b"",
                        None,
                    )
                }),
            ),
            (
                "hard link through a symlink",
                Box::new(|b| {
                    raw_entry(
                        b,
                        tar::EntryType::Symlink,
                        "out2",
                        &format!("{up}{v}"),
                        b"",
                        None,
                    );
                    raw_entry(b, tar::EntryType::Link, "hl2", "out2/secret", b"", None);
                }),
            ),
            (
                "block device",
                Box::new(|b| raw_entry(b, tar::EntryType::Block, "sda", "", b"", Some((8, 0)))),
            ),
            (
                "char device",
                Box::new(|b| raw_entry(b, tar::EntryType::Char, "mem", "", b"", Some((1, 1)))),
            ),
        ];
        let before_blobs = blobs(&e);
        let before_snaps = snapshots(&e);
        let before_images = e.ok(&["images", "-q"])?;
        for (what, build) in &cases {
            let mut b = tar::Builder::new(Vec::new());
            build(&mut b);
            let evil = b.into_inner()?;
            let path = e.scratch("evil")?.join("evil.tar");
            docker_archive(
                &path,
                "evil:latest",
                &[busybox_layer(Vec::new())?, evil],
                &["sh"],
            )?;
            let (code, err) = e.fails(&["load", "-i", &path.to_string_lossy()])?;
            ensure!(
                code != 0 && err.trim().lines().count() == 1,
                "{what}: {err:?}"
            );
            ensure!(err.contains("refused"), "{what}: {err}");
            let mut left: Vec<String> = fs::read_dir(&victim)?
                .filter_map(|x| x.ok()?.file_name().into_string().ok())
                .collect();
            left.sort();
            ensure!(
                left == ["secret"],
                "{what}: wrote outside the rootfs: {left:?}"
            );
            ensure!(fs::read_to_string(victim.join("secret"))? == "secret");
            ensure!(blobs(&e) == before_blobs, "{what}: blobs left behind");
            ensure!(
                snapshots(&e) == before_snaps,
                "{what}: snapshots left behind"
            );
            ensure!(
                e.ok(&["images", "-q"])? == before_images,
                "{what}: an image was made"
            );
        }
        fs::remove_dir_all(&victim)?;
        Ok(())
    })());
}

#[test]
fn engine_images_bad_archives_fail_cleanly() {
    let e = engine();
    check((|| {
        let dir = e.scratch("bad")?;
        let good = dir.join("good.tar");
        e.ok(&[
            "save",
            "--format",
            "oci",
            "-o",
            &good.to_string_lossy(),
            BUSYBOX,
        ])?;
        e.ok(&["rmi", BUSYBOX])?;
        ensure!(
            blobs(&e).is_empty() && snapshots(&e) == 0,
            "rmi left {:?}",
            blobs(&e)
        );
        let bytes = fs::read(&good)?;
        let truncated = dir.join("truncated.tar");
        fs::write(&truncated, &bytes[..bytes.len() / 2])?;
        // A blob whose content does not match its name: flip a byte in the layer's data.
        let corrupt = dir.join("corrupt.tar");
        let mut c = bytes.clone();
        let at = c
            .windows(7)
            .position(|w| w == b"\x7fELF\x02\x01\x01")
            .context("no ELF in the archive")?;
        c[at + 100] ^= 0xff;
        fs::write(&corrupt, &c)?;
        let garbage = dir.join("garbage.tar");
        fs::write(&garbage, "not an archive at all")?;
        for (f, want) in [
            (&truncated, "truncated"),
            (&corrupt, "digest"),
            (&garbage, ""),
        ] {
            let (code, err) = e.fails(&["load", "-i", &f.to_string_lossy()])?;
            ensure!(
                code != 0 && err.trim().lines().count() == 1,
                "{}: {err:?}",
                f.display()
            );
            ensure!(err.contains(want), "{}: {err}", f.display());
            ensure!(
                blobs(&e).is_empty(),
                "{}: blobs left: {:?}",
                f.display(),
                blobs(&e)
            );
            ensure!(snapshots(&e) == 0 && e.ok(&["images", "-q"])?.is_empty());
        }
        let (_, err) = e.fails(&["load", "-i", "/nonexistent/archive.tar"])?;
        ensure!(err.contains("/nonexistent/archive.tar"), "{err}");
        e.ok(&["load", "-i", &good.to_string_lossy()])?;
        ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "ok"])? == "ok\n");
        Ok(())
    })());
}

#[test]
fn engine_images_tag_history_inspect_and_rmi() {
    let e = engine();
    check((|| {
        e.ok(&["tag", BUSYBOX, "me/box:v1"])?;
        let list = e.ok(&["images"])?;
        ensure!(
            list.starts_with("REPOSITORY") && list.contains("me/box") && list.contains("busybox"),
            "{list}"
        );
        let json: Vec<Value> = e
            .ok(&["images", "--format", "json"])?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        ensure!(json.len() == 2 && json.iter().all(|j| j["ID"] == json[0]["ID"]));
        let doc = inspect(&e, "me/box:v1")?;
        ensure!(
            doc["RepoTags"] == serde_json::json!(["busybox:latest", "me/box:v1"]),
            "{}",
            doc["RepoTags"]
        );
        ensure!(
            doc["GraphDriver"]["Name"] == "overlay2"
                && doc["Os"] == "linux"
                && doc["RootFS"]["Type"] == "layers"
        );
        let id = doc["Id"].as_str().unwrap_or("").to_string();
        let short = &id["sha256:".len().."sha256:".len() + 12];
        ensure!(inspect(&e, short)?["Id"] == id.as_str(), "id prefix");
        let hist = e.ok(&["history", BUSYBOX])?;
        ensure!(
            hist.starts_with("IMAGE") && hist.contains("strata test") && hist.contains(short),
            "{hist}"
        );
        for bad in [
            ["tag", "nosuch", "x"].as_slice(),
            &["tag", BUSYBOX, "Bad:Name"],
            &["rmi", "nosuch"],
            &["history", "nosuch"],
        ] {
            let (code, err) = e.fails(bad)?;
            ensure!(
                code != 0 && err.trim().lines().count() == 1,
                "{bad:?}: {err}"
            );
        }
        // An id with two names needs -f; a container's image needs -f.
        let (_, err) = e.fails(&["rmi", short])?;
        ensure!(err.contains("several repositories"), "{err}");
        e.ok(&["create", "--name", "user", BUSYBOX, "true"])?;
        ensure!(e.ok(&["rmi", "me/box:v1"])?.contains("Untagged: me/box:v1"));
        let (_, err) = e.fails(&["rmi", BUSYBOX])?;
        ensure!(err.contains("container"), "{err}");
        e.ok(&["rm", "user"])?;
        let out = e.ok(&["rmi", BUSYBOX])?;
        ensure!(out.contains("Deleted: sha256:"), "{out}");
        Ok(())
    })());
}

/// `strata import` of a flat rootfs tarball runs.
#[test]
fn engine_images_import_makes_a_runnable_image() {
    let e = Engine::start(&[]).unwrap_or_else(|e| panic!("{e:?}"));
    check((|| {
        let dir = e.scratch("import")?;
        let rootfs: &Path = &dir.join("rootfs.tar");
        fs::write(
            rootfs,
            busybox_layer(vec![Entry::File(
                "etc/motd".into(),
                b"imported\n".to_vec(),
                0o644,
            )])?,
        )?;
        let id = e.ok(&["import", &rootfs.to_string_lossy(), "imported:1"])?;
        ensure!(id.trim().starts_with("sha256:"), "{id}");
        ensure!(e.ok(&["run", "--rm", "imported:1", "/bin/cat", "/etc/motd"])? == "imported\n");
        let hist = e.ok(&["history", "imported:1"])?;
        ensure!(hist.contains("Imported from tarball"), "{hist}");
        // Not a tar, or a tar that leaves the rootfs: one line, nothing kept.
        let before = blobs(&e);
        let garbage = dir.join("garbage.tar");
        fs::write(&garbage, vec![7u8; 5000])?;
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(
            &mut b,
            tar::EntryType::Regular,
            "../../../../../../tmp/strata-import-evil",
            "",
            b"x",
            None,
        );
        let evil = dir.join("evil.tar");
        fs::write(&evil, b.into_inner()?)?;
        for f in [&garbage, &evil] {
            let (code, err) = e.fails(&["import", &f.to_string_lossy(), "bad:1"])?;
            ensure!(code != 0 && err.trim().lines().count() == 1, "{err:?}");
            ensure!(blobs(&e) == before, "{}: blobs left behind", f.display());
        }
        ensure!(!Path::new("/tmp/strata-import-evil").exists());
        let (_, err) = e.fails(&["history", "bad:1"])?;
        ensure!(err.contains("no such image"), "{err}");
        Ok(())
    })());
}

/// An extract snapshot left by an unpack that a crash interrupted is removed at the next start.
#[test]
fn engine_images_restart_removes_interrupted_unpacks() {
    use strata_proto::snapshots::snapshots_client::SnapshotsClient;
    use strata_proto::snapshots::PrepareSnapshotRequest;
    let mut e = engine();
    check((|| {
        let base = inspect(&e, BUSYBOX)?["RootFS"]["Layers"][0]
            .as_str()
            .unwrap_or("")
            .to_string();
        let plugin = e.run_root.join("plugins/overlay2.sock");
        block_on(async {
            SnapshotsClient::new(unix_channel(plugin).await?)
                .prepare(PrepareSnapshotRequest {
                    snapshotter: "overlay2".into(),
                    key: "extract-0123456789abcdef sha256:feed".into(),
                    parent: base,
                    labels: Default::default(),
                })
                .await?;
            Ok(())
        })?;
        ensure!(snapshots(&e) == 2);
        e.kill9()?;
        e.spawn()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while snapshots(&e) != 1 {
            ensure!(
                std::time::Instant::now() < deadline,
                "the extract snapshot stayed"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "ok"])? == "ok\n");
        // A forced rmi under a container keeps the layer the container sits on; once the
        // container is gone, the next start removes it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !e.ok(&["ps", "-aq"])?.is_empty() {
            ensure!(
                std::time::Instant::now() < deadline,
                "the --rm container stayed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let id = inspect(&e, BUSYBOX)?["Id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        e.ok(&["create", "--name", "sitter", BUSYBOX, "true"])?;
        let out = e.ok(&["rmi", "-f", &id])?;
        ensure!(out.contains(&format!("Deleted: {id}")), "{out}");
        ensure!(
            snapshots(&e) == 2,
            "layer and container snapshots: {}",
            snapshots(&e)
        );
        e.ok(&["rm", "sitter"])?;
        ensure!(snapshots(&e) == 1, "the layer stays until a restart");
        e.stop()?;
        e.spawn()?;
        while snapshots(&e) != 0 {
            ensure!(
                std::time::Instant::now() < deadline,
                "the orphan layer stayed"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    })());
}

#[test]
fn engine_images_commit_makes_an_image_with_the_changes() {
    let e = engine();
    check((|| {
        e.ok(&[
            "run",
            "--name",
            "changer",
            "-e",
            "COMMITTED=yes",
            "-w",
            "/tmp",
            BUSYBOX,
            "sh",
            "-c",
            "echo changed > /etc/new; rm /bin/ls; mkdir -p /data; echo d > /data/f",
        ])?;
        let id = e
            .ok(&[
                "commit",
                "-a",
                "tester",
                "-m",
                "a test commit",
                "changer",
                "committed:1",
            ])?
            .trim()
            .to_string();
        ensure!(id.starts_with("sha256:"), "{id}");
        let out = e.ok(&[
            "run",
            "--rm",
            "committed:1",
            "sh",
            "-c",
            "cat /etc/new /data/f; test -e /bin/ls && echo ls-present || echo ls-deleted",
        ])?;
        ensure!(out == "changed\nd\nls-deleted\n", "{out:?}");
        let doc = inspect(&e, "committed:1")?;
        ensure!(
            doc["Author"] == "tester" && doc["Comment"] == "a test commit",
            "{doc}"
        );
        ensure!(doc["RootFS"]["Layers"].as_array().map(Vec::len) == Some(2));
        // As Docker's commit: the container's command, environment and working directory.
        let cfg = &doc["Config"];
        ensure!(cfg["Cmd"][0] == "sh" && cfg["Cmd"][1] == "-c", "{cfg}");
        ensure!(cfg["WorkingDir"] == "/tmp", "{cfg}");
        let env = cfg["Env"].as_array().cloned().unwrap_or_default();
        ensure!(env.contains(&Value::from("COMMITTED=yes")), "{cfg}");
        ensure!(
            env.iter()
                .any(|v| v.as_str().is_some_and(|s| s.starts_with("PATH="))),
            "{cfg}"
        );
        let out = e.ok(&[
            "run",
            "--rm",
            "committed:1",
            "sh",
            "-c",
            "echo $COMMITTED $(pwd)",
        ])?;
        ensure!(out == "yes /tmp\n", "{out:?}");
        let hist = e.ok(&["history", "committed:1"])?;
        ensure!(hist.contains("strata commit"), "{hist}");
        // Save and load it elsewhere: the same image.
        let f = e.scratch("commit")?.join("c.tar");
        e.ok(&["save", "-o", &f.to_string_lossy(), "committed:1"])?;
        // The container's layer has its changes and not the mount points the runtime made for
        // the engine's /etc files (as Docker's init layer keeps them out of a commit).
        let layer = last_layer_entries(&f)?;
        ensure!(
            layer.iter().any(|n| n == "etc/new") && layer.iter().any(|n| n == "data/f"),
            "{layer:?}"
        );
        ensure!(
            !layer
                .iter()
                .any(|n| n.starts_with("etc/host") || n == "etc/resolv.conf"),
            "{layer:?}"
        );
        let fresh = Engine::start(&[])?;
        fresh.ok(&["load", "-i", &f.to_string_lossy()])?;
        ensure!(inspect(&fresh, "committed:1")?["Id"] == id.as_str());
        ensure!(fresh.ok(&["run", "--rm", "committed:1", "cat", "/etc/new"])? == "changed\n");
        Ok(())
    })());
}

/// The entry names of the top layer of the one image in a Docker `save` archive.
fn last_layer_entries(archive: &Path) -> Result<Vec<String>> {
    let mut files = std::collections::HashMap::new();
    let mut a = tar::Archive::new(fs::File::open(archive)?);
    for entry in a.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        files.insert(name, data);
    }
    let manifest: Value =
        serde_json::from_slice(files.get("manifest.json").context("no manifest")?)?;
    let top = manifest[0]["Layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(Value::as_str)
        .context("no layers")?;
    let mut layer = tar::Archive::new(files.get(top).context("no top layer")?.as_slice());
    let mut names = Vec::new();
    for entry in layer.entries()? {
        names.push(
            entry?
                .path()?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string(),
        );
    }
    Ok(names)
}

/// `strata save IMAGE | strata load` between two engines, as Docker users pipe it.
#[test]
fn engine_images_save_to_stdout_piped_into_load() {
    let e = engine();
    let e2 = Engine::start(&[]).unwrap_or_else(|err| panic!("{err:?}"));
    check((|| {
        let mut save = e
            .command(&["save", BUSYBOX])
            .stdout(Stdio::piped())
            .spawn()?;
        let out = save.stdout.take().context("no stdout")?;
        let load = e2.command(&["load"]).stdin(Stdio::from(out)).output()?;
        ensure!(save.wait()?.success(), "save failed");
        ensure!(
            load.status.success(),
            "{}",
            String::from_utf8_lossy(&load.stderr)
        );
        ensure!(String::from_utf8_lossy(&load.stdout).contains("Loaded image: busybox:latest"));
        ensure!(inspect(&e, BUSYBOX)?["Id"] == inspect(&e2, BUSYBOX)?["Id"]);
        Ok(())
    })());
}

/// Runs `strata ARGS` to its end, or fails (killing it) if it has not ended within `secs`: for
/// a command that must not wait for something the test holds up.
fn ok_within(e: &Engine, args: &[&str], secs: u64) -> Result<String> {
    let mut child = e
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("strata {} did not end within {secs}s", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "strata {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A load reads its archive without holding up the other image changes: while its client is
/// still sending, `tag`, `commit`, `rmi` and a run of another image go on, and the load ends
/// well once the rest arrives.
#[test]
fn engine_images_load_does_not_hold_up_other_image_changes() {
    let e = engine();
    check((|| {
        let f = e.scratch("slowload")?.join("slow.tar");
        let layer = busybox_layer(vec![Entry::File("big".into(), vec![7u8; 1 << 20], 0o644)])?;
        docker_archive(&f, "slow:1", &[layer], &["sh"])?;
        // With a file no image names: stored while read, not kept.
        let data = with_extra_file(&fs::read(&f)?)?;
        let before = blobs(&e);
        let mut load = e
            .command(&["load"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = load.stdin.take().context("the load's stdin")?;
        std::io::Write::write_all(&mut stdin, &data[..data.len() / 2])?;
        std::io::Write::flush(&mut stdin)?;
        // The load waits for the rest of its archive; meanwhile:
        ok_within(&e, &["tag", BUSYBOX, "other:1"], 60)?;
        ok_within(&e, &["run", "--name", "c", BUSYBOX, "touch", "/x"], 60)?;
        ok_within(&e, &["commit", "c", "committed:1"], 60)?;
        ok_within(&e, &["rmi", "other:1"], 60)?;
        ensure!(
            ok_within(&e, &["run", "--rm", "committed:1", "ls", "/x"], 60)? == "/x\n",
            "the image committed meanwhile runs"
        );
        ensure!(
            load.try_wait()?.is_none(),
            "the load ended before its archive"
        );
        std::io::Write::write_all(&mut stdin, &data[data.len() / 2..])?;
        drop(stdin);
        let out = load.wait_with_output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let size = e.ok(&["run", "--rm", "slow:1", "sh", "-c", "busybox wc -c < /big"])?;
        ensure!(size.trim() == (1 << 20).to_string(), "{size:?}");
        // Its config, its layer and its manifest; the committed image's config, layer and
        // manifest; the extra file is gone.
        let added = blobs(&e).difference(&before).count();
        ensure!(added == 6, "{added} blobs added: {:?}", blobs(&e));
        Ok(())
    })());
}

/// A Docker archive with one more file in it, `extra/unused.bin`, that nothing names.
fn with_extra_file(archive: &[u8]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for entry in tar::Archive::new(archive).entries()? {
        let mut entry = entry?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        let mut h = entry.header().clone();
        b.append_data(&mut h, entry.path()?, data.as_slice())?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "extra/unused.bin", &b"extra"[..])?;
    Ok(b.into_inner()?)
}
