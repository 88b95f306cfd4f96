//! Layer cases: each builds a chain of layers through real mounts and checks every step against
//! a flat directory that had the same changes applied (overlay semantics: whiteouts, opaque
//! directories, copy-up keeping ownership and modes, hard links).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::client::Harness;
use crate::fstest::{
    apply, block_device, char_device, check_trees_equal, chmod, chown as chown_to, create_dir,
    create_file, fifo, link, remove_all, remove_xattr, rename as rename_to, set_xattr, symlink,
    write_at, Change,
};
use crate::harness::PluginSpec;

/// How [`check_layers`] checks each layer.
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// Compare every layer's committed result through a View.
    view_each: bool,
    /// Remove the chain at the end.
    remove_after: bool,
}

/// Builds one committed layer per entry of `layers`, each on the previous one. For every layer:
/// the fresh Prepare mount must equal the flat dir, the mount after applying must equal the
/// flat dir after applying, and (with `view_each`) a View of the commit must equal it too.
/// A View of the top must equal the flat dir at the end. Returns the committed names.
async fn check_layers(
    h: &Harness,
    tag: &str,
    layers: &[Vec<Change>],
    checks: Checks,
) -> Result<Vec<String>> {
    let flat = h.flat_dir()?;
    let mut parent = String::new();
    let mut committed = Vec::new();
    for (i, changes) in layers.iter().enumerate() {
        let key = format!("{tag}/layer-{i}/active");
        let name = format!("{tag}/layer-{i}");
        let mounts = h.snap.prepare(&key, &parent).await?;
        let guard = h.mount(&mounts)?;
        check_trees_equal(&flat, guard.path()).with_context(|| {
            format!("layer {i}: the fresh Prepare on {parent:?} before changes")
        })?;
        apply(guard.path(), changes).with_context(|| format!("layer {i}: apply in the mount"))?;
        apply(&flat, changes).with_context(|| format!("layer {i}: apply in the flat dir"))?;
        check_trees_equal(&flat, guard.path())
            .with_context(|| format!("layer {i}: the active mount after the changes"))?;
        guard.unmount()?;
        h.snap.commit(&name, &key).await?;
        if checks.view_each {
            check_view(h, &name, &flat, &format!("layer {i}")).await?;
        }
        committed.push(name.clone());
        parent = name;
    }
    check_view(h, &parent, &flat, "the top layer").await?;
    if checks.remove_after {
        for name in committed.iter().rev() {
            h.snap.remove(name).await?;
        }
    }
    Ok(committed)
}

/// Views `name`, mounts it and compares it with `flat`, then removes the view.
async fn check_view(h: &Harness, name: &str, flat: &std::path::Path, what: &str) -> Result<()> {
    let view = format!("{name}/view");
    let mounts = h.snap.view(&view, name).await?;
    let guard = h.mount(&mounts)?;
    check_trees_equal(flat, guard.path())
        .with_context(|| format!("{what}: a View of the committed snapshot {name:?}"))?;
    guard.unmount()?;
    h.snap.remove(&view).await
}

/// LayerFileUpdate: files changed in content and mode in a second layer (docker#21555),
/// repeated across second boundaries.
pub async fn layer_file_update(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![
            create_dir("/etc", 0o700),
            create_file("/etc/hosts", "mydomain 10.0.0.1", 0o644),
            create_file("/etc/profile", "PATH=/usr/bin", 0o644),
        ],
        vec![
            create_file("/etc/hosts", "mydomain 10.0.0.2", 0o644),
            create_file("/etc/profile", "PATH=/usr/bin", 0o666),
            create_dir("/root", 0o700),
            create_file("/root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0o644),
        ],
    ];
    // The original bug depended on mtimes within one second; run three times, starting each
    // run just after a second boundary.
    for run in 0..3 {
        let checks = Checks {
            view_each: true,
            remove_after: true,
        };
        check_layers(&h, &format!("run-{run}"), &layers, checks)
            .await
            .with_context(|| format!("run {run}"))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let to_next_second =
            Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()));
        tokio::time::sleep(to_next_second).await;
    }
    Ok(())
}

fn each_view() -> Checks {
    Checks {
        view_each: true,
        remove_after: true,
    }
}

/// RemoveDirectoryInLowerLayer: a directory removed and recreated in an upper layer hides the
/// lower one's content (opaque directory, docker#25244).
pub async fn remove_directory_in_lower_layer(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![
            create_dir("/lib", 0o700),
            create_file("/lib/hidden", "", 0o644),
        ],
        vec![
            remove_all("/lib"),
            create_dir("/lib", 0o700),
            create_file("/lib/not-hidden", "", 0o644),
        ],
        vec![create_file("/lib/newfile", "", 0o644)],
    ];
    check_layers(&h, "rmdir", &layers, each_view()).await?;
    Ok(())
}

