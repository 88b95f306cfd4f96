//! `strata cp [-a] [-L] [-q] CONTAINER:SRC DEST|-` and `strata cp [-a] [-L] [-q] SRC|- CONTAINER:DEST`:
//! files and directories between a container (running or not) and the host, with Docker's path
//! rules:
//! - a trailing `/.` on the source copies a directory's contents, not the directory;
//! - onto an existing directory the source goes inside it; onto an existing file it replaces
//!   it (a directory cannot); onto a missing path it takes that name, whose parent must exist
//!   ("no such directory" otherwise), and a trailing `/` says that path must be a directory;
//! - `-` is a tar on stdout (from a container) or stdin (into a container directory);
//! - `-L` follows a symlink given as the source; `-a` keeps the files' uid and gid (without it
//!   files copied into a container belong to its root user, copied out to the caller).
//!
//! The engine resolves container paths inside the container's root; the tar it sends is
//! extracted here so that nothing lands outside the destination directory.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};

use strata_proto::engine::{CopyFromRequest, CopyToRequest, PathStat, StatPathRequest};

use super::image_util::{human_size, upload_reader};
use crate::client::{Client, CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Archive mode: keep the files' uid and gid
    #[arg(short = 'a', long = "archive")]
    pub archive: bool,
    /// Always follow a symbolic link given as SRC
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Do not print the copied size
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH, a local path, or - (a tar on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH, a local path, or - (a tar on stdout)
    pub dest: String,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Local(String),
    Container { name: String, path: String },
}

/// Docker's reading of a copy argument: an absolute path, one starting with `.`, or one
/// without `:` is local; else `CONTAINER:PATH`.
fn side(arg: &str) -> Side {
    if arg.starts_with('/') {
        return Side::Local(arg.into());
    }
    match arg.split_once(':') {
        Some((name, path)) if !name.starts_with('.') => Side::Container {
            name: name.into(),
            path: path.into(),
        },
        _ => Side::Local(arg.into()),
    }
}

/// Whether a path says it must be a directory (`…/` or `…/.`).
fn asserts_dir(p: &str) -> bool {
    p.ends_with('/') || p.ends_with("/.")
}

/// The parent and the last component of a path, as Docker splits a destination.
fn split_dir_entry(p: &str) -> (String, String) {
    let trimmed = p.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/.").unwrap_or(trimmed);
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let path = Path::new(trimmed);
    let base = path
        .file_name()
        .map_or(".".into(), |b| b.to_string_lossy().into_owned());
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => ".".into(),
        Some(d) => d.to_string_lossy().into_owned(),
        None => "/".into(),
    };
    (dir, base)
}

/// What a copy's destination is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dest {
    path: String,
    exists: bool,
    is_dir: bool,
}

/// Where the tar goes and what its top entry must be called there (None: as it is).
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    dir: String,
    name: Option<String>,
}

/// Docker's `PrepareArchiveCopy`: extract into the destination (a directory), or into its
/// parent under the destination's name.
fn plan(src_is_dir: bool, dest: &Dest, shown: &str) -> CmdResult<Plan> {
    let (parent, base) = split_dir_entry(&dest.path);
    match (dest.exists, dest.is_dir, src_is_dir) {
        (true, true, _) => Ok(Plan {
            dir: dest.path.clone(),
            name: None,
        }),
        (true, false, true) => Err(Failure::new(format!(
            "cannot copy a directory onto the file {shown}"
        ))),
        (false, _, false) if asserts_dir(&dest.path) => Err(Failure::new(format!(
            "cannot copy a file to {shown}: no such directory"
        ))),
        _ => Ok(Plan {
            dir: parent,
            name: Some(base),
        }),
    }
}

