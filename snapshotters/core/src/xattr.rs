//! Extended attributes of a path, never following a symlink: the l*xattr system calls, which
//! std and nix do not wrap, for the union filesystem, the engine's layer apply, volume copy and
//! diff, and the tests.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The value of xattr `name` on `path` (not following a symlink).
pub fn get(path: &Path, name: &OsStr) -> io::Result<Vec<u8>> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated and live across the call; the buffer pointer
        // and length describe memory we own.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
        // SAFETY: a size query (NULL buffer, length 0) with valid NUL-terminated strings.
        let size = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.resize(size as usize + 1, 0);
    }
}

/// The xattr names on `path` (not following a symlink).
pub fn list(path: &Path) -> io::Result<Vec<OsString>> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: the path is NUL-terminated; the buffer pointer and length describe memory we
        // own.
        let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| OsString::from_vec(s.to_vec()))
                .collect());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
        // SAFETY: a size query (NULL buffer, length 0) with a NUL-terminated path.
        let size = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.resize(size as usize + 1, 0);
    }
}

/// Sets xattr `name` on `path` (not following a symlink); `flags` as setxattr(2).
pub fn set(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    // SAFETY: NUL-terminated strings and a value slice that outlive the call.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes xattr `name` from `path` (not following a symlink).
pub fn remove(path: &Path, name: &OsStr) -> io::Result<()> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    // SAFETY: NUL-terminated strings that outlive the call.
    let r = unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies every xattr of `from` to `to` (neither followed if a symlink). Names the target
/// filesystem refuses (EOPNOTSUPP) are skipped, as cp -a does.
pub fn copy_all(from: &Path, to: &Path) -> io::Result<()> {
    let names = match list(from) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names {
        let value = match get(from, &name) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        match set(to, &name, &value, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_list_get_remove_and_copy() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (f, g) = (dir.path().join("f"), dir.path().join("g"));
        std::fs::write(&f, "x")?;
        std::fs::write(&g, "y")?;
        let name = OsStr::new("user.strata");
        set(&f, name, b"value", 0)?;
        assert!(list(&f)?.iter().any(|n| n == name));
        assert_eq!(get(&f, name)?, b"value");
        copy_all(&f, &g)?;
        assert_eq!(get(&g, name)?, b"value");
        remove(&f, name)?;
        assert!(!list(&f)?.iter().any(|n| n == name));
        assert_eq!(
            get(&f, name).unwrap_err().raw_os_error(),
            Some(libc::ENODATA)
        );
        Ok(())
    }
}
