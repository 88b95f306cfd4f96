//! The snapshotter suite against the devicemapper plugin (`strata-devmapper`), inside
//! User-Mode Linux: the host kernel has no device-mapper (shared/ENVIRONMENT.md), so each test
//! boots UML once and runs many cases in it. Outside UML a test fails unless the inner run
//! passed; it never skips.
//!
//! Needs root, `user-mode-linux`, `dmsetup`, `thin-provisioning-tools`, `xfsprogs` and the built
//! binaries (`cargo build -p strata-devmapper`). Run one boot with e.g.
//! `cargo test -p strata-tests --test devmapper devmapper_uml_ext4 -- --nocapture`; the cases
//! inside one boot can be narrowed with `STRATA_DM_CASES=basic,usage`.

#[path = "dm/support.rs"]
mod support_dm;

use strata_tests::{concurrency, conformance, crash, errors, plugin};
use support_dm::{run_cases, spec, Case};

macro_rules! cases {
    ($($name:literal => $case:path),* $(,)?) => {
        &[$(($name, (|s| Box::pin($case(s))) as Case)),*]
    };
}

const CONFORMANCE: &[(&str, Case)] = cases![
    "basic" => conformance::basic,
    "stat_active" => conformance::stat_active,
    "stat_committed" => conformance::stat_committed,
    "transitivity" => conformance::transitivity,
    "prepare_view_failing" => conformance::prepare_view_failing,
    "update" => conformance::update,
    "remove" => conformance::remove,
    "walk" => conformance::walk,
    "layer_file_update" => conformance::layer_file_update,
    "remove_directory_in_lower_layer" => conformance::remove_directory_in_lower_layer,
    "chown" => conformance::chown,
    "directory_permission_on_commit" => conformance::directory_permission_on_commit,
    "remove_intermediate_snapshot" => conformance::remove_intermediate_snapshot,
    "deleted_files_in_child_snapshot" => conformance::deleted_files_in_child_snapshot,
    "move_file_from_lower_layer" => conformance::move_file_from_lower_layer,
    "view_readonly" => conformance::view_readonly,
    "stat_in_walk" => conformance::stat_in_walk,
    "close_twice" => conformance::close_twice,
    "root_permission" => conformance::root_permission,
    "rename" => conformance::rename,
    "128_layers_mount" => conformance::layers_128_mount,
    "commit_info" => conformance::commit_info,
    "usage" => conformance::usage,
    "xattrs" => conformance::xattrs,
    "special_files" => conformance::special_files,
    "type_changes" => conformance::type_changes,
    "cleanup_keeps_live" => conformance::cleanup_keeps_live,
    "list_large" => conformance::list_large,
];

const ERRORS_CRASH_PLUGIN: &[(&str, Case)] = cases![
    "errors_unknown_key" => errors::unknown_key,
    "errors_duplicate_key" => errors::duplicate_key,
    "errors_uncommitted_parent" => errors::uncommitted_parent,
    "errors_missing_parent" => errors::missing_parent,
    "errors_commit_not_active" => errors::commit_not_active,
    "errors_mounts_committed" => errors::mounts_committed,
    "errors_remove_with_children" => errors::remove_with_children,
    "errors_bad_filter" => errors::bad_filter,
    "errors_immutable_update" => errors::immutable_update,
    "errors_label_too_long" => errors::label_too_long,
    "errors_containerd_keys" => errors::containerd_keys,
    "errors_odd_keys" => errors::odd_keys,
    "crash_prepare_after_create" => crash::prepare_after_create,
    "crash_prepare_after_metadata" => crash::prepare_after_metadata,
    "crash_commit_before_metadata" => crash::commit_before_metadata,
    "crash_commit_after_metadata" => crash::commit_after_metadata,
    "crash_remove_after_metadata" => crash::remove_after_metadata,
    "crash_restart_keeps_store" => crash::restart_keeps_store,
    "crash_kill_during_workload" => crash::kill_during_workload,
    "crash_kill_during_startup" => crash::kill_during_startup,
    "concurrency_clients" => concurrency::concurrent_clients,
    "concurrency_remove_prepare_race" => concurrency::remove_prepare_race,
    "plugin_socket_mode" => plugin::socket_mode,
    "plugin_bad_storage_opt_refused" => plugin::bad_storage_opt_refused,
    "plugin_sigterm_during_calls" => plugin::sigterm_during_calls,
    "plugin_driver_service" => plugin::driver_service,
];

