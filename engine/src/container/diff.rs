//! A container's changes: as a layer tar for `strata commit`, or listed for `strata diff`; and
//! the tar of a tree that `strata cp` sends.
//!
//! With a native diff (overlay2's upper directory) only the container's own layer is walked:
//! its files as they are, a 0/0 character device (overlay's whiteout) as `.wh.<name>`, and a
//! directory marked `trusted.overlay.opaque=y` with a `.wh..wh..opq` entry. Without one (a
//! plain filesystem, e.g. devicemapper's), the container's tree is compared with its parent's,
//! as Docker's naive diff does: new or changed entries are written, missing ones whited out.
//!
//! Both walks feed a [`Sink`]: the tar writer, or the change list, which calls an entry `A`
//! when no lower layer has it and `C` when one does, and every directory above a change `C`,
//! as `docker diff` does.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::record::Record;
use super::{io as io_err, storage_err, ContainerError, Containers, Result};
use strata_snapshotter::xattr;

/// What happened to a path, as `docker diff` letters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// "A", "C" or "D".
    pub fn letter(self) -> &'static str {
        match self {
            ChangeKind::Added => "A",
            ChangeKind::Changed => "C",
            ChangeKind::Deleted => "D",
        }
    }
}

/// One change: an absolute path in the container and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

/// The header of an empty marker file (`.wh.<name>`, `.wh..wh..opq`).
fn marker_header() -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

/// Whether a directory is marked opaque in an overlay upper dir.
fn is_opaque(dir: &Path) -> bool {
    xattr::get(dir, "trusted.overlay.opaque".as_ref()).is_ok_and(|v| v == b"y")
}

/// Whether an entry of an overlay layer is a whiteout (a 0/0 character device).
fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn header_for(meta: &fs::Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// What the walks report.
trait Sink {
    /// `rel` was deleted (a whiteout, or missing from the upper tree).
    fn deleted(&mut self, rel: &Path) -> io::Result<()>;
    /// `rel` (at `abs`) is new or changed.
    fn entry(&mut self, abs: &Path, rel: &Path, meta: &fs::Metadata) -> io::Result<()>;
    /// The directory `rel` hides everything below it in lower layers.
    fn opaque(&mut self, rel: &Path) -> io::Result<()>;
}

/// Writes entries as a tar, hard links as links to their first name.
struct TarSink<W: io::Write> {
    tar: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    /// Bytes of file content written.
    content: u64,
    /// For a layer: the lower layers (top first; the parent's tree for the naive diff), so
    /// that the runtime's [`PLACEHOLDERS`] stay out of it as they stay out of `docker commit`.
    /// `None` for the tar of a tree (`cp`), which has every entry.
    lowers: Option<Vec<PathBuf>>,
}

impl<W: io::Write> TarSink<W> {
    fn new(out: W) -> Self {
        TarSink {
            tar: tar::Builder::new(out),
            links: HashMap::new(),
            content: 0,
            lowers: None,
        }
    }

    fn layer(out: W, lowers: &[PathBuf]) -> Self {
        TarSink {
            lowers: Some(lowers.to_vec()),
            ..TarSink::new(out)
        }
    }

    fn finish(self) -> io::Result<u64> {
        self.tar.into_inner()?.flush()?;
        Ok(self.content)
    }
}

impl<W: io::Write> Sink for TarSink<W> {
    fn deleted(&mut self, rel: &Path) -> io::Result<()> {
        let name = rel
            .file_name()
            .map(|n| format!(".wh.{}", n.to_string_lossy()))
            .unwrap_or_default();
        let path = rel.parent().unwrap_or(Path::new("")).join(name);
        let mut h = marker_header();
        self.tar.append_data(&mut h, path, io::empty())
    }

    fn opaque(&mut self, rel: &Path) -> io::Result<()> {
        let mut h = marker_header();
        self.tar
            .append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())
    }

    fn entry(&mut self, abs: &Path, rel: &Path, meta: &fs::Metadata) -> io::Result<()> {
        if let Some(lowers) = &self.lowers {
            if placeholder(abs, rel, meta) && lower_meta(lowers, rel).is_none() {
                return Ok(());
            }
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut h = header_for(meta, EntryType::Directory);
            return self.tar.append_data(&mut h, rel, io::empty());
        }
        if meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())).cloned() {
                let mut h = header_for(meta, EntryType::Link);
                return self.tar.append_link(&mut h, rel, first);
            }
            self.links
                .insert((meta.dev(), meta.ino()), rel.to_path_buf());
        }
        if ft.is_symlink() {
            let mut h = header_for(meta, EntryType::Symlink);
            return self.tar.append_link(&mut h, rel, fs::read_link(abs)?);
        }
        if ft.is_file() {
            let mut h = header_for(meta, EntryType::Regular);
            h.set_size(meta.len());
            self.content += meta.len();
            // Exactly the size in the header, even if the file grows or shrinks meanwhile.
            let data = io::Read::chain(File::open(abs)?, io::repeat(0));
            return self
                .tar
                .append_data(&mut h, rel, io::Read::take(data, meta.len()));
        }
        let kind = if ft.is_fifo() {
            EntryType::Fifo
        } else if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else {
            // Sockets are not part of a layer.
            return Ok(());
        };
        let mut h = header_for(meta, kind);
        let dev = meta.rdev();
        h.set_device_major(libc::major(dev))?;
        h.set_device_minor(libc::minor(dev))?;
        self.tar.append_data(&mut h, rel, io::empty())
    }
}