fn is_dir_mode(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_symlink_mode(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFLNK
}

/// Whether the engine said a path (not the container) does not exist.
fn path_missing(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::NotFound && s.message().starts_with("could not find the file")
}

async fn stat(client: &Client, container: &str, path: &str) -> Result<PathStat, tonic::Status> {
    Ok(client
        .containers()
        .stat_path(StatPathRequest {
            container: container.into(),
            path: path.into(),
        })
        .await?
        .into_inner())
}

pub async fn run(a: Args, client: &Client) -> CmdResult<i32> {
    match (side(&a.src), side(&a.dest)) {
        (Side::Container { .. }, Side::Container { .. }) => Err(Failure::new(
            "copying between containers is not supported: copy to the host first",
        )),
        (Side::Local(_), Side::Local(_)) => Err(Failure::new(
            "name a container on one side as CONTAINER:PATH (both paths are local)",
        )),
        (Side::Container { name, path }, Side::Local(dest)) => {
            if path.is_empty() {
                return Err(Failure::new(format!(
                    "the source path in {:?} is empty",
                    a.src
                )));
            }
            copy_from(&a, client, &name, &path, &dest).await
        }
        (Side::Local(src), Side::Container { name, path }) => {
            if path.is_empty() {
                return Err(Failure::new(format!(
                    "the destination path in {:?} is empty",
                    a.dest
                )));
            }
            copy_to(&a, client, &src, &name, &path).await
        }
    }
}

/// What "Successfully copied" reports, on a terminal only and unless `-q`.
fn report(a: &Args, bytes: u64, to: &str) {
    if !a.quiet && io::stderr().is_terminal() {
        eprintln!("Successfully copied {} to {to}", human_size(bytes as i64));
    }
}

/// A local destination: followed if it is a symlink; if missing, its parent must be a
/// directory.
fn local_dest(p: &str) -> CmdResult<Dest> {
    let mut path = PathBuf::from(p);
    for _ in 0..10 {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&path)?;
                path = path.parent().unwrap_or(Path::new("/")).join(target);
            }
            Ok(m) => {
                return Ok(Dest {
                    path: keep_trailing(p, &path),
                    exists: true,
                    is_dir: m.is_dir(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let shown = path.to_string_lossy().into_owned();
                let (parent, _) = split_dir_entry(&shown);
                return match fs::metadata(&parent) {
                    Ok(m) if m.is_dir() => Ok(Dest {
                        path: keep_trailing(p, &path),
                        exists: false,
                        is_dir: false,
                    }),
                    _ => Err(Failure::new(format!(
                        "cannot copy to {p}: no such directory {parent}"
                    ))),
                };
            }
            Err(e) => return Err(Failure::new(format!("cannot copy to {p}: {e}"))),
        }
    }
    Err(Failure::new(format!(
        "cannot copy to {p}: too many symlinks"
    )))
}

/// `path` with the trailing `/` or `/.` of the original, which the copy rules look at.
fn keep_trailing(original: &str, path: &Path) -> String {
    let s = path.to_string_lossy().into_owned();
    if original.ends_with("/.") && !s.ends_with("/.") {
        format!("{}/.", s.trim_end_matches('/'))
    } else if original.ends_with('/') && !s.ends_with('/') {
        format!("{s}/")
    } else {
        s
    }
}

async fn copy_from(
    a: &Args,
    client: &Client,
    container: &str,
    src: &str,
    dest: &str,
) -> CmdResult<i32> {
    let dest_info = if dest == "-" {
        None
    } else {
        Some(local_dest(dest)?)
    };
    let mut src = src.to_string();
    let mut st = stat(client, container, &src).await?;
    if a.follow_link && is_symlink_mode(st.mode) {
        src = keep_trailing(&src, Path::new(&st.link_target));
        st = stat(client, container, &src).await?;
    }
    let mut stream = client
        .containers()
        .copy_from(CopyFromRequest {
            container: container.into(),
            path: src.clone(),
        })
        .await?
        .into_inner();
    let Some(dest_info) = dest_info else {
        let mut out = io::stdout().lock();
        while let Some(chunk) = stream.message().await? {
            out.write_all(&chunk.data)
                .map_err(|e| Failure::new(format!("write the tar to stdout: {e}")))?;
        }
        out.flush()
            .map_err(|e| Failure::new(format!("write the tar to stdout: {e}")))?;
        return Ok(0);
    };
    let plan = plan(is_dir_mode(st.mode), &dest_info, dest)?;
    // The tar arrives through a pipe; a thread extracts it.
    let (r, mut w) = io::pipe().map_err(|e| Failure::new(format!("make a pipe: {e}")))?;
    let into = PathBuf::from(&plan.dir);
    let rename = plan.name.map(|to| (st.name.clone(), to));
    let keep_owner = a.archive;
    let extractor = std::thread::spawn(move || extract(r, &into, rename.as_ref(), keep_owner));
    let mut stopped = false;
    while let Some(chunk) = stream.message().await? {
        if w.write_all(&chunk.data).is_err() {
            // The extractor stopped; its error says why.
            stopped = true;
            break;
        }
    }
    drop(w);
    let written = extractor
        .join()
        .map_err(|_| Failure::new("the extracting thread died"))?
        .map_err(|e| Failure::new(format!("copy to {dest}: {e}")))?;
    if stopped {
        return Err(Failure::new(format!(
            "copy to {dest}: the extraction stopped early"
        )));
    }
    report(a, written, dest);
    Ok(0)
}

/// An entry's path renamed per `rename` (the top name → the destination's); `None` for the
/// top entry "." when it is not renamed (the destination directory itself).
fn renamed(path: &Path, rename: Option<&(String, String)>) -> io::Result<Option<PathBuf>> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("refusing the tar entry {}", path.display()),
                ))
            }
        }
    }
    let rel: PathBuf = parts.iter().collect();
    // `to` and what follows the renamed top (never a trailing `/` for the top itself).
    let under = |to: &str, rest: &Path| {
        if rest.as_os_str().is_empty() {
            PathBuf::from(to)
        } else {
            Path::new(to).join(rest)
        }
    };
    Ok(match rename {
        Some((from, to)) if from == "." => Some(under(to, &rel)),
        Some((from, to)) => match rel.strip_prefix(from) {
            Ok(rest) => Some(under(to, rest)),
            Err(_) => Some(rel),
        },
        None if rel.as_os_str().is_empty() => None,
        None => Some(rel),
    })
}

