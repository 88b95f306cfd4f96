//! End-to-end interoperability of the engine's images: skopeo and umoci read what `strata save`
//! writes and `strata load` reads what they write (and what umoci builds); the engine on
//! containerd's own snapshotters (the MOUNTED apply path); containerd importing our saves, and us
//! loading its exports.

mod images_support;
mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context};
use images_support::*;
use strata_tests::engine::{Engine, BUSYBOX};
use strata_tests::harness::unique_name;
use support::containerd::Containerd;

#[test]
fn engine_images_skopeo_and_umoci_interop() {
    let e = engine();
    check((|| {
        let dir = e.scratch("interop")?;
        let docker = dir.join("docker.tar");
        let oci = dir.join("oci.tar");
        e.ok(&["save", "-o", &docker.to_string_lossy(), BUSYBOX])?;
        e.ok(&[
            "save",
            "--format",
            "oci",
            "-o",
            &oci.to_string_lossy(),
            BUSYBOX,
        ])?;
        let id = inspect(&e, BUSYBOX)?["Id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let cfg = run(Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", docker.display())))?;
        ensure!(cfg.contains("\"sh\""), "{cfg}");
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", oci.display())))?;
        ensure!(
            raw.contains(&id),
            "the OCI manifest does not name config {id}: {raw}"
        );
        let layout = dir.join("layout");
        fs::create_dir_all(&layout)?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(&oci)
            .arg("-C")
            .arg(&layout))?;
        let tags = run(Command::new("umoci").args(["ls", "--layout"]).arg(&layout))?;
        ensure!(tags.contains("busybox:latest"), "{tags}");
        let bundle = dir.join("bundle");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:busybox:latest", layout.display()))
            .arg(&bundle))?;
        ensure!(bundle.join("rootfs/bin/busybox").is_file());
        // An OCI image layout directory loads as it is.
        e.ok(&["tag", BUSYBOX, "kept:1"])?;
        e.ok(&["rmi", BUSYBOX])?;
        let out = e.ok(&["load", "-i", &layout.to_string_lossy()])?;
        ensure!(out.contains("Loaded image: busybox:latest"), "{out}");
        ensure!(inspect(&e, BUSYBOX)?["Id"] == id.as_str());
        // What skopeo writes, we load and run.
        for (dest, file, name) in [
            ("docker-archive", "sk-docker.tar", "skopeo/docker:1"),
            ("oci-archive", "sk-oci.tar", "skopeo/oci:1"),
        ] {
            let path = dir.join(file);
            run(Command::new("skopeo")
                .args(["copy", "--quiet"])
                .arg(format!("docker-archive:{}", docker.display()))
                .arg(format!("{dest}:{}:{name}", path.display())))?;
            let out = e.ok(&["load", "-i", &path.to_string_lossy()])?;
            ensure!(
                out.contains(&format!("Loaded image: {name}")),
                "{dest}: {out}"
            );
            ensure!(e.ok(&["run", "--rm", name, "echo", "hi"])? == "hi\n");
        }
        Ok(())
    })());
}

/// The MOUNTED apply mode end to end: the engine on containerd's own native and overlayfs
/// snapshotters (served by `strataref`, which has no Strata capabilities, so layers are applied
/// through a temporary mount of the snapshot), where a whiteout must really delete.
#[test]
fn engine_images_mounted_apply_on_containerd_snapshotters() {
    let reference = strata_tests::harness::containerd_reference_binary();
    for kind in ["native", "overlayfs"] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let socket = PathBuf::from("/run")
            .join(unique_name("sref-"))
            .with_extension("sock");
        let mut child = Command::new(&reference)
            .args(["-kind", kind, "-root"])
            .arg(dir.path().join("snap"))
            .arg("-socket")
            .arg(&socket)
            .spawn()
            .unwrap_or_else(|e| panic!("start strataref: {e}"));
        let result = (|| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !socket.exists() {
                ensure!(
                    std::time::Instant::now() < deadline,
                    "strataref did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let config = dir.path().join("config.toml");
            fs::write(
                &config,
                format!("[storage]\naddress = \"{}\"\n", socket.display()),
            )?;
            let e = Engine::start(&["--config", &config.to_string_lossy()])?;
            e.load_busybox()?;
            let app = app_archive(&e, "app:1")?;
            e.ok(&["load", "-i", &app.to_string_lossy()])?;
            let out = e.ok(&[
                "run",
                "--rm",
                "app:1",
                "sh",
                "-c",
                "cat /app/msg; test -e /etc/gone && echo present || echo deleted; ls -a /etc",
            ])?;
            ensure!(
                out.starts_with("from the app layer\ndeleted\n"),
                "{kind}: {out:?}"
            );
            ensure!(
                !out.contains(".wh."),
                "{kind}: a whiteout file is visible: {out:?}"
            );
            ensure!(inspect(&e, "app:1")?["GraphDriver"]["Name"] == "external");
            // `run --rm` may return a moment before its container's record is gone.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !e.ok(&["ps", "-aq"])?.is_empty() {
                ensure!(
                    std::time::Instant::now() < deadline,
                    "the --rm container stayed"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            e.ok(&["rmi", "app:1"])?;
            ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "ok"])? == "ok\n");
            Ok(())
        })();
        let _ = child.kill();
        let _ = child.wait();
        strata_tests::mounts::unmount_all_under(dir.path());
        let _ = fs::remove_file(&socket);
        check(result);
    }
}

