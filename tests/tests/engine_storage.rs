//! How the engine gets its storage: an already-running snapshotter given by `storage.address`,
//! the driver chosen by the state under the root when none is configured, and a switch of
//! driver that keeps the images.

use std::fs;

use anyhow::ensure;
use strata_tests::engine::check;
use strata_tests::engine::{Engine, BUSYBOX};
use strata_tests::harness::run_case;
use strata_tests::{layouts, PluginProcess, PluginSpec, Sandbox};

#[test]
fn engine_uses_an_external_snapshotter_from_the_config() {
    run_case(
        PluginSpec::new("strata-overlay2", layouts::overlay2_storage_count),
        |spec| async move {
            let sandbox = Sandbox::new()?;
            let plugin = PluginProcess::start(&spec, &sandbox).await?;
            let mut e = Engine::unstarted(&[])?;
            let config = e.scratch("etc")?.join("config.toml");
            fs::write(
                &config,
                format!(
                    "[storage]\ndriver = \"overlay2\"\naddress = \"{}\"\n",
                    plugin.socket().display()
                ),
            )?;
            e.spawn_with(&["--config", &config.to_string_lossy()])?;
            e.load_busybox()?;
            ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "external"])? == "external\n");
            // The engine started no plugin of its own: its layers are in the external one's root.
            ensure!(
                !e.root.join("storage/overlay2").exists(),
                "the engine made its own storage"
            );
            ensure!(
                fs::read_dir(sandbox.root().join("snapshots"))?.count() >= 1,
                "no layer in the external snapshotter"
            );
            drop(e);
            Ok(())
        },
    );
}

#[test]
fn engine_chooses_the_driver_whose_state_exists() {
    check((|| {
        let mut e = Engine::unstarted(&[])?;
        fs::create_dir_all(e.root.join("storage/aufs"))?;
        e.spawn()?;
        let info = e.ok(&["info"])?;
        ensure!(
            info.contains("Storage Driver: aufs"),
            "state for aufs exists, so aufs is used:\n{info}"
        );
        e.stop()?;
        fs::create_dir_all(e.root.join("storage/overlay2"))?;
        let err = e
            .spawn()
            .expect_err("state for two drivers must be refused");
        ensure!(format!("{err:#}").contains("choose one"), "{err:#}");
        Ok(())
    })());
}

#[test]
fn engine_defaults_to_overlay2() {
    check((|| {
        let e = Engine::start(&[])?;
        ensure!(e.ok(&["info"])?.contains("Storage Driver: overlay2"));
        Ok(())
    })());
}

/// A host switches from overlay2 to aufs and back without loading its images again: each
/// driver unpacks an image's layers from the content store for its first container.
#[test]
fn engine_switches_storage_driver_without_reloading_images() {
    check((|| {
        let mut e = Engine::start(&[])?;
        e.load_busybox()?;
        ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "overlay2"])? == "overlay2\n");
        e.stop()?;
        e.spawn_with(&["--storage-driver", "aufs"])?;
        ensure!(e.ok(&["info"])?.contains("Storage Driver: aufs"));
        ensure!(e.ok(&["images", "-q"])?.lines().count() == 1);
        ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "aufs"])? == "aufs\n");
        ensure!(
            fs::read_dir(e.root.join("storage/aufs/diff"))?.count() == 1,
            "aufs has the image's one layer, and no container's"
        );
        e.stop()?;
        e.spawn_with(&["--storage-driver", "overlay2"])?;
        ensure!(e.ok(&["run", "--rm", BUSYBOX, "echo", "back"])? == "back\n");
        Ok(())
    })());
}
