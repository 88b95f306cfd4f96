//! What each request does, over [`super::union::Branches`] and the node table.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, RenameFlags, ReplyXattr, Request, TimeOrNow};
use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::nodes::{Key, Nodes, Place};
use super::union::{is_reserved, Content, Found};
use super::{attr, dir_attr, errno, kind, Listing, UnionFs};

pub(super) fn err(e: io::Error) -> Errno {
    Errno::from(e)
}

fn timespec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(st)) => match st.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                TimeSpec::new(-(d.as_secs() as i64), 0)
            }
        },
    }
}

/// Who a new entry belongs to, when the caller is not root.
#[derive(Debug, Clone, Copy)]
pub(super) struct Owner {
    uid: u32,
    gid: u32,
    /// The parent directory is setgid: the group is the parent's, a new directory inherits
    /// the bit.
    setgid: bool,
}

/// What a new entry is.
pub(super) enum NewKind<'a> {
    Dir,
    Node(SFlag, u64),
    Symlink(&'a Path),
}

impl UnionFs {
    pub(super) fn do_lookup(&self, parent: u64, name: &OsStr) -> io::Result<FileAttr> {
        let mut nodes = self.nodes();
        let (dir, layers) = Self::dir_of(&nodes, parent)?;
        let found = self
            .br
            .resolve(&dir, &layers, name)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        let path = dir.join(name);
        Ok(Self::found(&mut nodes, path, found).1)
    }

    pub(super) fn do_getattr(&self, id: u64, fh: Option<u64>) -> io::Result<FileAttr> {
        let nodes = self.nodes();
        let n = nodes.get(id).ok_or_else(|| errno(libc::ENOENT))?;
        let meta = match (n.path(), fh) {
            (Some(_), _) => fs::symlink_metadata(self.real(n)?)?,
            (None, Some(fh)) => self.file(fh)?.metadata()?,
            (None, None) => self
                .open_file_of(id)
                .ok_or_else(|| errno(libc::ENOENT))?
                .1
                .metadata()?,
        };
        Ok(match &n.place {
            Place::Dir(layers) => dir_attr(id, &meta, layers.len() > 1),
            Place::File(_) => attr(id, &meta),
        })
    }