/// An image umoci builds (an OCI layout whose ref name is only a tag, gzip layers, stale blobs
/// umoci keeps) loads untagged, runs by id, and can be tagged.
#[test]
fn engine_images_load_what_umoci_builds() {
    let e = Engine::start(&[]).unwrap_or_else(|e| panic!("{e:?}"));
    check((|| {
        let dir = e.scratch("umoci")?;
        let layout = dir.join("layout");
        let bundle = dir.join("bundle");
        let image = format!("{}:latest", layout.display());
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout))?;
        run(Command::new("umoci").args(["new", "--image", &image]))?;
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle))?;
        fs::create_dir_all(bundle.join("rootfs/bin"))?;
        fs::copy("/bin/busybox", bundle.join("rootfs/bin/busybox"))?;
        for applet in ["sh", "echo"] {
            std::os::unix::fs::symlink("busybox", bundle.join("rootfs/bin").join(applet))?;
        }
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle))?;
        run(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.cmd",
            "echo",
            "--config.cmd",
            "from-umoci",
        ]))?;
        let out = e.ok(&["load", "-i", &layout.to_string_lossy()])?;
        let id = out
            .trim()
            .strip_prefix("Loaded image ID: ")
            .with_context(|| format!("an untagged image: {out}"))?
            .to_string();
        ensure!(e.ok(&["run", "--rm", &id])? == "from-umoci\n");
        e.ok(&["tag", &id, "from/umoci:1"])?;
        ensure!(e.ok(&["run", "--rm", "from/umoci:1", "echo", "tagged"])? == "tagged\n");
        Ok(())
    })());
}

/// containerd imports what `strata save` writes (both formats) and runs it; `strata load` reads
/// what `ctr images export` writes, with the same image id. containerd gets its own overlay2
/// plugin: its garbage collector removes every snapshot it did not make.
#[test]
fn engine_images_containerd_imports_our_saves_and_we_load_its_exports() {
    use strata_tests::{layouts, PluginProcess, PluginSpec, Sandbox};
    let e = engine();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    check(rt.block_on(async {
        let sandbox = Sandbox::new()?;
        let spec = PluginSpec::new("strata-overlay2", layouts::overlay2_storage_count);
        let plugin = PluginProcess::start(&spec, &sandbox).await?;
        let containerd =
            Containerd::start(&sandbox.new_dir("containerd")?, "strata", plugin.socket())?;
        let app = app_archive(&e, "ctr/app:1")?;
        e.ok(&["load", "-i", &app.to_string_lossy()])?;
        let id = inspect(&e, "ctr/app:1")?["Id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let dir = e.scratch("ctr")?;
        for format in ["docker", "oci"] {
            let f = dir.join(format!("{format}.tar"));
            e.ok(&[
                "save",
                "--format",
                format,
                "-o",
                &f.to_string_lossy(),
                "ctr/app:1",
            ])?;
            let f = f.to_string_lossy().into_owned();
            containerd.ctr_ok(&["images", "import", "--snapshotter", "strata", &f])?;
            let out = containerd.ctr_ok(&[
                "run",
                "--rm",
                "--snapshotter",
                "strata",
                "docker.io/ctr/app:1",
                &unique_name("c"),
                "sh",
                "-c",
                "cat /app/msg; test -e /etc/gone || echo deleted",
            ])?;
            ensure!(
                out.replace("\r\n", "\n") == "from the app layer\ndeleted\n",
                "{format}: {out:?}"
            );
            let listed = containerd.ctr_ok(&["images", "ls", "-q"])?;
            ensure!(listed.contains("docker.io/ctr/app:1"), "{format}: {listed}");
            if format == "docker" {
                let export = dir.join("exported.tar").to_string_lossy().into_owned();
                containerd.ctr_ok(&["images", "export", &export, "docker.io/ctr/app:1"])?;
                let fresh = Engine::start(&[])?;
                let out = fresh.ok(&["load", "-i", &export])?;
                ensure!(out.contains("Loaded image: ctr/app:1"), "{out}");
                ensure!(inspect(&fresh, "ctr/app:1")?["Id"] == id.as_str());
                ensure!(fresh.ok(&["run", "--rm", "ctr/app:1"])? == "from the app layer\n");
            }
            containerd.ctr_ok(&["images", "rm", "--sync", "docker.io/ctr/app:1"])?;
        }
        drop(containerd);
        drop(plugin);
        Ok(())
    }));
}