/// Whether `p`'s nearest existing ancestor resolves inside `root` (already canonical).
fn inside(root: &Path, p: &Path) -> bool {
    let mut at = p;
    loop {
        if let Ok(c) = fs::canonicalize(at) {
            return c.starts_with(root);
        }
        match at.parent() {
            Some(parent) => at = parent,
            None => return false,
        }
    }
}

/// Extracts a tar from the engine into `dir`: never outside it (symlinks the tar made or that
/// were there are not written through), never a directory replaced by a file or the reverse.
fn extract(
    input: impl Read,
    dir: &Path,
    rename: Option<&(String, String)>,
    keep_owner: bool,
) -> io::Result<u64> {
    let root = fs::canonicalize(dir)?;
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(keep_owner);
    let mut written = 0;
    for entry in ar.entries()? {
        let mut e = entry?;
        let Some(rel) = renamed(&e.path()?, rename)? else {
            continue;
        };
        let target = root.join(&rel);
        let parent = target.parent().unwrap_or(&root).to_path_buf();
        if !inside(&root, &parent) {
            return Err(io::Error::other(format!(
                "refusing {}: a symlink leads out of {}",
                rel.display(),
                dir.display()
            )));
        }
        fs::create_dir_all(&parent)?;
        let kind = e.header().entry_type();
        if let Ok(m) = fs::symlink_metadata(&target) {
            if m.is_dir() != kind.is_dir() {
                return Err(io::Error::other(format!(
                    "cannot overwrite {} {} with {}",
                    if m.is_dir() {
                        "directory"
                    } else {
                        "non-directory"
                    },
                    target.display(),
                    if kind.is_dir() {
                        "a directory"
                    } else {
                        "a non-directory"
                    }
                )));
            }
        }
        if kind.is_hard_link() {
            let link = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
            let Some(src) = renamed(&link, rename)? else {
                continue;
            };
            let src = root.join(src);
            if !inside(&root, &src) {
                return Err(io::Error::other(format!(
                    "refusing the hard link {} to outside {}",
                    rel.display(),
                    dir.display()
                )));
            }
            let _ = fs::remove_file(&target);
            fs::hard_link(&src, &target)?;
            continue;
        }
        written += e.header().size().unwrap_or(0);
        e.unpack(&target)?;
    }
    Ok(written)
}