    /// setattr of an open file whose every name is gone: through its descriptor.
    #[allow(clippy::too_many_arguments)]
    fn setattr_unlinked(
        &self,
        id: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> io::Result<FileAttr> {
        // Only a file in the top branch may change; a lower one is read-only.
        let f = match fh {
            Some(fh) => match self
                .files
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&fh)
            {
                Some(o) if o.top => o.file.clone(),
                Some(_) => return Err(errno(libc::EROFS)),
                None => return Err(errno(libc::EBADF)),
            },
            None => match self.open_file_of(id) {
                Some((true, f)) => f,
                Some((false, _)) => return Err(errno(libc::EROFS)),
                None => return Err(errno(libc::ENOENT)),
            },
        };
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(&*f, uid, gid)?;
        }
        if let Some(mode) = mode {
            f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if let Some(size) = size {
            f.set_len(size)?;
        }
        if atime.is_some() || mtime.is_some() {
            nix::sys::stat::futimens(&*f, &timespec(atime), &timespec(mtime))?;
        }
        Ok(attr(id, &f.metadata()?))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_setattr(
        &self,
        id: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> io::Result<FileAttr> {
        let mut nodes = self.nodes();
        if nodes.get(id).is_some_and(|n| n.path().is_none()) {
            drop(nodes);
            return self.setattr_unlinked(id, fh, mode, uid, gid, size, atime, mtime);
        }
        let truncate = size == Some(0);
        let path = self.copy_up(&mut nodes, id, truncate)?;
        let real = self.br.real(0, &path);
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(&real, uid, gid)?;
        }
        if let Some(mode) = mode {
            fs::set_permissions(&real, fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if let Some(size) = size {
            match fh.map(|fh| self.file(fh)) {
                Some(Ok(f)) => f.set_len(size)?,
                _ => OpenOptions::new().write(true).open(&real)?.set_len(size)?,
            }
        }
        if atime.is_some() || mtime.is_some() {
            utimensat(
                nix::fcntl::AT_FDCWD,
                &real,
                &timespec(atime),
                &timespec(mtime),
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
        Ok(attr(id, &fs::symlink_metadata(&real)?))
    }

    /// Prepares a new entry `name` in directory node `parent` (which the kernel has just
    /// looked up and found absent, holding the directory's lock): the parent is copied up and
    /// a whiteout of the name removed. Returns the new entry's union path, whether it must be
    /// opaque (a directory over a lower entry), and the owner to give it — None when the caller
    /// is root:root, as this server is, so the filesystem's own choice (including a setgid
    /// parent's group) is already right.
    fn prepare_new(
        &self,
        nodes: &mut Nodes,
        req: &Request,
        parent: u64,
        name: &OsStr,
    ) -> io::Result<(PathBuf, bool, Option<Owner>)> {
        self.check_writable()?;
        if is_reserved(name) {
            return Err(errno(libc::EPERM));
        }
        let (dir, layers) = Self::dir_of(nodes, parent)?;
        if layers.first() != Some(&0) {
            self.copy_up_dir(nodes, &dir)?;
        }
        // The name resolved to nothing: a lower entry of that name is hidden by a whiteout
        // (replaced here by the new entry, which, as a directory, must hide it too) or by one
        // further down (which keeps hiding it).
        let opaque = self.br.clear_whiteout(&dir, name)?;
        let owner = if (req.uid(), req.gid()) == (0, 0) {
            None
        } else {
            let pmeta = fs::symlink_metadata(self.br.real(0, &dir))?;
            let setgid = pmeta.mode() & libc::S_ISGID != 0;
            Some(Owner {
                uid: req.uid(),
                gid: if setgid { pmeta.gid() } else { req.gid() },
                setgid,
            })
        };
        Ok((dir.join(name), opaque, owner))
    }

    pub(super) fn do_new(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        what: NewKind<'_>,
    ) -> io::Result<FileAttr> {
        let mut nodes = self.nodes();
        let (path, opaque, owner) = self.prepare_new(&mut nodes, req, parent, name)?;
        let real = self.br.real(0, &path);
        let mut perm = mode & !umask & 0o7777;
        match what {
            NewKind::Dir => {
                if owner.as_ref().is_some_and(|o| o.setgid) {
                    perm |= libc::S_ISGID;
                }
                fs::DirBuilder::new().mode(perm).create(&real)?;
                if opaque {
                    self.br.make_opaque(&path)?;
                }
            }
            NewKind::Node(kind, rdev) => {
                nix::sys::stat::mknod(&real, kind, Mode::from_bits_truncate(perm), rdev)?
            }
            NewKind::Symlink(target) => std::os::unix::fs::symlink(target, &real)?,
        }
        if let Some(o) = owner {
            std::os::unix::fs::lchown(&real, Some(o.uid), Some(o.gid))?;
            if !matches!(what, NewKind::Symlink(_)) {
                // chown may clear setgid; the mode asked for wins.
                fs::set_permissions(&real, fs::Permissions::from_mode(perm))?;
            }
        }
        let meta = fs::symlink_metadata(&real)?;
        let found = if meta.is_dir() {
            Found::Dir {
                layers: vec![0],
                meta,
            }
        } else {
            Found::Other { branch: 0, meta }
        };
        Ok(Self::found(&mut nodes, path, found).1)
    }

    pub(super) fn do_create(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<(FileAttr, u64)> {
        let mut nodes = self.nodes();
        let (path, _, owner) = self.prepare_new(&mut nodes, req, parent, name)?;
        let real = self.br.real(0, &path);
        let perm = mode & !umask & 0o7777;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(perm)
            .open(&real)?;
        let mut meta = file.metadata()?;
        if let Some(Owner { uid, gid, .. }) =
            owner.filter(|o| (meta.uid(), meta.gid()) != (o.uid, o.gid))
        {
            std::os::unix::fs::lchown(&real, Some(uid), Some(gid))?;
            if perm & (libc::S_ISUID | libc::S_ISGID) != 0 {
                fs::set_permissions(&real, fs::Permissions::from_mode(perm))?;
            }
            meta = file.metadata()?;
        }
        let (id, a) = Self::found(&mut nodes, path, Found::Other { branch: 0, meta });
        Ok((a, self.add_file(id, true, file)))
    }

    pub(super) fn do_open(&self, id: u64, flags: i32) -> io::Result<u64> {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = flags & libc::O_TRUNC != 0;
        let (top, file) = if write || truncate {
            let content = if truncate {
                Content::Empty
            } else {
                self.stage_large(id)
            };
            let mut nodes = self.nodes();
            let path = self.copy_up_with(&mut nodes, id, content)?;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.br.real(0, &path))?;
            (true, f)
        } else {
            let nodes = self.nodes();
            let n = nodes.get(id).ok_or_else(|| errno(libc::ENOENT))?;
            (
                matches!(n.place, Place::File(0)),
                fs::File::open(self.real(n)?)?,
            )
        };
        Ok(self.add_file(id, top, file))
    }

    pub(super) fn do_opendir(&self, id: u64) -> io::Result<u64> {
        // Only checked here; the listing is made when the kernel reads it (with a cached
        // listing, it never does).
        Self::dir_of(&self.nodes(), id)?;
        let fh = self.new_fh();
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, (id, None));
        Ok(fh)
    }

    /// The listing of open directory `fh`, made on the first read (and again on a rewind).
    pub(super) fn listing(&self, fh: u64, offset: u64) -> io::Result<Arc<Listing>> {
        let (id, cached) = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
            .ok_or_else(|| errno(libc::EBADF))?;
        if let (Some(l), false) = (cached, offset == 0) {
            return Ok(l);
        }
        let (dir, layers) = Self::dir_of(&self.nodes(), id)?;
        let mut entries = vec![
            (".".into(), FileType::Directory, id),
            ("..".into(), FileType::Directory, id),
        ];
        for e in self.br.list(&dir, &layers)? {
            entries.push((e.name, kind(e.kind), e.ino.max(1)));
        }
        let entries = Arc::new(entries);
        if let Some(slot) = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&fh)
        {
            slot.1 = Some(entries.clone());
        }
        Ok(entries)
    }

    pub(super) fn do_unlink(&self, parent: u64, name: &OsStr, dir_wanted: bool) -> io::Result<()> {
        self.check_writable()?;
        let mut nodes = self.nodes();
        let (dir, layers) = Self::dir_of(&nodes, parent)?;
        let found = self
            .br
            .resolve(&dir, &layers, name)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        let path = dir.join(name);
        match (&found, dir_wanted) {
            (Found::Dir { .. }, false) => return Err(errno(libc::EISDIR)),
            (Found::Other { .. }, true) => return Err(errno(libc::ENOTDIR)),
            (Found::Dir { layers: dl, .. }, true) if !self.br.list(&path, dl)?.is_empty() => {
                return Err(errno(libc::ENOTEMPTY));
            }
            _ => {}
        }
        let in_top = match &found {
            Found::Dir { layers, .. } => layers.first() == Some(&0),
            Found::Other { branch, .. } => *branch == 0,
        };
        if in_top {
            self.br.remove_top(&path)?;
        }
        if self.br.lower_has(&dir, &layers, name)? {
            self.copy_up_dir(&mut nodes, &dir)?;
            self.br.whiteout(&dir, name)?;
        }
        nodes.unlinked(&key_of(&found, &path), &path);
        Ok(())
    }

    pub(super) fn do_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> io::Result<()> {
        self.check_writable()?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(errno(libc::EINVAL));
        }
        if is_reserved(newname) {
            return Err(errno(libc::EPERM));
        }
        let mut nodes = self.nodes();
        let (dir, layers) = Self::dir_of(&nodes, parent)?;
        let (newdir, newlayers) = Self::dir_of(&nodes, newparent)?;
        let src = self
            .br
            .resolve(&dir, &layers, name)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        let from = dir.join(name);
        let to = newdir.join(newname);
        if from == to {
            return Ok(());
        }
        let dst = self.br.resolve(&newdir, &newlayers, newname)?;
        if dst.is_some() && flags.contains(RenameFlags::RENAME_NOREPLACE) {
            return Err(errno(libc::EEXIST));
        }
        let src_is_dir = matches!(src, Found::Dir { .. });
        match (&src, &dst) {
            // aufs (without dirren) and overlayfs (without redirect_dir) alike: a directory
            // with lower parts cannot move; mv copies it instead.
            (Found::Dir { layers: l, .. }, _) if l.as_slice() != [0] => {
                return Err(errno(libc::EXDEV))
            }
            (_, Some(Found::Dir { layers: dl, .. })) => {
                if !src_is_dir {
                    return Err(errno(libc::EISDIR));
                }
                if !self.br.list(&to, dl)?.is_empty() {
                    return Err(errno(libc::ENOTEMPTY));
                }
            }
            (Found::Dir { .. }, Some(Found::Other { .. })) => return Err(errno(libc::ENOTDIR)),
            _ => {}
        }
        if let Found::Other { branch, meta } = &src {
            if *branch != 0 {
                self.copy_up_dir(&mut nodes, &dir)?;
                let (m, made) = self.br.copy_up_linked(&from, *branch, Content::Copy)?;
                for d in made {
                    nodes.dir_in_top(&d);
                }
                if let Some(id) = nodes.find(&Key::File(meta.dev(), meta.ino())) {
                    nodes.rekey(id, Key::File(m.dev(), m.ino()));
                    if let Some(n) = nodes.get_mut(id) {
                        n.place = Place::File(0);
                    }
                }
            }
        }
        self.copy_up_dir(&mut nodes, &newdir)?;
        if let Some(Found::Dir { layers: dl, .. }) = &dst {
            if dl.first() == Some(&0) {
                self.br.remove_top(&to)?;
            }
        }
        self.br.clear_whiteout(&newdir, newname)?;
        fs::rename(self.br.real(0, &from), self.br.real(0, &to))?;
        if src_is_dir && self.br.lower_has(&newdir, &newlayers, newname)? {
            self.br.make_opaque(&to)?;
        }
        if self.br.lower_has(&dir, &layers, name)? {
            self.br.whiteout(&dir, name)?;
        }
        if let Some(d) = &dst {
            nodes.unlinked(&key_of(d, &to), &to);
        }
        nodes.renamed(&from, &to);
        if src_is_dir {
            nodes.set_dir_layers(&to, vec![0]);
        }
        Ok(())
    }

    pub(super) fn do_link(&self, id: u64, newparent: u64, newname: &OsStr) -> io::Result<FileAttr> {
        let mut nodes = self.nodes();
        if matches!(nodes.get(id).map(|n| &n.place), Some(Place::Dir(_)) | None) {
            return Err(errno(libc::EPERM));
        }
        let (dir, layers) = Self::dir_of(&nodes, newparent)?;
        if is_reserved(newname) {
            return Err(errno(libc::EPERM));
        }
        if self.br.resolve(&dir, &layers, newname)?.is_some() {
            return Err(errno(libc::EEXIST));
        }
        let src = self.copy_up(&mut nodes, id, false)?;
        self.copy_up_dir(&mut nodes, &dir)?;
        self.br.clear_whiteout(&dir, newname)?;
        let to = dir.join(newname);
        fs::hard_link(self.br.real(0, &src), self.br.real(0, &to))?;
        let meta = fs::symlink_metadata(self.br.real(0, &to))?;
        Ok(Self::found(&mut nodes, to, Found::Other { branch: 0, meta }).1)
    }

    pub(super) fn xattr_path(&self, id: u64, write: bool) -> io::Result<PathBuf> {
        let mut nodes = self.nodes();
        if write {
            let path = self.copy_up(&mut nodes, id, false)?;
            Ok(self.br.real(0, &path))
        } else {
            let n = nodes.get(id).ok_or_else(|| errno(libc::ENOENT))?;
            self.real(n)
        }
    }
}

/// The node key of what a lookup of `path` found.
fn key_of(found: &Found, path: &Path) -> Key {
    match found {
        Found::Dir { .. } => Key::Dir(path.to_path_buf()),
        Found::Other { meta, .. } => Key::File(meta.dev(), meta.ino()),
    }
}

pub(super) fn reply_xattr(reply: ReplyXattr, data: io::Result<Vec<u8>>, size: u32) {
    match data {
        Err(e) => reply.error(err(e)),
        Ok(d) if size == 0 => reply.size(d.len() as u32),
        Ok(d) if d.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
        Ok(d) => reply.data(&d),
    }
}
