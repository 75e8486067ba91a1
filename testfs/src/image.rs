//! The durable state of a [`crate::TestFs`]: a plain tree, what a reboot serves.

use std::collections::BTreeMap;

/// One durable directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    Dir(BTreeMap<String, Entry>),
}

/// A whole durable file system: the entries of its root directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub root: BTreeMap<String, Entry>,
}

impl Image {
    /// Every file below the root, by path (`a/b/c`), with its content.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(prefix: &str, dir: &BTreeMap<String, Entry>, out: &mut BTreeMap<String, Vec<u8>>) {
            for (name, e) in dir {
                let path =
                    if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                match e {
                    Entry::File(bytes) => {
                        out.insert(path, bytes.clone());
                    }
                    Entry::Dir(sub) => walk(&path, sub, out),
                }
            }
        }
        let mut out = BTreeMap::new();
        walk("", &self.root, &mut out);
        out
    }

    /// The total bytes of file content.
    pub fn bytes(&self) -> u64 {
        self.files().values().map(|v| v.len() as u64).sum()
    }
}