async fn copy_to(
    a: &Args,
    client: &Client,
    src: &str,
    container: &str,
    dest: &str,
) -> CmdResult<i32> {
    let shown = format!("{container}:{dest}");
    let mut dest_path = dest.to_string();
    let mut found = match stat(client, container, dest).await {
        Ok(s) => Some(s),
        Err(s) if path_missing(&s) => None,
        Err(s) => return Err(s.into()),
    };
    if let Some(s) = found.as_ref().filter(|s| is_symlink_mode(s.mode)) {
        dest_path = keep_trailing(dest, Path::new(&s.link_target));
        found = match stat(client, container, &dest_path).await {
            Ok(s) => Some(s),
            Err(s) if path_missing(&s) => None,
            Err(s) => return Err(s.into()),
        };
    }
    if let Some(s) = &found {
        let t = s.mode & libc::S_IFMT;
        if t != libc::S_IFDIR && t != libc::S_IFREG {
            return Err(Failure::new(format!(
                "destination {shown} must be a directory or a regular file"
            )));
        }
    } else {
        // Like a local destination, a missing one needs its parent directory (a symlink to
        // one will do).
        let (parent, _) = split_dir_entry(&dest_path);
        let followed = format!("{}/", parent.trim_end_matches('/'));
        match stat(client, container, &followed).await {
            Ok(p) if is_dir_mode(p.mode) => {}
            Err(s) if !path_missing(&s) => return Err(s.into()),
            _ => {
                return Err(Failure::new(format!(
                    "cannot copy to {shown}: no such directory {parent}"
                )))
            }
        }
    }
    let dest_info = Dest {
        path: dest_path,
        exists: found.is_some(),
        is_dir: found.as_ref().is_some_and(|s| is_dir_mode(s.mode)),
    };
    let (input, into): (Box<dyn Read + Send>, String) = if src == "-" {
        if !dest_info.is_dir {
            return Err(Failure::new(format!(
                "destination {shown} must be a directory to extract a tar into"
            )));
        }
        if io::stdin().is_terminal() {
            return Err(Failure::new(
                "refusing to read a tar from a terminal: pipe one into strata cp -",
            ));
        }
        (Box::new(io::stdin()), dest_info.path.clone())
    } else {
        let (path, name, is_dir) = local_source(src, a.follow_link)?;
        let plan = plan(is_dir, &dest_info, &shown)?;
        let top = plan.name.unwrap_or(name);
        (tar_of(&path, &top)?, plan.dir)
    };
    let counted = Counted::new(input);
    let sent = counted.count.clone();
    let (archive, container_s) = (a.archive, container.to_string());
    let stream = upload_reader(
        Box::new(counted),
        None,
        false,
        |data| CopyToRequest {
            data,
            ..Default::default()
        },
        move |m| {
            m.container = container_s;
            m.path = into;
            m.no_overwrite_dir_non_dir = true;
            m.copy_uid_gid = archive;
        },
    );
    client.containers().copy_to(stream).await?;
    report(a, sent.load(std::sync::atomic::Ordering::Relaxed), &shown);
    Ok(0)
}

/// A local source: (the path to read, the name its top entry gets, whether it is a
/// directory). Only with `-L`, or a trailing `/` or `/.`, is a symlink given as the source
/// followed.
fn local_source(src: &str, follow: bool) -> CmdResult<(PathBuf, String, bool)> {
    let missing = |e: io::Error| Failure::new(format!("cannot copy {src}: {e}"));
    let (_, name) = split_dir_entry(src);
    let name = if src.ends_with("/.") {
        ".".into()
    } else {
        name
    };
    let path = if follow || asserts_dir(src) {
        fs::canonicalize(src).map_err(missing)?
    } else {
        let (dir, base) = split_dir_entry(src);
        fs::canonicalize(dir).map_err(missing)?.join(base)
    };
    let m = fs::symlink_metadata(&path).map_err(missing)?;
    Ok((path, name, m.is_dir()))
}