/// Chown: ownership changed in an upper layer is kept on copy-up (docker#20240, #24913,
/// #28391).
pub async fn chown(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![
            create_dir("/opt", 0o700),
            create_dir("/opt/a", 0o700),
            create_dir("/opt/a/b", 0o700),
            create_file("/opt/a/b/file.txt", "hello", 0o644),
        ],
        vec![
            chown_to("/opt", 1, 1),
            chown_to("/opt/a", 1, 1),
            chown_to("/opt/a/b", 1, 1),
            chown_to("/opt/a/b/file.txt", 1, 1),
        ],
    ];
    check_layers(&h, "chown", &layers, each_view()).await?;
    Ok(())
}

/// DirectoryPermissionOnCommit: ownership of directories changed, removed and recreated across
/// three layers (docker#27298).
pub async fn directory_permission_on_commit(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![
            create_dir("/dir1", 0o700),
            create_dir("/dir2", 0o700),
            create_dir("/dir3", 0o700),
            create_dir("/dir4", 0o700),
            create_file("/dir4/f1", "one", 0o644),
            create_dir("/dir5", 0o700),
            create_file("/dir5/f1", "five", 0o644),
            chown_to("/dir1", 1, 1),
            chown_to("/dir2", 1, 1),
            chown_to("/dir3", 1, 1),
            chown_to("/dir5", 1, 1),
            chown_to("/dir5/f1", 1, 1),
        ],
        vec![
            chown_to("/dir2", 0, 0),
            remove_all("/dir3"),
            chown_to("/dir4", 1, 1),
            chown_to("/dir4/f1", 1, 1),
        ],
        vec![
            create_dir("/dir3", 0o700),
            chown_to("/dir3", 1, 1),
            remove_all("/dir5"),
            create_dir("/dir5", 0o700),
            chown_to("/dir5", 1, 1),
        ],
    ];
    check_layers(&h, "perm", &layers, each_view()).await?;
    Ok(())
}

/// DeletedFilesInChildSnapshot: a file deleted in layer 2 stays deleted under an empty
/// layer 3 (whiteouts are inherited).
pub async fn deleted_files_in_child_snapshot(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![create_file("/foobar", "foobar\n", 0o644)],
        vec![remove_all("/foobar")],
        vec![],
    ];
    check_layers(&h, "deleted", &layers, each_view()).await?;
    Ok(())
}

/// MoveFileFromLowerLayer: a file from a lower layer is hard-linked to a new place and its old
/// name removed, in a layer that also removes a lower directory.
pub async fn move_file_from_lower_layer(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![
            create_dir("/dir1", 0o700),
            create_file("/dir1/f1", "Hello", 0o644),
            create_dir("/dir2", 0o700),
            create_file("/dir2/f2", "World", 0o644),
        ],
        vec![
            create_dir("/dir3", 0o700),
            remove_all("/dir1"),
            link("/dir2/f2", "/dir3/f2"),
            remove_all("/dir2/f2"),
        ],
    ];
    check_layers(&h, "move", &layers, each_view()).await?;
    Ok(())
}

/// Capability name a driver advertises (Driver.Capabilities.extra) when renaming a directory
/// that came from a lower layer works (overlay needs redirect_dir for that).
pub const RENAME_DIR_CAPABILITY: &str = "rename-dir";

/// Rename: a file renamed over an existing one, and a file renamed to a new name
/// (docker#25409); renaming a lower directory too when the driver advertises
/// [`RENAME_DIR_CAPABILITY`].
pub async fn rename(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let rename_dirs = h
        .capabilities()
        .await?
        .is_some_and(|caps| caps.extra.iter().any(|c| c == RENAME_DIR_CAPABILITY));
    let mut second = vec![
        rename_to("/somefiles", "/f1"),
        rename_to("/f2", "/f3"),
        create_file("/dir1/new", "new in layer 2", 0o644),
    ];
    if rename_dirs {
        second.push(rename_to("/dir1", "/dir2"));
    }
    let layers = vec![
        vec![
            create_dir("/dir1", 0o700),
            create_file("/dir1/f", "in dir1", 0o644),
            create_file("/somefiles", "Hello", 0o644),
            create_file("/f1", "old f1", 0o644),
            create_file("/f2", "World", 0o600),
        ],
        second,
    ];
    check_layers(&h, "rename", &layers, each_view()).await?;
    Ok(())
}

