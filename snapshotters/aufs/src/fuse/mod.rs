//! The FUSE union filesystem with aufs semantics, served where the kernel has no aufs.
//!
//! [`union::Branches`] holds the semantics (lookup top-down, whiteouts, opaque directories,
//! merged listings, copy-up); [`nodes::Nodes`] maps FUSE node ids to union paths; this module
//! answers the kernel. Mounted with `default_permissions` (the kernel checks modes against the
//! attributes we return) and `allow_other` (containers run as any user).

mod nodes;
mod ops;
mod requests;

pub mod union;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, MountOption, SessionACL};

use nodes::{Key, Node, Nodes, Place};
use union::{Branches, Content, Found};

/// How long the kernel may cache entries and attributes. Every change to the branches goes
/// through this mount (lower layers are immutable, the top is written only by this server),
/// and the kernel updates or drops what it cached when it makes a change, so caching is safe;
/// fuse-overlayfs, on the same assumption, caches for 10^9 s.
const TTL: Duration = Duration::from_secs(60);

/// Lower files at least this large are copied up outside the node table's lock.
const STAGE_ABOVE: u64 = 1 << 20;

/// A directory listing kept for an open directory: name, type, inode number.
type Listing = Vec<(OsString, FileType, u64)>;

/// An open directory: its node, and its listing once the kernel read it.
type OpenDir = (u64, Option<Arc<Listing>>);

/// An open file.
#[derive(Debug, Clone)]
struct OpenFile {
    /// Its node.
    node: u64,
    /// Whether it is in the top branch (only those may be changed).
    top: bool,
    file: Arc<File>,
}

/// The filesystem.
#[derive(Debug)]
pub struct UnionFs {
    br: Branches,
    root_layers: Vec<usize>,
    nodes: Mutex<Nodes>,
    files: Mutex<HashMap<u64, OpenFile>>,
    /// Open directories: the node, and its listing once the kernel asked for it.
    dirs: Mutex<HashMap<u64, OpenDir>>,
    next_fh: AtomicU64,
}

fn time(secs: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::new(0, nsec)
    }
}

