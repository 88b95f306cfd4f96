//! The kernel's requests, answered over [`super::union::Branches`].

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::nodes::{Key, Nodes, Place};
use super::union::{is_reserved, Found};
use super::{attr, errno, kind, sys, Listing, UnionFs, TTL};

fn err(e: io::Error) -> Errno {
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

/// What a new entry is.
enum NewKind<'a> {
    Dir,
    Node(SFlag, u64),
    Symlink(&'a Path),
}

impl UnionFs {
    fn do_lookup(&self, parent: u64, name: &OsStr) -> io::Result<FileAttr> {
        let mut nodes = self.nodes();
        let (dir, layers) = Self::dir_of(&nodes, parent)?;
        let found = self
            .br
            .resolve(&dir, &layers, name)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        let path = dir.join(name);
        Ok(Self::found(&mut nodes, path, found).1)
    }

    fn do_getattr(&self, id: u64, fh: Option<u64>) -> io::Result<FileAttr> {
        let nodes = self.nodes();
        let n = nodes.get(id).ok_or_else(|| errno(libc::ENOENT))?;
        let meta = match (n.path(), fh) {
            (None, Some(fh)) => self.file(fh)?.metadata()?,
            _ => fs::symlink_metadata(self.real(n)?)?,
        };
        Ok(attr(id, &meta))
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
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

    /// Checks and prepares a new entry `name` in directory node `parent`: the parent is copied
    /// up and a whiteout of the name removed. Returns the new entry's union path, whether it
    /// must be opaque (a directory over a lower entry), and the owner it gets.
    fn prepare_new(
        &self,
        nodes: &mut Nodes,
        req: &Request,
        parent: u64,
        name: &OsStr,
    ) -> io::Result<(PathBuf, bool, u32, u32, bool)> {
        self.check_writable()?;
        if is_reserved(name) {
            return Err(errno(libc::EPERM));
        }
        let (dir, layers) = Self::dir_of(nodes, parent)?;
        if self.br.resolve(&dir, &layers, name)?.is_some() {
            return Err(errno(libc::EEXIST));
        }
        if layers.first() != Some(&0) {
            self.copy_up_dir(nodes, &dir)?;
        }
        // The name resolved to nothing: a lower entry of that name is hidden by a whiteout
        // (replaced here by the new entry, which, as a directory, must hide it too) or by one
        // further down (which keeps hiding it).
        let opaque = self.br.clear_whiteout(&dir, name)?;
        let pmeta = fs::symlink_metadata(self.br.real(0, &dir))?;
        let setgid = pmeta.mode() & libc::S_ISGID != 0;
        let gid = if setgid { pmeta.gid() } else { req.gid() };
        Ok((dir.join(name), opaque, req.uid(), gid, setgid))
    }

    fn do_new(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        what: NewKind<'_>,
    ) -> io::Result<FileAttr> {
        let mut nodes = self.nodes();
        let (path, opaque, uid, gid, setgid) = self.prepare_new(&mut nodes, req, parent, name)?;
        let real = self.br.real(0, &path);
        let mut perm = mode & !umask & 0o7777;
        match what {
            NewKind::Dir => {
                if setgid {
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
        std::os::unix::fs::lchown(&real, Some(uid), Some(gid))?;
        if !matches!(what, NewKind::Symlink(_)) {
            // chown may clear setgid; the mode asked for wins.
            fs::set_permissions(&real, fs::Permissions::from_mode(perm))?;
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

    fn do_create(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<(FileAttr, u64)> {
        let mut nodes = self.nodes();
        let (path, _, uid, gid, _) = self.prepare_new(&mut nodes, req, parent, name)?;
        let real = self.br.real(0, &path);
        let perm = mode & !umask & 0o7777;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(perm)
            .open(&real)?;
        let mut meta = file.metadata()?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::lchown(&real, Some(uid), Some(gid))?;
            if perm & (libc::S_ISUID | libc::S_ISGID) != 0 {
                fs::set_permissions(&real, fs::Permissions::from_mode(perm))?;
            }
            meta = file.metadata()?;
        }
        let (_, a) = Self::found(&mut nodes, path, Found::Other { branch: 0, meta });
        let fh = self.new_fh();
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(file));
        Ok((a, fh))
    }

    fn do_open(&self, id: u64, flags: i32) -> io::Result<u64> {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = flags & libc::O_TRUNC != 0;
        let file = if write || truncate {
            let mut nodes = self.nodes();
            let path = self.copy_up(&mut nodes, id, truncate)?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.br.real(0, &path))?
        } else {
            let nodes = self.nodes();
            let n = nodes.get(id).ok_or_else(|| errno(libc::ENOENT))?;
            fs::File::open(self.real(n)?)?
        };
        let fh = self.new_fh();
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(file));
        Ok(fh)
    }

    fn do_opendir(&self, id: u64) -> io::Result<u64> {
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
    fn listing(&self, fh: u64, offset: u64) -> io::Result<Arc<Listing>> {
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

    fn do_unlink(&self, parent: u64, name: &OsStr, dir_wanted: bool) -> io::Result<()> {
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

    fn do_rename(
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
                let (m, made) = self.br.copy_up_linked(&from, *branch, false)?;
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

    fn do_link(&self, id: u64, newparent: u64, newname: &OsStr) -> io::Result<FileAttr> {
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

    fn xattr_path(&self, id: u64, write: bool) -> io::Result<PathBuf> {
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

fn reply_xattr(reply: ReplyXattr, data: io::Result<Vec<u8>>, size: u32) {
    match data {
        Err(e) => reply.error(err(e)),
        Ok(d) if size == 0 => reply.size(d.len() as u32),
        Ok(d) if d.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
        Ok(d) => reply.data(&d),
    }
}

impl Filesystem for UnionFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Lookups in one directory may run in parallel; symlink targets never change in place.
        let wanted = InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_CACHE_SYMLINKS;
        let _ = config.add_capabilities(wanted & config.capabilities());
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.do_lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.do_getattr(ino.0, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino.0, mode, uid, gid, size, atime, mtime, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = (|| {
            let nodes = self.nodes();
            let n = nodes.get(ino.0).ok_or_else(|| errno(libc::ENOENT))?;
            fs::read_link(self.real(n)?)
        })();
        match r {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        let what = NewKind::Node(kind, u64::from(rdev));
        match self.do_new(req, parent.0, name, mode, umask, what) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.do_new(req, parent.0, name, mode, umask, NewKind::Dir) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_unlink(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_unlink(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        match self.do_new(req, parent.0, link_name, 0o777, 0, NewKind::Symlink(target)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.do_rename(parent.0, name, newparent.0, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.do_link(ino.0, newparent.0, newname) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(ino.0, flags.0) {
            // Only this mount changes the files it shows, so the page cache stays valid.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = (|| {
            let f = self.file(fh.0)?;
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                match f.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(done);
            Ok(buf)
        })();
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.file(fh.0).and_then(|f| f.write_all_at(data, offset)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.file(fh.0).and_then(|f| {
            if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(ino.0) {
            // The kernel may keep listings: every change to a directory goes through this
            // mount, and the kernel drops its cached listing when it makes one.
            Ok(fh) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.listing(fh.0, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(err(e)),
        };
        for (i, (name, kind, ino)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(self.br.top()) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let r = self
            .xattr_path(ino.0, true)
            .and_then(|p| sys::lsetxattr(&p, name, value, flags));
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = self
            .xattr_path(ino.0, false)
            .and_then(|p| sys::lgetxattr(&p, name));
        reply_xattr(reply, r, size);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.xattr_path(ino.0, false).and_then(|p| {
            let mut out = Vec::new();
            for n in sys::llistxattr(&p)? {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
            Ok(out)
        });
        reply_xattr(reply, r, size);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .xattr_path(ino.0, true)
            .and_then(|p| sys::lremovexattr(&p, name));
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel has already checked.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(req, parent.0, name, mode, umask) {
            Ok((a, fh)) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(err(e)),
        }
    }
}