/// Mount targets the runtime makes when the image lacks them (Docker keeps these in an "init"
/// layer under the container's, so `docker diff` never lists them): not changes while they
/// are still empty.
const PLACEHOLDERS: [&str; 6] = [
    "proc",
    "sys",
    "dev",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

/// Whether `rel` (at `abs`) is one of [`PLACEHOLDERS`], still empty, or `etc` holding nothing
/// but such placeholders (made for them in an image without one).
fn placeholder(abs: &Path, rel: &Path, meta: &fs::Metadata) -> bool {
    if rel == Path::new("etc") && meta.is_dir() {
        return fs::read_dir(abs).is_ok_and(|d| {
            d.into_iter().all(|e| {
                e.is_ok_and(|e| {
                    let r = rel.join(e.file_name());
                    PLACEHOLDERS.iter().any(|p| r == Path::new(p))
                        && e.metadata().is_ok_and(|m| m.is_file() && m.len() == 0)
                })
            })
        });
    }
    PLACEHOLDERS.iter().any(|p| rel == Path::new(p))
        && if meta.is_dir() {
            fs::read_dir(abs).is_ok_and(|mut d| d.next().is_none())
        } else {
            meta.is_file() && meta.len() == 0
        }
}

/// Collects changes as `docker diff` lists them.
struct ChangeSink {
    /// The lower layers, top first (one merged tree for the naive diff).
    lowers: Vec<PathBuf>,
    found: BTreeMap<PathBuf, ChangeKind>,
}

impl Sink for ChangeSink {
    fn deleted(&mut self, rel: &Path) -> io::Result<()> {
        self.found.insert(rel.to_path_buf(), ChangeKind::Deleted);
        Ok(())
    }

    fn opaque(&mut self, _rel: &Path) -> io::Result<()> {
        Ok(())
    }

    fn entry(&mut self, abs: &Path, rel: &Path, meta: &fs::Metadata) -> io::Result<()> {
        match lower_meta(&self.lowers, rel) {
            None if placeholder(abs, rel, meta) => {}
            None => {
                self.found.insert(rel.to_path_buf(), ChangeKind::Added);
            }
            // A directory copied up only because something below it changed.
            Some(l) if meta.is_dir() && same(meta, &l) => {}
            Some(_) => {
                self.found.insert(rel.to_path_buf(), ChangeKind::Changed);
            }
        }
        Ok(())
    }
}

impl ChangeSink {
    /// The changes sorted by path, with every directory above one marked changed.
    fn finish(mut self) -> Vec<Change> {
        let paths: Vec<PathBuf> = self.found.keys().cloned().collect();
        for p in paths {
            for a in p.ancestors().skip(1) {
                if a.as_os_str().is_empty() {
                    break;
                }
                self.found
                    .entry(a.to_path_buf())
                    .or_insert(ChangeKind::Changed);
            }
        }
        self.found
            .into_iter()
            .map(|(p, kind)| Change {
                path: format!("/{}", p.display()),
                kind,
            })
            .collect()
    }
}

/// The metadata of `rel` in the union of overlay lower layers (top first): the topmost layer
/// that has it decides; a whiteout or an opaque directory above hides the layers below.
fn lower_meta(lowers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    let comps: Vec<_> = rel.components().collect();
    for lower in lowers {
        let mut at = lower.clone();
        let mut hidden_below = false;
        for (i, c) in comps.iter().enumerate() {
            at.push(c);
            let Ok(m) = fs::symlink_metadata(&at) else {
                break;
            };
            if is_whiteout(&m) {
                return None;
            }
            if i + 1 == comps.len() {
                return Some(m);
            }
            if !m.is_dir() {
                return None;
            }
            hidden_below |= is_opaque(&at);
        }
        if hidden_below {
            return None;
        }
    }
    None
}

/// Sorted children of a directory.
fn children(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut v: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

/// What a [`walk`] is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// An overlay layer: whiteouts and opaque directories are reported as such.
    Layer,
    /// A container's files for `cp`: the contents of kernel filesystems (`/proc`, `/sys`,
    /// cgroups) mounted in it are not part of them.
    Files,
}

/// Whether `dir` is the root of a kernel filesystem whose files are not data.
fn pseudo_fs(dir: &Path) -> bool {
    use nix::sys::statfs as f;
    f::statfs(dir).is_ok_and(|s| {
        [
            f::PROC_SUPER_MAGIC,
            f::SYSFS_MAGIC,
            f::CGROUP_SUPER_MAGIC,
            f::CGROUP2_SUPER_MAGIC,
        ]
        .contains(&s.filesystem_type())
    })
}

/// Walks the tree at `root` (never following a symlink), naming entries `prefix/…`.
fn walk(root: &Path, prefix: &Path, tree: Tree, sink: &mut impl Sink) -> io::Result<()> {
    let overlay = tree == Tree::Layer;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for name in children(&dir)?.into_iter().rev() {
            let r = rel.join(&name);
            let abs = root.join(&r);
            let meta = fs::symlink_metadata(&abs)?;
            if overlay && is_whiteout(&meta) {
                sink.deleted(&prefix.join(&r))?;
                continue;
            }
            sink.entry(&abs, &prefix.join(&r), &meta)?;
            if meta.is_dir() {
                if overlay && is_opaque(&abs) {
                    sink.opaque(&prefix.join(&r))?;
                }
                if tree == Tree::Files && pseudo_fs(&abs) {
                    continue;
                }
                stack.push(r);
            }
        }
    }
    Ok(())
}