fn kind(ft: std::fs::FileType) -> FileType {
    if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_fifo() {
        FileType::NamedPipe
    } else if ft.is_char_device() {
        FileType::CharDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else if ft.is_socket() {
        FileType::Socket
    } else {
        FileType::RegularFile
    }
}

fn attr(id: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(id),
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(m.file_type()),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

/// A directory's attributes. A merged directory's link count is 1, "unknown", as overlayfs
/// reports it: the top branch's count misses the subdirectories of the others, and `find`
/// would skip them if it trusted it.
fn dir_attr(id: u64, m: &Metadata, merged: bool) -> FileAttr {
    let mut a = attr(id, m);
    if merged {
        a.nlink = 1;
    }
    a
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl UnionFs {
    /// A union of `branches`.
    pub fn new(br: Branches) -> io::Result<Self> {
        let root_layers = br.root_layers()?;
        Ok(UnionFs {
            nodes: Mutex::new(Nodes::new(root_layers.clone())),
            root_layers,
            br,
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        })
    }

    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.br.writable() {
            Ok(())
        } else {
            Err(errno(libc::EROFS))
        }
    }

    /// The real path that shows node `n`.
    fn real(&self, n: &Node) -> io::Result<PathBuf> {
        let path = n.path().ok_or_else(|| errno(libc::ENOENT))?;
        Ok(match &n.place {
            Place::Dir(layers) => self.br.real(layers.first().copied().unwrap_or(0), path),
            Place::File(b) => self.br.real(*b, path),
        })
    }

    /// The union path and merged branches of directory node `id`.
    fn dir_of(nodes: &Nodes, id: u64) -> io::Result<(PathBuf, Vec<usize>)> {
        let n = nodes.get(id).ok_or_else(|| errno(libc::ENOENT))?;
        match &n.place {
            Place::Dir(layers) => Ok((
                n.path().ok_or_else(|| errno(libc::ENOENT))?.to_path_buf(),
                layers.clone(),
            )),
            Place::File(_) => Err(errno(libc::ENOTDIR)),
        }
    }

    /// Records a lookup that found `found` at `path`; returns the node id and its attributes.
    fn found(nodes: &mut Nodes, path: PathBuf, found: Found) -> (u64, FileAttr) {
        match found {
            Found::Dir { layers, meta } => {
                let merged = layers.len() > 1;
                let id = nodes.looked_up(Key::Dir(path.clone()), path, Place::Dir(layers));
                (id, dir_attr(id, &meta, merged))
            }
            Found::Other { branch, meta } => {
                let id =
                    nodes.looked_up(Key::File(meta.dev(), meta.ino()), path, Place::File(branch));
                (id, attr(id, &meta))
            }
        }
    }

    /// Makes sure directory `rel` is in the top branch.
    fn copy_up_dir(&self, nodes: &mut Nodes, rel: &Path) -> io::Result<()> {
        for made in self.br.copy_up_dirs(rel, &self.root_layers)? {
            nodes.dir_in_top(&made);
        }
        Ok(())
    }

    /// Makes sure node `id` is in the top branch (copying it up with its parents); returns its
    /// union path. `truncate`: the content is about to be thrown away, so it is not copied.
    fn copy_up(&self, nodes: &mut Nodes, id: u64, truncate: bool) -> io::Result<PathBuf> {
        let content = if truncate {
            Content::Empty
        } else {
            Content::Copy
        };
        self.copy_up_with(nodes, id, content)
    }

    /// [`Self::copy_up`], with the content as `content` says (a staged copy that turns out
    /// not to be needed is removed).
    fn copy_up_with(&self, nodes: &mut Nodes, id: u64, content: Content) -> io::Result<PathBuf> {
        let place = (|| {
            self.check_writable()?;
            let n = nodes.get(id).ok_or_else(|| errno(libc::ENOENT))?;
            let path = n.path().ok_or_else(|| errno(libc::ENOENT))?.to_path_buf();
            Ok((path, n.place.clone()))
        })();
        let (path, place) = match place {
            Ok(p) => p,
            Err(e) => {
                content.discard();
                return Err(e);
            }
        };
        match place {
            Place::Dir(_) => {
                content.discard();
                self.copy_up_dir(nodes, &path)?
            }
            Place::File(0) => content.discard(),
            Place::File(b) => {
                if let Err(e) = self.copy_up_dir(nodes, path.parent().unwrap_or(Path::new(""))) {
                    content.discard();
                    return Err(e);
                }
                let (meta, made) = self.br.copy_up_linked(&path, b, content)?;
                for d in made {
                    nodes.dir_in_top(&d);
                }
                nodes.rekey(id, Key::File(meta.dev(), meta.ino()));
                if let Some(n) = nodes.get_mut(id) {
                    n.place = Place::File(0);
                }
            }
        }
        Ok(path)
    }

    /// For a write to a large lower file: its content copied to a temporary file without
    /// holding the node table, so other calls on this union (and the plugin's probe) are not
    /// held up for the length of the copy. [`Content::Copy`] when there is nothing to stage.
    fn stage_large(&self, id: u64) -> Content {
        let (path, b) = {
            let nodes = self.nodes();
            match nodes.get(id).map(|n| (n.path(), &n.place)) {
                Some((Some(p), Place::File(b))) if *b != 0 => (p.to_path_buf(), *b),
                _ => return Content::Copy,
            }
        };
        match std::fs::symlink_metadata(self.br.real(b, &path)) {
            Ok(m) if m.is_file() && m.len() >= STAGE_ABOVE => {}
            _ => return Content::Copy,
        }
        match self.br.stage(&path, b) {
            Ok(tmp) => Content::Staged(tmp),
            Err(e) => {
                tracing::warn!(%e, path = %path.display(), "staging a copy-up failed; copying under the lock");
                Content::Copy
            }
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn file(&self, fh: u64) -> io::Result<Arc<File>> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .map(|o| o.file.clone())
            .ok_or_else(|| errno(libc::EBADF))
    }

    /// Registers an open file of node `node`; returns its handle.
    fn add_file(&self, node: u64, top: bool, file: File) -> u64 {
        let fh = self.new_fh();
        self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(
            fh,
            OpenFile {
                node,
                top,
                file: Arc::new(file),
            },
        );
        fh
    }

    /// An open file of node `node` (one in the top branch if there is one): how a node whose
    /// every name is gone is still reached.
    fn open_file_of(&self, node: u64) -> Option<(bool, Arc<File>)> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut best: Option<&OpenFile> = None;
        for o in files.values().filter(|o| o.node == node) {
            if best.is_none_or(|b| !b.top && o.top) {
                best = Some(o);
            }
        }
        best.map(|o| (o.top, o.file.clone()))
    }
}

/// Mounts `branches` at `mountpoint` and serves until it is unmounted. `ready` is called once
/// the mount is in place.
pub fn serve(branches: Branches, mountpoint: &Path, ready: impl FnOnce()) -> io::Result<()> {
    let ro = !branches.writable();
    let fs = UnionFs::new(branches)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("strata-aufs".into()),
        MountOption::Subtype("strata-aufs".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
        if ro { MountOption::RO } else { MountOption::RW },
    ];
    config.acl = SessionACL::All;
    // Enough that a probe or a lookup finds a free thread while others wait on the disk.
    config.n_threads = Some(4);
    let session = fuser::Session::new(fs, mountpoint, &config)?;
    ready();
    session.run()
}
