//! A per-timeline cache of parsed, verified layer files, bounded in bytes.
//!
//! Layer files are immutable, so a parsed file stays correct for as long as the
//! layer exists; the cache drops a file when its layer leaves the map, is found bad
//! or is downloaded again. Eviction is least-recently-used by a logical clock (one
//! tick per lookup), so it is deterministic. A file larger than the whole budget is
//! never cached. A budget of 0 disables the cache (every read issues `ReadLayer`).
//!
//! **Two levels.** Under a node this cache is off (`NodeConfig::new` sets
//! `layer_cache_bytes = 0`): the node's page cache ([`crate::page_cache`]) is the
//! one bounded, node-wide cache of layer bytes, shared by all timelines, so memory
//! is counted once. It stays for a `Timeline` driven alone (its unit tests, tools),
//! where there is no node, and as an opt-in second level holding *parsed* files
//! (skipping the parse and CRC check of a page-cache hit) for a deployment that
//! budgets memory for both.

use crate::layer_file::LayerFile;
use crate::layer_name::LayerName;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(crate) struct LayerCache {
    budget_bytes: u64,
    files: BTreeMap<LayerName, (LayerFile, u64)>,
    bytes: u64,
    tick: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl LayerCache {
    pub(crate) fn new(budget_bytes: u64) -> Self {
        LayerCache { budget_bytes, ..LayerCache::default() }
    }

    pub(crate) fn get(&mut self, name: &LayerName) -> Option<&LayerFile> {
        self.tick += 1;
        match self.files.get_mut(name) {
            Some((file, used)) => {
                *used = self.tick;
                self.hits += 1;
                Some(file)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub(crate) fn insert(&mut self, file: LayerFile) {
        let size = file.len_bytes();
        if size > self.budget_bytes {
            return;
        }
        self.remove(file.name());
        while self.bytes + size > self.budget_bytes {
            let Some(oldest) =
                self.files.iter().min_by_key(|(_, (_, used))| *used).map(|(n, _)| n.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.tick += 1;
        self.bytes += size;
        self.files.insert(file.name().clone(), (file, self.tick));
    }

    pub(crate) fn remove(&mut self, name: &LayerName) {
        if let Some((file, _)) = self.files.remove(name) {
            self.bytes -= file.len_bytes();
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn check(&self) {
        let sum: u64 = self.files.values().map(|(f, _)| f.len_bytes()).sum();
        assert_eq!(sum, self.bytes, "layer cache byte count drifted");
        assert!(self.bytes <= self.budget_bytes, "layer cache over budget");
    }
}

/// Checks that can fail: each check of [`LayerCache::check`] fires.
#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::key::Key;
    use crate::layer_name::{KeyRange, LsnRange};
    use crate::lsn::Lsn;
    use crate::redo::Record;

    /// A cache holding one small delta layer.
    fn holding_one() -> LayerCache {
        let keys = KeyRange::new(Key(0), Key(10)).unwrap();
        let name = LayerName::Delta { keys, lsns: LsnRange::new(Lsn(1), Lsn(3)).unwrap() };
        let record = Record::Image(b"v".to_vec());
        let encoded = crate::layer_file::encode(&name, [(Key(1), Lsn(1), &record)]).unwrap();
        let file = LayerFile::parse(&name, encoded.bytes, None).unwrap();
        let mut c = LayerCache::new(1 << 20);
        c.insert(file);
        c.check();
        c
    }

    #[test]
    #[should_panic(expected = "layer cache byte count drifted")]
    fn the_byte_count_drifts() {
        let mut c = holding_one();
        c.bytes += 1;
        c.check();
    }

    #[test]
    #[should_panic(expected = "layer cache over budget")]
    fn over_budget() {
        let mut c = holding_one();
        c.budget_bytes = c.bytes - 1;
        c.check();
    }
}