/// The conformance suite, errors, crashes and plugin behaviour on ext4.
#[test]
fn devmapper_uml_ext4() {
    support_dm::in_uml("devmapper_uml_ext4", || {
        let mut all = CONFORMANCE.to_vec();
        all.extend_from_slice(ERRORS_CRASH_PLUGIN);
        run_cases(spec("ext4"), &all)
    });
}

/// The conformance suite on xfs.
#[test]
fn devmapper_uml_xfs() {
    support_dm::in_uml("devmapper_uml_xfs", || run_cases(spec("xfs"), CONFORMANCE));
}

#[path = "dm/cases.rs"]
mod dm_cases;

/// The plugin's own cases: refusals, pool modes, base growth, a full pool, SIGKILL in device
/// transactions, busy devices.
#[test]
fn devmapper_uml_pool() {
    support_dm::in_uml("devmapper_uml_pool", || {
        run_cases(
            spec("ext4"),
            cases![
                "refusals" => dm_cases::refusals,
                "pool_modes" => dm_cases::pool_modes,
                "basesize_grows" => dm_cases::basesize_grows,
                "fill_pool" => dm_cases::fill_pool,
                "sigkill_in_transactions" => dm_cases::sigkill_in_transactions,
                "busy_device" => dm_cases::busy_device,
                "options_applied" => dm_cases::options_applied,
                "pool_full" => dm_cases::pool_full,
                "survives_reboot" => dm_cases::survives_reboot,
                "first_start_killed" => dm_cases::first_start_killed,
            ],
        )
    });
}

#[path = "dm/bench.rs"]
mod dm_bench;

/// Performance beside containerd's devmapper snapshotter (shared/tools/snapbench built in
/// `$STRATA_DM_BENCH_TOOLS`, default /tmp/snapbench). Not part of the normal run:
/// `cargo test -p strata-tests --test devmapper devmapper_uml_bench -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: run it with --ignored"]
fn devmapper_uml_bench() {
    support_dm::in_uml("devmapper_uml_bench", dm_bench::run);
}

/// End to end: `stratad --storage-driver devicemapper` runs containers on thin devices, each
/// with its own writable device, and `strata commit` makes an image of a change.
#[test]
fn devmapper_uml_engine() {
    support_dm::in_uml("devmapper_uml_engine", || {
        use anyhow::ensure;
        use strata_tests::engine::{Engine, BUSYBOX};
        let _scratch = support_dm::scratch()?;
        let r = (|| {
            let e = Engine::start(&[
                "--storage-driver",
                "devicemapper",
                "--storage-opt",
                "dm.loopdatasize=2G",
                "--storage-opt",
                "dm.basesize=128M",
                "--storage-opt",
                "dm.fs=ext4",
            ])?;
            e.load_busybox()?;
            let out = e.ok(&[
                "run",
                "--rm",
                BUSYBOX,
                "sh",
                "-c",
                "echo written > /x && cat /x && rm /bin/ls && test ! -e /bin/ls && echo removed",
            ])?;
            ensure!(out == "written\nremoved\n", "output {out:?}");
            let out = e.ok(&[
                "run",
                "--rm",
                BUSYBOX,
                "sh",
                "-c",
                "test -e /bin/ls && test ! -e /x && echo clean",
            ])?;
            ensure!(out == "clean\n", "the image's device is untouched: {out:?}");
            e.commit_keeps_changes()?;
            let info = e.ok(&["info"])?;
            ensure!(
                info.contains("devicemapper") && info.contains("Pool Name"),
                "strata info shows the driver's rows:\n{info}"
            );
            Ok(())
        })();
        if let Err(err) = support_dm::remove_all_devices() {
            eprintln!("cleanup: {err:#}");
        }
        r
    });
}