/// The tar of an overlay upper dir over its lower dirs, top first (or of a whole root with no
/// parent, and no lower dirs).
pub fn native_diff(upper: &Path, lowers: &[PathBuf], out: impl io::Write) -> io::Result<()> {
    let mut w = TarSink::layer(out, lowers);
    walk(upper, Path::new(""), Tree::Layer, &mut w)?;
    w.finish().map(drop)
}

/// The changes in an overlay upper dir over its lower dirs (top first).
pub fn native_changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    let mut c = ChangeSink {
        lowers: lowers.to_vec(),
        found: BTreeMap::new(),
    };
    walk(upper, Path::new(""), Tree::Layer, &mut c)?;
    Ok(c.finish())
}

/// Writes `src` (a file, symlink or directory; never followed) and everything below it as a
/// tar whose entries are named `name`, `name/…` ("." names the directory's contents); returns
/// the bytes of file content. Directories of `/proc`, `/sys` and cgroup filesystems are
/// written empty.
pub fn tar_tree(src: &Path, name: &Path, out: impl io::Write) -> io::Result<u64> {
    let mut w = TarSink::new(out);
    let meta = fs::symlink_metadata(src)?;
    w.entry(src, name, &meta)?;
    if meta.is_dir() && !pseudo_fs(src) {
        walk(src, name, Tree::Files, &mut w)?;
    }
    w.finish()
}

fn same(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.file_type() == b.file_type()
        && a.mode() == b.mode()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && (a.is_dir()
            || (a.len() == b.len() && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()))
        && a.rdev() == b.rdev()
}