/// 128LayersMount: a chain of 128 layers, each rewriting /overwriteme, adding
/// /ADDHERE/file-<i> and recreating /ONLYME, checked before and after every layer and through
/// a View of the top. Proves deep lower stacks (past one page of mount options) and opaque
/// directories.
pub async fn layers_128_mount(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    if let Some(caps) = h.capabilities().await? {
        anyhow::ensure!(
            caps.max_layer_depth == 0 || caps.max_layer_depth >= 128,
            "the driver advertises max_layer_depth {}, but every driver must mount 128 layers",
            caps.max_layer_depth
        );
    }
    let layers: Vec<Vec<Change>> = (0..128)
        .map(|i| {
            let mut changes = Vec::new();
            if i == 0 {
                changes.push(create_dir("/ADDHERE", 0o755));
            }
            changes.extend([
                create_file("/overwriteme", format!("layer {i}\n"), 0o644),
                create_file(
                    &format!("/ADDHERE/file-{i}"),
                    format!("added in layer {i}\n"),
                    0o644,
                ),
                remove_all("/ONLYME"),
                create_dir("/ONLYME", 0o755),
                create_file(
                    &format!("/ONLYME/only-{i}"),
                    format!("only layer {i}\n"),
                    0o644,
                ),
            ]);
            changes
        })
        .collect();
    let checks = Checks {
        view_each: false,
        remove_after: false,
    };
    check_layers(&h, "deep", &layers, checks).await?;
    Ok(())
}

/// `security.capability` granting CAP_NET_RAW (effective, permitted), revision 2 layout:
/// magic_etc, then permitted and inheritable for the low and high 32 capabilities.
fn cap_net_raw() -> Vec<u8> {
    let words: [u32; 5] = [0x0200_0001, 1 << 13, 0, 0, 0];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Xattrs: extended attributes (user ones and a file capability) are kept by commits, copied
/// up with a lower file or dir when it changes, and can be changed and removed in an upper
/// layer. Not in containerd's suite, but containerd compares xattrs in every tree check.
pub async fn xattrs(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![
            create_dir("/bin", 0o755),
            create_file("/bin/ping", "ping", 0o755),
            set_xattr("/bin/ping", "security.capability", cap_net_raw()),
            create_file("/data", "data", 0o644),
            set_xattr("/data", "user.a", "1"),
            set_xattr("/data", "user.b", "2"),
            create_dir("/dir", 0o755),
            set_xattr("/dir", "user.d", "dir"),
        ],
        vec![
            set_xattr("/data", "user.a", "changed"),
            remove_xattr("/data", "user.b"),
            set_xattr("/dir", "user.e", "new"),
            create_file("/bin/tool", "tool", 0o755),
            set_xattr("/bin/tool", "security.capability", cap_net_raw()),
        ],
        vec![chmod("/data", 0o600), create_file("/dir/f", "f", 0o644)],
    ];
    check_layers(&h, "xattrs", &layers, each_view()).await?;
    Ok(())
}

/// Special files: device nodes, a fifo, relative, absolute and dangling symlinks, setuid and
/// sticky modes, odd names, hard links, and a partial write into a large lower file; then
/// changing, replacing and removing them in upper layers. Not in containerd's suite; it holds
/// every driver (and a FUSE union filesystem) to what an image layer may contain.
pub async fn special_files(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let layers = vec![
        vec![
            create_dir("/dev", 0o755),
            char_device("/dev/null", 0o666, 1, 3),
            block_device("/dev/loop200", 0o660, 7, 200),
            create_dir("/run", 0o755),
            fifo("/run/fifo", 0o644),
            create_dir("/lib", 0o755),
            create_file("/lib/libc.so", "elf", 0o755),
            symlink("lib", "/lib64"),
            symlink("/etc/hosts", "/dangling"),
            create_dir("/tmp", 0o1777),
            create_dir("/bin", 0o755),
            create_file("/bin/su", "su", 0o4755),
            create_file("/bin/wall", "wall", 0o2755),
            create_file("/big", &big, 0o644),
            create_file("/name with spaces", "spaces", 0o644),
            create_file("/ünïcödé-名前", "unicode", 0o644),
            create_file("/empty", "", 0o644),
            create_file("/hl1", "linked", 0o644),
            link("/hl1", "/hl2"),
        ],
        vec![
            write_at("/big", 4 << 20, "PATCHED IN THE MIDDLE"),
            remove_all("/run/fifo"),
            chmod("/dev/null", 0o600),
            remove_all("/lib64"),
            create_dir("/lib64", 0o755),
            symlink("big", "/newlink"),
            link("/empty", "/empty2"),
            chown_to("/tmp", 1, 1),
            chown_to("/dangling", 1, 1),
            remove_all("/name with spaces"),
            rename_to("/ünïcödé-名前", "/renamed"),
        ],
        vec![
            remove_all("/dev"),
            create_dir("/dev", 0o755),
            create_file("/dev/new", "new", 0o644),
            fifo("/run/fifo", 0o600),
            write_at("/big", 0, "HEAD"),
        ],
    ];
    check_layers(&h, "special", &layers, each_view()).await?;
    Ok(())
}

