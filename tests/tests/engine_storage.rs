//! How the engine gets its storage: an already-running snapshotter given by `storage.address`,
//! and the driver chosen by the state under the root when none is configured.

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
