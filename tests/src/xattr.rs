//! Extended attributes of a path, without following symlinks: the only `unsafe` in this crate,
//! thin wrappers over the l*xattr system calls.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })
}

/// Sets `name` to `value` on `path` (lsetxattr).
pub fn set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (p, n) = (c_path(path)?, c_name(name)?);
    // SAFETY: p and n are NUL-terminated strings that outlive the call; value points to
    // value.len() readable bytes.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes `name` from `path` (lremovexattr).
pub fn remove(path: &Path, name: &str) -> io::Result<()> {
    let (p, n) = (c_path(path)?, c_name(name)?);
    // SAFETY: p and n are NUL-terminated strings that outlive the call.
    let r = unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The names of the xattrs of `path` (llistxattr).
pub fn list(path: &Path) -> io::Result<Vec<String>> {
    let p = c_path(path)?;
    loop {
        // SAFETY: p is NUL-terminated; a null buffer with size 0 asks only for the size.
        let size = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOTSUP) {
                return Ok(Vec::new());
            }
            return Err(err);
        }
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        // SAFETY: buf has buf.len() writable bytes and outlives the call.
        let got = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew between the two calls
            }
            return Err(err);
        }
        buf.truncate(usize::try_from(got).unwrap_or(0));
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| OsStr::from_bytes(n).to_string_lossy().into_owned())
            .collect());
    }
}

/// The value of `name` on `path` (lgetxattr).
pub fn get(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let (p, n) = (c_path(path)?, c_name(name)?);
    loop {
        // SAFETY: p and n are NUL-terminated; a null buffer with size 0 asks only for the size.
        let size = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
        if buf.is_empty() {
            return Ok(buf);
        }
        // SAFETY: buf has buf.len() writable bytes and outlives the call.
        let got =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(err);
        }
        buf.truncate(usize::try_from(got).unwrap_or(0));
        return Ok(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_list_get_remove() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("f");
        std::fs::write(&f, "x")?;
        set(&f, "user.strata", b"value")?;
        assert!(list(&f)?.contains(&"user.strata".to_owned()));
        assert_eq!(get(&f, "user.strata")?, b"value");
        remove(&f, "user.strata")?;
        assert!(!list(&f)?.contains(&"user.strata".to_owned()));
        Ok(())
    }
}
