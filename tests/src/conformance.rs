//! Every case of containerd's snapshotter suite (shared/SNAPSHOTS-API.md §3), written from
//! the semantics described there, against any plugin described by a
//! [`PluginSpec`](crate::PluginSpec).
//!
//! Each case starts its own plugin process on its own sandbox, so cases run in parallel and
//! fixed names like `c1` never collide. Keys are sometimes absolute paths (as containerd's suite
//! uses), sometimes short names, to show keys are opaque.

mod layers;
mod lifecycle;
mod metadata;

pub use layers::{
    chown, deleted_files_in_child_snapshot, directory_permission_on_commit, layer_file_update,
    layers_128_mount, max_layer_depth, move_file_from_lower_layer, remove_directory_in_lower_layer,
    rename, special_files, type_changes, xattrs,
};
pub use lifecycle::{
    basic, cleanup_keeps_live, close_twice, remove_intermediate_snapshot, root_permission,
    stat_active, stat_committed, transitivity, view_readonly,
};
pub use metadata::{
    commit_info, list_large, prepare_view_failing, remove, stat_in_walk, update, usage, walk,
};
