//! Builds Docker `save` archives (the format `ctr images import` and `docker load` read) from
//! layers described in code, with a real userland from Debian's `busybox-static`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// One entry of a layer tar.
pub enum Entry {
    /// A directory with its mode.
    Dir(&'static str, u32),
    /// A regular file with content and mode.
    File(String, Vec<u8>, u32),
    /// A symlink: path, target.
    Symlink(String, String),
}

/// An uncompressed layer tar built from entries, in order.
pub fn layer(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(
                    &mut h,
                    format!("{}/", path.trim_end_matches('/')),
                    std::io::empty(),
                )?;
            }
            Entry::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())?;
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// The base layer of the test images: `/bin/busybox` from busybox-static with the applets a
/// shell script needs, plus `/etc` and `/tmp`.
pub fn busybox_layer(extra: Vec<Entry>) -> Result<Vec<u8>> {
    let busybox = fs::read("/bin/busybox").context("read /bin/busybox (install busybox-static)")?;
    let mut entries = vec![
        Entry::Dir("bin", 0o755),
        Entry::File("bin/busybox".into(), busybox, 0o755),
        Entry::Dir("etc", 0o755),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("proc", 0o755),
        Entry::Dir("sys", 0o755),
        Entry::Dir("dev", 0o755),
    ];
    for applet in [
        "sh", "ls", "cat", "echo", "test", "true", "false", "sleep", "touch", "rm", "mkdir", "id",
        "hostname", "ps",
    ] {
        entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    entries.extend(extra);
    layer(&entries)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes a Docker `save` archive of one image, tagged `reference`, to `out`.
pub fn docker_archive(out: &Path, reference: &str, layers: &[Vec<u8>], cmd: &[&str]) -> Result<()> {
    let config = serde_json::json!({ "Cmd": cmd, "Env": ["PATH=/bin"] });
    docker_archive_with(out, reference, layers, config)
}

/// [`docker_archive`] with the image config's `config` section (Cmd, Env, Volumes, …) given.
pub fn docker_archive_with(
    out: &Path,
    reference: &str,
    layers: &[Vec<u8>],
    config: serde_json::Value,
) -> Result<()> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "strata test"})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config)?;
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", sha256_hex(l)))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": layer_names,
    }]))?;
    let mut b = tar::Builder::new(
        fs::File::create(out).with_context(|| format!("create {}", out.display()))?,
    );
    let mut add = |name: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data)?;
        Ok(())
    };
    add(&config_name, &config)?;
    for (name, data) in layer_names.iter().zip(layers) {
        add(name, data)?;
    }
    add("manifest.json", &manifest)?;
    b.finish()?;
    Ok(())
}