/// Reports what differs between `lower` (the parent's tree) and `upper` (the container's).
fn walk_trees(lower: &Path, upper: &Path, sink: &mut impl Sink) -> io::Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (udir, ldir) = (upper.join(&rel), lower.join(&rel));
        let lower_names = if ldir.is_dir() && !ldir.is_symlink() {
            children(&ldir)?
        } else {
            Vec::new()
        };
        let upper_names = children(&udir)?;
        for name in &lower_names {
            if !upper_names.contains(name) {
                sink.deleted(&rel.join(name))?;
            }
        }
        for name in upper_names.into_iter().rev() {
            let r = rel.join(&name);
            let (u, l) = (upper.join(&r), lower.join(&r));
            let um = fs::symlink_metadata(&u)?;
            let lm = fs::symlink_metadata(&l).ok();
            let changed = match &lm {
                None => true,
                Some(lm) => {
                    !same(&um, lm)
                        || (um.file_type().is_symlink() && fs::read_link(&u)? != fs::read_link(&l)?)
                }
            };
            if changed {
                sink.entry(&u, &r, &um)?;
            }
            if um.is_dir() {
                stack.push(r);
            }
        }
    }
    Ok(())
}

/// The tar of what differs between `lower` (the parent's tree) and `upper` (the container's).
pub fn tree_diff(lower: &Path, upper: &Path, out: impl io::Write) -> io::Result<()> {
    let mut w = TarSink::layer(out, &[lower.to_path_buf()]);
    walk_trees(lower, upper, &mut w)?;
    w.finish().map(drop)
}

/// The changes between `lower` (the parent's tree) and `upper` (the container's).
pub fn tree_changes(lower: &Path, upper: &Path) -> io::Result<Vec<Change>> {
    let mut c = ChangeSink {
        lowers: vec![lower.to_path_buf()],
        found: BTreeMap::new(),
    };
    walk_trees(lower, upper, &mut c)?;
    Ok(c.finish())
}

/// Where a container's changes are read.
enum Source {
    /// A directory holding exactly the container's layer, over these lower dirs (top first).
    Upper {
        upper: PathBuf,
        lowers: Vec<PathBuf>,
    },
    /// The parent's tree and the container's, both mounted.
    Trees { lower: PathBuf, upper: PathBuf },
}

impl Containers {
    /// The container's changes as a layer tar in a temporary file (deleted when closed), with
    /// the image it was made from: the input of `strata commit`. Bind mounts and volumes are
    /// not in the container's snapshot, so they are never part of it.
    pub async fn diff_tar(&self, query: &str) -> Result<(Record, File)> {
        let rec = self.resolve(query)?;
        let bundle = self.bundle(&rec.id);
        let tmp = tempfile::tempfile_in(&bundle)
            .map_err(io_err("create a temporary file in", &bundle))?;
        let out = tmp.try_clone().map_err(io_err("dup", &bundle))?;
        self.read_layer(&rec, "write the layer of", move |src| {
            let out = io::BufWriter::new(out);
            match src {
                Source::Upper { upper, lowers } => native_diff(&upper, &lowers, out),
                Source::Trees { lower, upper } => tree_diff(&lower, &upper, out),
            }
        })
        .await?;
        let mut tmp = tmp;
        io::Seek::seek(&mut tmp, io::SeekFrom::Start(0)).map_err(io_err("rewind", &bundle))?;
        Ok((rec, tmp))
    }

    /// What changed in the container's filesystem against its image (`strata diff`).
    pub async fn changes(&self, query: &str) -> Result<Vec<Change>> {
        let rec = self.resolve(query)?;
        self.read_layer(&rec, "read the changes of", |src| match src {
            Source::Upper { upper, lowers } => native_changes(&upper, &lowers),
            Source::Trees { lower, upper } => tree_changes(&lower, &upper),
        })
        .await
    }

