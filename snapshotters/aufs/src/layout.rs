//! Docker's aufs layout under the plugin's root:
//!
//! ```text
//! diff/<id>     the layer's own files, in aufs' format (`.wh.<name>`, `.wh..wh..opq`)
//! layers/<id>   the parent ids, nearest first, one per line (empty: no parent)
//! mnt/<id>      where the union is mounted
//! ```
//!
//! Strata names snapshots by their numeric id; a tree made by Docker's aufs driver (hex ids)
//! reads the same way.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The directories under a root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// `<root>/diff`, `<root>/layers` and `<root>/mnt`.
    pub fn dirs(&self) -> [PathBuf; 3] {
        ["diff", "layers", "mnt"].map(|d| self.root.join(d))
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A layer's files.
    pub fn diff(&self, id: &str) -> PathBuf {
        self.root.join("diff").join(id)
    }

    /// A layer's parent list.
    pub fn layers(&self, id: &str) -> PathBuf {
        self.root.join("layers").join(id)
    }

    /// A layer's mountpoint.
    pub fn mnt(&self, id: &str) -> PathBuf {
        self.root.join("mnt").join(id)
    }

    /// The parent ids of `id`, nearest first.
    pub fn parents(&self, id: &str) -> io::Result<Vec<String>> {
        let text = fs::read_to_string(self.layers(id))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// The branch directories of `id`'s union: its own diff, then its parents' (nearest first).
    pub fn branches(&self, id: &str) -> io::Result<Vec<PathBuf>> {
        let mut out = vec![self.diff(id)];
        for p in self.parents(id)? {
            let d = self.diff(&p);
            if !d.is_dir() {
                return Err(io::Error::new(
                    ErrorKind::NotFound,
                    format!("layer {id}: parent {p} has no directory {}", d.display()),
                ));
            }
            out.push(d);
        }
        Ok(out)
    }

    /// Writes `id`'s parent list (through a temporary file, so a crash never leaves half).
    pub fn write_parents(&self, id: &str, parents: &[String]) -> io::Result<()> {
        let path = self.layers(id);
        let tmp = self.root.join("layers").join(format!(".{id}.tmp"));
        let mut text = parents.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &path)
    }

    /// Makes `diff/<id>` and `mnt/<id>` (0755).
    pub fn make_dirs(&self, id: &str) -> io::Result<()> {
        for d in [self.diff(id), self.mnt(id)] {
            match fs::DirBuilder::new().mode(0o755).create(&d) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_round_trip_and_docker_files_read() {
        let t = tempfile::tempdir().unwrap();
        let l = Layout::new(t.path());
        for d in l.dirs() {
            fs::create_dir_all(d).unwrap();
        }
        for id in ["1", "2", "3"] {
            l.make_dirs(id).unwrap();
        }
        l.write_parents("3", &["2".into(), "1".into()]).unwrap();
        assert_eq!(fs::read_to_string(l.layers("3")).unwrap(), "2\n1\n");
        assert_eq!(l.parents("3").unwrap(), ["2", "1"]);
        l.write_parents("1", &[]).unwrap();
        assert!(l.parents("1").unwrap().is_empty());
        // Docker writes no trailing newline.
        fs::write(l.layers("2"), "1").unwrap();
        assert_eq!(l.branches("2").unwrap(), [l.diff("2"), l.diff("1")]);
        fs::write(l.layers("4"), "missing").unwrap();
        assert!(l.branches("4").is_err());
    }
}
