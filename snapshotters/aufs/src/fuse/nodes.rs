//! The inode table: FUSE node ids for union paths. A directory is one node per path; any other
//! entry is one node per underlying inode, so hard links in a layer share a node (and the inode
//! number `stat` shows, which is the node id).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What identifies a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A directory, by union path.
    Dir(PathBuf),
    /// Anything else, by the (device, inode) of the file that shows.
    File(u64, u64),
}

/// Where a node's data is.
#[derive(Debug, Clone)]
pub enum Place {
    /// A directory merged from these branches (top first).
    Dir(Vec<usize>),
    /// A non-directory in this branch.
    File(usize),
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// The union paths that name it (the last is used); empty once every name is gone.
    pub paths: Vec<PathBuf>,
    /// Where it is.
    pub place: Place,
    /// How it is keyed, while it is.
    pub key: Option<Key>,
    /// The kernel's lookup count.
    pub nlookup: u64,
}

impl Node {
    /// The path operations use.
    pub fn path(&self) -> Option<&Path> {
        self.paths.last().map(PathBuf::as_path)
    }
}

/// The table.
#[derive(Debug)]
pub struct Nodes {
    by_id: HashMap<u64, Node>,
    by_key: HashMap<Key, u64>,
    next: u64,
}

/// The root's node id.
pub const ROOT: u64 = 1;

impl Nodes {
    /// A table holding the root, which merges `layers`.
    pub fn new(layers: Vec<usize>) -> Self {
        let mut by_id = HashMap::new();
        let key = Key::Dir(PathBuf::new());
        by_id.insert(
            ROOT,
            Node {
                paths: vec![PathBuf::new()],
                place: Place::Dir(layers),
                key: Some(key.clone()),
                nlookup: 1,
            },
        );
        Nodes {
            by_id,
            by_key: HashMap::from([(key, ROOT)]),
            next: ROOT + 1,
        }
    }

    /// The node `id`.
    pub fn get(&self, id: u64) -> Option<&Node> {
        self.by_id.get(&id)
    }

