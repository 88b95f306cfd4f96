//! The snapshotter conformance suite against the overlay2 plugin (`strata-overlay2`).
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`). Every test starts its
//! own plugin; filter with e.g. `cargo test -p strata-tests --test overlay2 overlay2_crash`.

use strata_tests::harness::run_case;
use strata_tests::{concurrency, conformance, crash, errors, layouts, plugin, PluginSpec};

fn spec() -> PluginSpec {
    PluginSpec::new("strata-overlay2", layouts::overlay2_storage_count).with_status_rows(&[
        "Backing Filesystem",
        "Supports d_type",
        "Native Overlay Diff",
        "Snapshots",
    ])
}

macro_rules! cases {
    ($($name:ident => $case:path,)*) => {
        $(
            #[test]
            fn $name() {
                run_case(spec(), $case);
            }
        )*
    };
}

cases! {
    overlay2_conformance_basic => conformance::basic,
    overlay2_conformance_stat_active => conformance::stat_active,
    overlay2_conformance_stat_committed => conformance::stat_committed,
    overlay2_conformance_transitivity => conformance::transitivity,
    overlay2_conformance_prepare_view_failing => conformance::prepare_view_failing,
    overlay2_conformance_update => conformance::update,
    overlay2_conformance_remove => conformance::remove,
    overlay2_conformance_walk => conformance::walk,
    overlay2_conformance_layer_file_update => conformance::layer_file_update,
    overlay2_conformance_remove_directory_in_lower_layer => conformance::remove_directory_in_lower_layer,
    overlay2_conformance_chown => conformance::chown,
    overlay2_conformance_directory_permission_on_commit => conformance::directory_permission_on_commit,
    overlay2_conformance_remove_intermediate_snapshot => conformance::remove_intermediate_snapshot,
    overlay2_conformance_deleted_files_in_child_snapshot => conformance::deleted_files_in_child_snapshot,
    overlay2_conformance_move_file_from_lower_layer => conformance::move_file_from_lower_layer,
    overlay2_conformance_view_readonly => conformance::view_readonly,
    overlay2_conformance_stat_in_walk => conformance::stat_in_walk,
    overlay2_conformance_close_twice => conformance::close_twice,
    overlay2_conformance_root_permission => conformance::root_permission,
    overlay2_conformance_rename => conformance::rename,
    overlay2_conformance_128_layers_mount => conformance::layers_128_mount,
    overlay2_conformance_max_layer_depth => conformance::max_layer_depth,
    overlay2_conformance_commit_info => conformance::commit_info,
    overlay2_conformance_usage => conformance::usage,
    overlay2_conformance_xattrs => conformance::xattrs,
    overlay2_conformance_special_files => conformance::special_files,
    overlay2_conformance_type_changes => conformance::type_changes,
    overlay2_conformance_cleanup_keeps_live => conformance::cleanup_keeps_live,
    overlay2_conformance_list_large => conformance::list_large,

    overlay2_errors_unknown_key => errors::unknown_key,
    overlay2_errors_duplicate_key => errors::duplicate_key,
    overlay2_errors_uncommitted_parent => errors::uncommitted_parent,
    overlay2_errors_missing_parent => errors::missing_parent,
    overlay2_errors_commit_not_active => errors::commit_not_active,
    overlay2_errors_mounts_committed => errors::mounts_committed,
    overlay2_errors_remove_with_children => errors::remove_with_children,
    overlay2_errors_bad_filter => errors::bad_filter,
    overlay2_errors_immutable_update => errors::immutable_update,
    overlay2_errors_label_too_long => errors::label_too_long,
    overlay2_errors_containerd_keys => errors::containerd_keys,
    overlay2_errors_odd_keys => errors::odd_keys,

    overlay2_crash_prepare_after_create => crash::prepare_after_create,
    overlay2_crash_prepare_after_metadata => crash::prepare_after_metadata,
    overlay2_crash_commit_before_metadata => crash::commit_before_metadata,
    overlay2_crash_commit_after_metadata => crash::commit_after_metadata,
    overlay2_crash_remove_after_metadata => crash::remove_after_metadata,
    overlay2_crash_restart_keeps_store => crash::restart_keeps_store,
    overlay2_crash_kill_during_workload => crash::kill_during_workload,
    overlay2_crash_kill_during_startup => crash::kill_during_startup,

    overlay2_concurrency_8_clients => concurrency::concurrent_clients,
    overlay2_concurrency_remove_prepare_race => concurrency::remove_prepare_race,
    overlay2_concurrency_update_races => concurrency::update_races,

    overlay2_plugin_socket_mode => plugin::socket_mode,
    overlay2_plugin_bad_storage_opt_refused => plugin::bad_storage_opt_refused,
    overlay2_plugin_sigterm_during_calls => plugin::sigterm_during_calls,
    overlay2_plugin_sigterm_with_stalled_stream => plugin::sigterm_with_stalled_stream,
    overlay2_plugin_driver_service => plugin::driver_service,
}