/// Entries that change type across layers: a file becomes a directory, a directory a file,
/// a symlink a directory, and back, each hiding what the lower layer had there.
pub async fn type_changes(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let layers = vec![
        vec![
            create_file("/a", "a file", 0o644),
            create_dir("/b", 0o755),
            create_file("/b/inside", "inside b", 0o644),
            create_dir("/b/sub", 0o700),
            symlink("a", "/c"),
            create_dir("/keep", 0o755),
            create_file("/keep/x", "x", 0o644),
        ],
        vec![
            remove_all("/a"),
            create_dir("/a", 0o750),
            create_file("/a/f", "now a dir", 0o644),
            remove_all("/b"),
            create_file("/b", "now a file", 0o600),
            remove_all("/c"),
            create_dir("/c", 0o755),
            remove_all("/keep/x"),
            create_dir("/keep/x", 0o755),
        ],
        vec![
            remove_all("/a"),
            symlink("b", "/a"),
            remove_all("/b"),
            create_dir("/b", 0o755),
            remove_all("/keep/x"),
            create_file("/keep/x", "a file again", 0o644),
        ],
    ];
    check_layers(&h, "types", &layers, each_view()).await?;
    Ok(())
}

/// The advertised depth: a chain as deep as `Capabilities.max_layer_depth` mounts and shows
/// every layer; one layer deeper, Prepare may refuse, but mounts it does return must mount.
/// Only for drivers that advertise a depth.
pub async fn max_layer_depth(spec: PluginSpec) -> Result<()> {
    let h = Harness::start(&spec).await?;
    let caps = h
        .capabilities()
        .await?
        .context("max_layer_depth needs the Driver service")?;
    let depth = usize::try_from(caps.max_layer_depth)?;
    anyhow::ensure!(depth > 0, "the driver advertises no max_layer_depth");
    let mut parent = String::new();
    let flat = h.flat_dir()?;
    for i in 0..depth {
        let name = format!("depth-{i}");
        let key = format!("{name}-active");
        let mounts = h.snap.prepare(&key, &parent).await?;
        // Writing through a mount at every layer would take long; write into the first and
        // the last few through mounts, and leave the others empty.
        if i == 0 || i + 3 >= depth {
            let change = [create_file(&format!("/file-{i}"), format!("{i}"), 0o644)];
            let guard = h
                .mount(&mounts)
                .with_context(|| format!("mount layer {i}"))?;
            apply(guard.path(), &change)?;
            guard.unmount()?;
            apply(&flat, &change)?;
        }
        h.snap.commit(&name, &key).await?;
        parent = name;
    }
    // An active snapshot with `depth` parents.
    let mounts = h.snap.prepare("at-max", &parent).await?;
    let guard = h
        .mount(&mounts)
        .with_context(|| format!("mount an active snapshot with {depth} parents"))?;
    check_trees_equal(&flat, guard.path())
        .with_context(|| format!("an active snapshot with {depth} parents"))?;
    guard.unmount()?;
    h.snap.remove("at-max").await?;

    // One deeper: refusing is fine, unmountable mounts are not.
    h.snap.prepare("deeper-active", &parent).await?;
    h.snap.commit("deeper", "deeper-active").await?;
    let prepared = h
        .snap
        .try_prepare("too-deep", "deeper", Default::default())
        .await;
    let viewed = h
        .snap
        .try_view("too-deep-view", "deeper", Default::default())
        .await;
    for (call, result) in [("Prepare", prepared), ("View", viewed)] {
        match result {
            Err(status) => anyhow::ensure!(
                !status.message().is_empty(),
                "refusing a {call} past max_layer_depth needs a message"
            ),
            Ok(mounts) => {
                let guard = h.mount(&mounts).with_context(|| {
                    format!(
                        "{call} with {} parents (past the advertised max_layer_depth {depth}) \
                         succeeded, so its mounts must mount (or the {call} must be refused)",
                        depth + 1
                    )
                })?;
                guard.unmount()?;
            }
        }
    }
    Ok(())
}
