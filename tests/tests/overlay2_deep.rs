//! Strata's own mounter mounts a 200-layer overlay2 chain, past the one-page limit of
//! mount(2)'s options that stops containerd's mounter: through the new mount API (`lowerdir+`)
//! and through relative lower paths from the layers' common directory.

use std::fs;

use anyhow::{ensure, Context, Result};
use strata_snapshotter::mount::{mount_one, unmount, OverlayStrategy, MOUNT_DATA_MAX};
use strata_tests::harness::run_case;
use strata_tests::{layouts, Harness, PluginSpec};

const LAYERS: usize = 200;

async fn deep_chain(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let mut parent = String::new();
    for i in 0..LAYERS {
        let key = format!("layer-{i}-active");
        let mounts = h.snap.prepare(&key, &parent).await?;
        let guard = h
            .mount(&mounts)
            .with_context(|| format!("mount layer {i}"))?;
        fs::write(guard.path().join(format!("file-{i}")), i.to_string())?;
        fs::write(guard.path().join("overwriteme"), i.to_string())?;
        if i == 1 {
            fs::remove_file(guard.path().join("file-0"))?;
        }
        guard.unmount()?;
        let name = format!("layer-{i}");
        h.snap.commit(&name, &key).await?;
        parent = name;
    }
    let mounts = h.snap.prepare("top", &parent).await?;
    ensure!(
        mounts.len() == 1 && mounts[0].r#type == "overlay",
        "expected one overlay mount, got {mounts:?}"
    );
    let lowers = mounts[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap_or_default();
    ensure!(
        lowers.split(':').count() == LAYERS,
        "expected {LAYERS} lower dirs"
    );
    let data_len = mounts[0].options.join(",").len();
    ensure!(
        data_len > MOUNT_DATA_MAX,
        "the options ({data_len} bytes) should not fit one page for this test to mean anything"
    );

    let classic = h.sandbox.new_dir("classic")?;
    ensure!(
        mount_one(&mounts[0], &classic, OverlayStrategy::Classic).is_err(),
        "mount(2) with {data_len} bytes of options should fail"
    );

    for strategy in [
        OverlayStrategy::Auto,
        OverlayStrategy::NewApi,
        OverlayStrategy::Relative,
    ] {
        let target = h.sandbox.new_dir("deep")?;
        mount_one(&mounts[0], &target, strategy)
            .with_context(|| format!("mount 200 layers with {strategy:?}"))?;
        let check = (|| -> Result<()> {
            ensure!(
                !target.join("file-0").exists(),
                "file-0 was deleted in layer 1"
            );
            for i in 1..LAYERS {
                let got = fs::read_to_string(target.join(format!("file-{i}")))?;
                ensure!(got == i.to_string(), "file-{i} holds {got:?}");
            }
            let top = fs::read_to_string(target.join("overwriteme"))?;
            ensure!(
                top == (LAYERS - 1).to_string(),
                "the nearest layer must win: overwriteme is {top:?}"
            );
            fs::write(target.join("new"), "upper")?;
            Ok(())
        })();
        unmount(&target)?;
        check.with_context(|| format!("{strategy:?}"))?;
    }
    Ok(())
}

#[test]
fn overlay2_mounter_mounts_200_layers() {
    run_case(
        PluginSpec::new("strata-overlay2", layouts::overlay2_storage_count),
        deep_chain,
    );
}