    /// The node `id`, to change.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.by_id.get_mut(&id)
    }

    /// The node keyed `key`, if any.
    pub fn find(&self, key: &Key) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// Records a lookup of `path` that found `key` at `place`: the existing node (with `path`
    /// as its current name) or a new one. Its lookup count goes up by one.
    pub fn looked_up(&mut self, key: Key, path: PathBuf, place: Place) -> u64 {
        if let Some(id) = self.by_key.get(&key).copied() {
            if let Some(n) = self.by_id.get_mut(&id) {
                n.paths.retain(|p| p != &path);
                n.paths.push(path);
                n.place = place;
                n.nlookup += 1;
                return id;
            }
        }
        let id = self.next;
        self.next += 1;
        self.by_key.insert(key.clone(), id);
        self.by_id.insert(
            id,
            Node {
                paths: vec![path],
                place,
                key: Some(key),
                nlookup: 1,
            },
        );
        id
    }

    /// Gives node `id` a new key (its data moved, e.g. by a copy-up).
    pub fn rekey(&mut self, id: u64, key: Key) {
        if let Some(n) = self.by_id.get_mut(&id) {
            if let Some(old) = n.key.take() {
                if self.by_key.get(&old) == Some(&id) {
                    self.by_key.remove(&old);
                }
            }
            self.by_key.insert(key.clone(), id);
            n.key = Some(key);
        }
    }

    /// The name `path` of the entry keyed `key` is gone: its node loses the name, and a node
    /// with no name left (or a directory) is no longer found by key (it lives on while the
    /// kernel holds it).
    pub fn unlinked(&mut self, key: &Key, path: &Path) {
        let Some(id) = self.by_key.get(key).copied() else {
            return;
        };
        let Some(n) = self.by_id.get_mut(&id) else {
            return;
        };
        n.paths.retain(|p| p != path);
        if n.paths.is_empty() || matches!(key, Key::Dir(_)) {
            n.key = None;
            self.by_key.remove(key);
        }
    }

    /// `from` was renamed to `to`: every node named under `from` is renamed, directories are
    /// re-keyed by their new paths.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        let mut rekeys = Vec::new();
        for (id, n) in self.by_id.iter_mut() {
            for p in n.paths.iter_mut() {
                if let Ok(rest) = p.strip_prefix(from) {
                    *p = if rest.as_os_str().is_empty() {
                        to.to_path_buf()
                    } else {
                        to.join(rest)
                    };
                    if let Some(Key::Dir(_)) = n.key {
                        rekeys.push((*id, Key::Dir(p.clone())));
                    }
                }
            }
        }
        // Remove every old directory key first, so that new keys never collide with them.
        for (id, _) in &rekeys {
            if let Some(old) = self.by_id.get_mut(id).and_then(|n| n.key.take()) {
                if self.by_key.get(&old) == Some(id) {
                    self.by_key.remove(&old);
                }
            }
        }
        for (id, key) in rekeys {
            self.by_key.insert(key.clone(), id);
            if let Some(n) = self.by_id.get_mut(&id) {
                n.key = Some(key);
            }
        }
    }

    /// The kernel forgot `n` lookups of node `id`.
    pub fn forget(&mut self, id: u64, n: u64) {
        if id == ROOT {
            return;
        }
        let gone = match self.by_id.get_mut(&id) {
            Some(node) => {
                node.nlookup = node.nlookup.saturating_sub(n);
                node.nlookup == 0
            }
            None => false,
        };
        if gone {
            if let Some(node) = self.by_id.remove(&id) {
                if let Some(k) = node.key {
                    if self.by_key.get(&k) == Some(&id) {
                        self.by_key.remove(&k);
                    }
                }
            }
        }
    }

    /// Updates the branch list of the directory node at `path`, if there is one.
    pub fn set_dir_layers(&mut self, path: &Path, layers: Vec<usize>) {
        if let Some(id) = self.by_key.get(&Key::Dir(path.to_path_buf())).copied() {
            if let Some(n) = self.by_id.get_mut(&id) {
                n.place = Place::Dir(layers);
            }
        }
    }

    /// Marks the directory node at `path` (if any) as present in the top branch.
    pub fn dir_in_top(&mut self, path: &Path) {
        if let Some(id) = self.by_key.get(&Key::Dir(path.to_path_buf())).copied() {
            if let Some(Node {
                place: Place::Dir(l),
                ..
            }) = self.by_id.get_mut(&id)
            {
                if l.first() != Some(&0) {
                    l.insert(0, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_share_a_node_and_names_come_and_go() {
        let mut n = Nodes::new(vec![0, 1]);
        let a = n.looked_up(Key::File(1, 10), "a".into(), Place::File(1));
        let b = n.looked_up(Key::File(1, 10), "d/b".into(), Place::File(1));
        assert_eq!(a, b, "two names of one inode are one node");
        assert_eq!(n.get(a).unwrap().path(), Some(Path::new("d/b")));
        assert_eq!(n.get(a).unwrap().nlookup, 2);
        // A copy-up moves the node to a new key.
        n.rekey(a, Key::File(1, 99));
        assert_eq!(n.find(&Key::File(1, 10)), None);
        assert_eq!(n.find(&Key::File(1, 99)), Some(a));
        n.unlinked(&Key::File(1, 99), Path::new("d/b"));
        assert_eq!(n.get(a).unwrap().path(), Some(Path::new("a")));
        assert_eq!(n.find(&Key::File(1, 99)), Some(a), "still named a");
        n.unlinked(&Key::File(1, 99), Path::new("a"));
        assert_eq!(n.get(a).unwrap().path(), None);
        assert_eq!(n.find(&Key::File(1, 99)), None, "nameless: no longer found");
        assert!(n.get(a).is_some(), "but alive while the kernel holds it");
        n.forget(a, 2);
        assert!(n.get(a).is_none());
    }

    #[test]
    fn renaming_a_directory_renames_and_rekeys_what_is_under_it() {
        let mut n = Nodes::new(vec![0]);
        let d = n.looked_up(Key::Dir("x".into()), "x".into(), Place::Dir(vec![0]));
        let sub = n.looked_up(Key::Dir("x/s".into()), "x/s".into(), Place::Dir(vec![0]));
        let f = n.looked_up(Key::File(1, 5), "x/s/f".into(), Place::File(0));
        let other = n.looked_up(Key::Dir("xy".into()), "xy".into(), Place::Dir(vec![0]));
        n.renamed(Path::new("x"), Path::new("y/z"));
        assert_eq!(n.find(&Key::Dir("y/z".into())), Some(d));
        assert_eq!(n.find(&Key::Dir("y/z/s".into())), Some(sub));
        assert_eq!(n.find(&Key::Dir("x".into())), None);
        assert_eq!(n.get(f).unwrap().path(), Some(Path::new("y/z/s/f")));
        // A sibling whose name merely starts the same is untouched.
        assert_eq!(n.get(other).unwrap().path(), Some(Path::new("xy")));
        n.dir_in_top(Path::new("y/z"));
        assert!(matches!(&n.get(d).unwrap().place, Place::Dir(l) if l == &vec![0]));
        n.forget(ROOT, 100);
        assert!(n.get(ROOT).is_some(), "the root is never forgotten");
    }
}
