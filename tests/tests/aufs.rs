//! The snapshotter conformance suite against the aufs plugin (`strata-aufs`), on its FUSE
//! union filesystem (no kernel we run on has aufs).
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`). Every test starts its
//! own plugin; filter with e.g. `cargo test -p strata-tests --test aufs aufs_crash`.

use strata_tests::harness::run_case;
use strata_tests::{concurrency, conformance, crash, errors, layouts, plugin, PluginSpec};

fn spec() -> PluginSpec {
    PluginSpec::new("strata-aufs", layouts::aufs_storage_count).with_status_rows(&[
        "Root Dir",
        "Backing Filesystem",
        "Dirs",
        "Dirperm1 Supported",
        "Mode",
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
    aufs_conformance_basic => conformance::basic,
    aufs_conformance_stat_active => conformance::stat_active,
    aufs_conformance_stat_committed => conformance::stat_committed,
    aufs_conformance_transitivity => conformance::transitivity,
    aufs_conformance_prepare_view_failing => conformance::prepare_view_failing,
    aufs_conformance_update => conformance::update,
    aufs_conformance_remove => conformance::remove,
    aufs_conformance_walk => conformance::walk,
    aufs_conformance_layer_file_update => conformance::layer_file_update,
    aufs_conformance_remove_directory_in_lower_layer => conformance::remove_directory_in_lower_layer,
    aufs_conformance_chown => conformance::chown,
    aufs_conformance_directory_permission_on_commit => conformance::directory_permission_on_commit,
    aufs_conformance_remove_intermediate_snapshot => conformance::remove_intermediate_snapshot,
    aufs_conformance_deleted_files_in_child_snapshot => conformance::deleted_files_in_child_snapshot,
    aufs_conformance_move_file_from_lower_layer => conformance::move_file_from_lower_layer,
    aufs_conformance_view_readonly => conformance::view_readonly,
    aufs_conformance_stat_in_walk => conformance::stat_in_walk,
    aufs_conformance_close_twice => conformance::close_twice,
    aufs_conformance_root_permission => conformance::root_permission,
    aufs_conformance_rename => conformance::rename,
    aufs_conformance_128_layers_mount => conformance::layers_128_mount,
    aufs_conformance_max_layer_depth => conformance::max_layer_depth,
    aufs_conformance_commit_info => conformance::commit_info,
    aufs_conformance_usage => conformance::usage,
    aufs_conformance_xattrs => conformance::xattrs,
    aufs_conformance_special_files => conformance::special_files,
    aufs_conformance_type_changes => conformance::type_changes,
    aufs_conformance_cleanup_keeps_live => conformance::cleanup_keeps_live,
    aufs_conformance_list_large => conformance::list_large,

    aufs_errors_unknown_key => errors::unknown_key,
    aufs_errors_duplicate_key => errors::duplicate_key,
    aufs_errors_uncommitted_parent => errors::uncommitted_parent,
    aufs_errors_missing_parent => errors::missing_parent,
    aufs_errors_commit_not_active => errors::commit_not_active,
    aufs_errors_mounts_committed => errors::mounts_committed,
    aufs_errors_remove_with_children => errors::remove_with_children,
    aufs_errors_bad_filter => errors::bad_filter,
    aufs_errors_immutable_update => errors::immutable_update,
    aufs_errors_label_too_long => errors::label_too_long,
    aufs_errors_containerd_keys => errors::containerd_keys,
    aufs_errors_odd_keys => errors::odd_keys,

    aufs_crash_prepare_after_create => crash::prepare_after_create,
    aufs_crash_prepare_after_metadata => crash::prepare_after_metadata,
    aufs_crash_commit_before_metadata => crash::commit_before_metadata,
    aufs_crash_commit_after_metadata => crash::commit_after_metadata,
    aufs_crash_remove_after_metadata => crash::remove_after_metadata,
    aufs_crash_restart_keeps_store => crash::restart_keeps_store,
    aufs_crash_kill_during_workload => crash::kill_during_workload,
    aufs_crash_kill_during_startup => crash::kill_during_startup,

    aufs_concurrency_8_clients => concurrency::concurrent_clients,
    aufs_concurrency_remove_prepare_race => concurrency::remove_prepare_race,
    aufs_concurrency_update_races => concurrency::update_races,

    aufs_plugin_socket_mode => plugin::socket_mode,
    aufs_plugin_bad_storage_opt_refused => plugin::bad_storage_opt_refused,
    aufs_plugin_sigterm_during_calls => plugin::sigterm_during_calls,
    aufs_plugin_sigterm_with_stalled_stream => plugin::sigterm_with_stalled_stream,
    aufs_plugin_driver_service => plugin::driver_service,
}