/// A tar of `path` (symlinks inside stored as symlinks) whose top entry is `name`, written
/// by a thread into a pipe.
fn tar_of(path: &Path, name: &str) -> CmdResult<Box<dyn Read + Send>> {
    let (r, w) = io::pipe().map_err(|e| Failure::new(format!("make a pipe: {e}")))?;
    let (path, name) = (path.to_path_buf(), name.to_string());
    std::thread::spawn(move || {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let added = if path.is_dir() && !path.is_symlink() {
            b.append_dir_all(&name, &path)
        } else {
            b.append_path_with_name(&path, &name)
        };
        if let Err(e) = added.and_then(|()| b.finish()) {
            eprintln!("strata: reading {}: {e}", path.display());
            std::process::exit(1);
        }
    });
    Ok(Box::new(r))
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R> Counted<R> {
    fn new(inner: R) -> Self {
        Counted {
            inner,
            count: Default::default(),
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_as_docker_reads_them() {
        assert_eq!(
            side("web:/etc/hosts"),
            Side::Container {
                name: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(side("/tmp/a:b"), Side::Local("/tmp/a:b".into()));
        assert_eq!(side("./a:b"), Side::Local("./a:b".into()));
        assert_eq!(side("file"), Side::Local("file".into()));
        assert_eq!(side("-"), Side::Local("-".into()));
    }

    #[test]
    fn plans_follow_docker_s_rules() {
        let dir = Dest {
            path: "/d".into(),
            exists: true,
            is_dir: true,
        };
        assert_eq!(
            plan(false, &dir, "x").unwrap(),
            Plan {
                dir: "/d".into(),
                name: None
            }
        );
        let file = Dest {
            path: "/d/f".into(),
            exists: true,
            is_dir: false,
        };
        assert!(plan(true, &file, "x").is_err(), "no directory onto a file");
        assert_eq!(
            plan(false, &file, "x").unwrap(),
            Plan {
                dir: "/d".into(),
                name: Some("f".into())
            }
        );
        let missing = Dest {
            path: "/d/new/".into(),
            exists: false,
            is_dir: false,
        };
        assert!(
            plan(false, &missing, "x").is_err(),
            "a file cannot make a directory"
        );
        assert_eq!(
            plan(true, &missing, "x").unwrap(),
            Plan {
                dir: "/d".into(),
                name: Some("new".into())
            }
        );
    }

    #[test]
    fn entries_are_renamed_and_contained() {
        let r = ("etc".to_string(), "conf".to_string());
        assert_eq!(
            renamed(Path::new("etc/passwd"), Some(&r)).unwrap(),
            Some(PathBuf::from("conf/passwd"))
        );
        let dot = (".".to_string(), "copy".to_string());
        assert_eq!(
            renamed(Path::new("./a"), Some(&dot)).unwrap(),
            Some(PathBuf::from("copy/a"))
        );
        assert_eq!(renamed(Path::new("."), None).unwrap(), None);
        assert_eq!(
            renamed(Path::new("etc"), Some(&r)).unwrap(),
            Some(PathBuf::from("conf")),
            "no trailing slash on a renamed file"
        );
        assert!(renamed(Path::new("../x"), None).is_err());
    }

    #[test]
    fn extraction_refuses_to_leave_its_directory() {
        let d = TempDir::new();
        let (dest, outside) = (d.0.join("dest"), d.0.join("outside"));
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", &outside).unwrap();
        let mut f = tar::Header::new_gnu();
        f.set_size(1);
        f.set_mode(0o644);
        b.append_data(&mut f, "link/planted", &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        assert!(extract(tar.as_slice(), &dest, None, false).is_err());
        assert!(!outside.join("planted").exists());
    }

    /// A scratch directory, removed when dropped (also when a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let d = std::env::temp_dir().join(format!("strata-cp-test-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