    /// Runs `f` (on a blocking thread) on the container's layer: its overlay upper dir when the
    /// driver's diff is native, else its tree and its parent's, mounted for the call.
    async fn read_layer<T: Send + 'static>(
        &self,
        rec: &Record,
        what: &'static str,
        f: impl FnOnce(Source) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let mounts = self.rootfs_mounts(rec).await?;
        let bundle = self.bundle(&rec.id);
        let native = self.storage.capabilities().await.native_diff;
        let parent = self
            .storage
            .snapshots()
            .stat(strata_proto::snapshots::StatSnapshotRequest {
                key: rec.snapshot.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| storage_err(&self.storage, "stat the root filesystem", e))?
            .into_inner()
            .info
            .map(|i| i.parent)
            .unwrap_or_default();
        // Only two mounts name a directory that holds exactly the container's changes: an
        // overlay's upper dir (when the driver's diff is native) and a writable bind of a
        // snapshot with no parent. Anything else (e.g. aufs's bind of its union) is compared
        // against the parent's tree.
        let upper = mounts.first().and_then(|m| match m.r#type.as_str() {
            "overlay" if native => {
                let opt = |k: &str| m.options.iter().find_map(|o| o.strip_prefix(k));
                let lowers = opt("lowerdir=")
                    .map(|l| l.split(':').map(PathBuf::from).collect())
                    .unwrap_or_default();
                opt("upperdir=").map(|u| Source::Upper {
                    upper: PathBuf::from(u),
                    lowers,
                })
            }
            "bind" if parent.is_empty() && !m.options.iter().any(|o| o == "ro") => {
                Some(Source::Upper {
                    upper: PathBuf::from(&m.source),
                    lowers: Vec::new(),
                })
            }
            _ => None,
        });
        match upper {
            Some(src) => tokio::task::spawn_blocking(move || f(src))
                .await
                .map_err(|e| ContainerError::Runtime(e.to_string()))?
                .map_err(io_err(what, &bundle)),
            None => self.with_trees(rec, &parent, &mounts, what, f).await,
        }
    }

    /// Mounts the parent's tree (a view) and the container's beside its bundle, runs `f` on
    /// them, and unmounts them again.
    async fn with_trees<T: Send + 'static>(
        &self,
        rec: &Record,
        parent: &str,
        mounts: &[strata_proto::types::Mount],
        what: &'static str,
        f: impl FnOnce(Source) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let bundle = self.bundle(&rec.id);
        // Unique names: a commit and a diff of one container may run at once.
        let tag = hex::encode(rand::random::<[u8; 4]>());
        let (lower, upper) = (
            bundle.join(format!("diff-lower-{tag}")),
            bundle.join(format!("diff-upper-{tag}")),
        );
        for d in [&lower, &upper] {
            fs::create_dir_all(d).map_err(io_err("create directory", d))?;
        }
        let view = format!("strata/diff/{}-{tag}", rec.id);
        let result = async {
            if !parent.is_empty() {
                let vm = self
                    .storage
                    .snapshots()
                    .view(strata_proto::snapshots::ViewSnapshotRequest {
                        key: view.clone(),
                        parent: parent.to_string(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| storage_err(&self.storage, "view the parent layer", e))?
                    .into_inner()
                    .mounts;
                strata_snapshotter::mount::mount_all(&vm, &lower)
                    .map_err(|e| ContainerError::Runtime(e.to_string()))?;
            }
            strata_snapshotter::mount::mount_all(mounts, &upper)
                .map_err(|e| ContainerError::Runtime(e.to_string()))?;
            let (l, u) = (lower.clone(), upper.clone());
            tokio::task::spawn_blocking(move || f(Source::Trees { lower: l, upper: u }))
                .await
                .map_err(|e| ContainerError::Runtime(e.to_string()))?
                .map_err(io_err(what, &bundle))
        }
        .await;
        for d in [&upper, &lower] {
            let _ = strata_snapshotter::mount::unmount_all(d);
            let _ = fs::remove_dir(d);
        }
        if !parent.is_empty() {
            let _ = self
                .storage
                .snapshots()
                .remove(strata_proto::snapshots::RemoveSnapshotRequest {
                    key: view,
                    ..Default::default()
                })
                .await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn listed(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect()
    }

    #[test]
    fn tree_diff_adds_changes_and_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let (l, u) = (d.path().join("l"), d.path().join("u"));
        for r in [&l, &u] {
            fs::create_dir_all(r.join("etc")).unwrap();
            fs::write(r.join("etc/same"), "x").unwrap();
        }
        // Same content and times: unchanged.
        let t = fs::metadata(l.join("etc/same"))
            .unwrap()
            .modified()
            .unwrap();
        File::options()
            .write(true)
            .open(u.join("etc/same"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        fs::write(l.join("gone"), "g").unwrap();
        fs::write(u.join("new"), "n").unwrap();
        let mut out = Vec::new();
        tree_diff(&l, &u, &mut out).unwrap();
        let n = names(&out);
        assert!(
            n.contains(&".wh.gone".to_string()) && n.contains(&"new".to_string()),
            "{n:?}"
        );
        assert!(!n.contains(&"etc/same".to_string()), "{n:?}");
    }

    #[test]
    fn tree_changes_letter_added_changed_deleted_and_parents() {
        let d = tempfile::tempdir().unwrap();
        let (l, u) = (d.path().join("l"), d.path().join("u"));
        for r in [&l, &u] {
            fs::create_dir_all(r.join("etc/deep")).unwrap();
        }
        fs::write(l.join("etc/deep/gone"), "g").unwrap();
        fs::write(l.join("etc/conf"), "old").unwrap();
        fs::write(u.join("etc/conf"), "new, longer").unwrap();
        fs::write(u.join("added"), "a").unwrap();
        let c = tree_changes(&l, &u).unwrap();
        assert_eq!(
            listed(&c),
            [
                "A /added",
                "C /etc",
                "C /etc/conf",
                "C /etc/deep",
                "D /etc/deep/gone"
            ]
        );
    }

    #[test]
    fn native_changes_look_at_every_lower_layer() {
        let d = tempfile::tempdir().unwrap();
        let (top, bottom, up) = (d.path().join("l1"), d.path().join("l2"), d.path().join("u"));
        for r in [&top, &bottom, &up] {
            fs::create_dir_all(r.join("etc")).unwrap();
        }
        fs::write(bottom.join("etc/base"), "b").unwrap();
        fs::write(up.join("etc/base"), "changed").unwrap();
        fs::write(up.join("etc/new"), "n").unwrap();
        nix::sys::stat::mknod(
            &up.join("etc/old"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let c = native_changes(&up, &[top, bottom]).unwrap();
        assert_eq!(
            listed(&c),
            ["C /etc", "C /etc/base", "A /etc/new", "D /etc/old"]
        );
    }

    #[test]
    fn tar_tree_names_entries_under_the_given_name() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "data").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let mut out = Vec::new();
        let n = tar_tree(&src, Path::new("dst"), &mut out).unwrap();
        assert_eq!(n, 4);
        let mut got = names(&out);
        got.sort();
        assert_eq!(got, ["dst", "dst/link", "dst/sub", "dst/sub/f"]);
        let mut a = tar::Archive::new(out.as_slice());
        let link = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.header().entry_type() == EntryType::Symlink)
            .unwrap();
        assert_eq!(
            link.link_name().unwrap().unwrap(),
            Path::new("/etc/passwd"),
            "symlinks are stored, never followed"
        );
    }

    #[test]
    fn native_diff_keeps_hard_links() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), "1").unwrap();
        fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        let mut out = Vec::new();
        native_diff(d.path(), &[], &mut out).unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let kinds: Vec<EntryType> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(kinds, vec![EntryType::Regular, EntryType::Link]);
    }

    #[test]
    fn layers_leave_out_the_runtimes_empty_mount_points() {
        let d = tempfile::tempdir().unwrap();
        let (lower, up) = (d.path().join("l"), d.path().join("u"));
        // The image has /etc/hosts but no /proc; the container made /proc and the etc files
        // as mount points, emptied /etc/hosts (a real change) and wrote a file.
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        for dir in ["proc", "etc"] {
            fs::create_dir_all(up.join(dir)).unwrap();
        }
        for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
            fs::write(up.join(f), "").unwrap();
        }
        fs::write(up.join("data"), "d").unwrap();
        let mut out = Vec::new();
        native_diff(&up, std::slice::from_ref(&lower), &mut out).unwrap();
        let mut n = names(&out);
        n.sort();
        assert_eq!(n, ["data", "etc", "etc/hosts"]);
        // No lower layer: /etc holds nothing but mount points, and is left out with them.
        fs::remove_file(up.join("etc/hosts")).unwrap();
        let mut out = Vec::new();
        native_diff(&up, &[], &mut out).unwrap();
        assert_eq!(names(&out), ["data"]);
        // The naive diff does the same against the parent's tree (where /etc is unchanged and
        // the emptied /etc/hosts, now gone, is whited out).
        let mut out = Vec::new();
        tree_diff(&lower, &up, &mut out).unwrap();
        let mut n = names(&out);
        n.sort();
        assert_eq!(n, ["data", "etc/.wh.hosts"]);
    }
}
