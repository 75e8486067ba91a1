//! The in-memory layer: records not yet in a layer file.
//!
//! A timeline has one open layer (receiving records) and a queue of frozen layers
//! (read-only, waiting to be flushed, oldest first). Each covers a half-open LSN
//! range: an open layer `[start, ∞)`, a frozen one `[start, end)`. The ranges are
//! contiguous: a frozen layer ends where the next one starts. A layer is frozen at
//! an LSN boundary (every LSN carries one record, so all records of an LSN are in
//! one layer), when its size reaches `checkpoint_distance_bytes`, when it has been
//! open for `checkpoint_timeout_ms`, or on an explicit flush.

use crate::key::Key;
use crate::lsn::Lsn;
use crate::redo::Record;
use crate::time::Instant;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub(crate) struct InMemoryLayer {
    /// The first LSN this layer may hold.
    pub(crate) start: Lsn,
    /// Exclusive end; `None` while open.
    pub(crate) end: Option<Lsn>,
    pub(crate) records: BTreeMap<Key, BTreeMap<Lsn, Record>>,
    pub(crate) size_bytes: u64,
    /// When the first record landed (the age timer runs from here).
    pub(crate) opened_at: Option<Instant>,
    pub(crate) last_lsn: Option<Lsn>,
}

impl InMemoryLayer {
    pub(crate) fn open(start: Lsn) -> Self {
        InMemoryLayer {
            start,
            end: None,
            records: BTreeMap::new(),
            size_bytes: 0,
            opened_at: None,
            last_lsn: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last_lsn.is_none()
    }

    pub(crate) fn put(&mut self, now: Instant, key: Key, lsn: Lsn, record: Record) {
        debug_assert!(self.end.is_none(), "put into a frozen layer");
        debug_assert!(lsn >= self.start && self.last_lsn.is_none_or(|l| lsn > l));
        self.opened_at.get_or_insert(now);
        self.size_bytes += record.size_bytes();
        self.last_lsn = Some(lsn);
        self.records.entry(key).or_default().insert(lsn, record);
    }

    /// Freezes the layer: it ends right after its last record. `None` if empty.
    pub(crate) fn freeze(mut self) -> Option<InMemoryLayer> {
        let last = self.last_lsn?;
        self.end = Some(last.next());
        Some(self)
    }

    /// The records of `key` at or below `upto`, newest first.
    pub(crate) fn newest_first(&self, key: Key, upto: Lsn) -> impl Iterator<Item = (Lsn, &Record)> {
        self.records
            .get(&key)
            .into_iter()
            .flat_map(move |m| m.range(..=upto).rev())
            .map(|(l, r)| (*l, r))
    }

    /// Every record in `(key, lsn)` order, as the layer file encoder wants them.
    pub(crate) fn sorted(&self) -> impl Iterator<Item = (Key, Lsn, &Record)> {
        self.records.iter().flat_map(|(k, m)| m.iter().map(move |(l, r)| (*k, *l, r)))
    }
}
