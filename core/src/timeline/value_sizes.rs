//! Value sizes: ingest refuses exactly what redo would refuse later, without
//! reading a layer.
//!
//! **Purpose.** Redo refuses to build a value above [`MAX_VALUE_BYTES`]
//! (`crate::redo`). [`Record::validate`] checks each record on its own, but a
//! sequence of valid records can still outgrow the limit: an 8,000-byte image, then
//! a 500-byte append. Accepted, that key could never be read again at or above the
//! append's LSN. So ingest must know, for every append, the size of the value it
//! appends to.
//!
//! **What is kept** ([`ValueSizes`], owned by the timeline): the exact size of the
//! value of each *tracked* key at `last_ingested_lsn`. Every record ingested
//! updates it: an image sets it, `write_at` raises it to the write's end, an append
//! adds, a truncate lowers it, a clear zeroes it. A key is *untracked* when it is
//! not in the map: its size is then 0 while `untracked_are_empty` holds (the map
//! covers every key with a value: a timeline created here, or recovered with no
//! layers), and unknown otherwise.
//!
//! **Ingest** ([`ValueSizes::check`]) replays the batch's fresh records on the sizes
//! (a scratch overlay; the batch is all or nothing): a record taking a value above
//! the limit refuses the batch ([`IngestError::ValueTooLarge`], a 400). An append
//! (after no image or clear in the batch) to a key of unknown size cannot be
//! checked: the batch is refused with [`IngestError::SizeUnknown`] (a 503: retry),
//! and a *size read* of that key starts. Records that need no size (images, clears,
//! truncates, `write_at`, each bounded by `validate`) are accepted on any key.
//!
//! **Size reads** are ordinary reads of the key at `last_ingested_lsn` through the
//! read path (`read.rs`, [`super::read::Reader::SizeProbe`]): in-memory layers, layer
//! files, downloads of evicted layers, redo. Their answer is not sent to anyone: it
//! becomes the key's tracked size, unless a record for the key was ingested while it
//! ran (`dirty`: the value read is not the latest) or the key got tracked meanwhile.
//! A failed size read leaves the key unknown; the next append reads again. So the
//! first append to each key after a restart (or after its entry was dropped) costs
//! the client one retry.
//!
//! **Restart, compaction, GC, eviction.** Nothing here is persisted: a recovered
//! timeline with layers starts with every key unknown and learns sizes through size
//! reads, which see exactly what reads see. Compaction, image creation, GC (reads at
//! `last_ingested_lsn` are never below the GC cutoff) and eviction change where
//! records live, never a value at `last_ingested_lsn`, so no size goes stale.
//!
//! **Memory.** One entry (a `u64` key and a `u16` size, about 16 bytes in a
//! `BTreeMap`) per key written or size-read since the timeline was loaded, at most
//! `TimelineConfig::value_sizes_max_keys` (default 1 Mi keys, about 16 MiB). At the
//! bound, inserting a new key drops the smallest tracked one, which becomes unknown
//! (and `untracked_are_empty` is cleared): a dropped entry costs a size read, never
//! a wrong answer.
//!
//! **Invariants** ([`ValueSizes::check_invariants`]): every size ≤
//! [`MAX_VALUE_BYTES`]; at most `value_sizes_max_keys` entries; no unknown keys while
//! `untracked_are_empty`; every size read in flight has its read in the timeline's
//! read table and vice versa (checked by the timeline).

use super::IngestError;
use crate::key::Key;
use crate::redo::{DeltaOp, IngestRecord, MAX_VALUE_BYTES, Record};
use std::collections::{BTreeMap, BTreeSet};

const _: () = assert!(MAX_VALUE_BYTES <= u16::MAX as usize, "sizes are kept as u16");

/// What a 503 for a size read in flight suggests: a read of one key is fast.
pub const SIZE_READ_RETRY_AFTER_MS: u64 = 100;

/// A key's size as far as ingest knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    Known(usize),
    Unknown,
}

/// See the module doc.
#[derive(Clone, Debug)]
pub(crate) struct ValueSizes {
    sizes: BTreeMap<Key, u16>,
    untracked_are_empty: bool,
    /// Keys with a size read in flight; `true` once a record for the key was
    /// ingested after the read started (its answer is then not the latest value).
    reading: BTreeMap<Key, bool>,
    max_keys: usize,
}

/// An accepted batch: the sizes it leaves behind (see [`ValueSizes::commit`]).
#[derive(Debug)]
pub(crate) struct Checked {
    after: BTreeMap<Key, Size>,
}

/// Why [`ValueSizes::check`] refused a batch.
#[derive(Debug)]
pub(crate) enum Refused {
    /// [`IngestError::ValueTooLarge`].
    TooLarge(IngestError),
    /// Appends to these keys, whose sizes are unknown: read them, then retry.
    SizeUnknown(Vec<Key>),
}

impl ValueSizes {
    /// `untracked_are_empty`: the timeline holds no record yet (created here, or
    /// recovered without layers).
    pub(crate) fn new(untracked_are_empty: bool, max_keys: usize) -> Self {
        ValueSizes {
            sizes: BTreeMap::new(),
            untracked_are_empty,
            reading: BTreeMap::new(),
            max_keys: max_keys.max(1),
        }
    }

    fn size(&self, key: Key) -> Size {
        match self.sizes.get(&key) {
            Some(s) => Size::Known(usize::from(*s)),
            None if self.untracked_are_empty => Size::Known(0),
            None => Size::Unknown,
        }
    }

    /// Replays `fresh` (records above the last ingested LSN, in LSN order, each
    /// already validated on its own). Refuses a value above the limit
    /// ([`IngestError::ValueTooLarge`], first: no size read can change that), then
    /// appends to keys of unknown size ([`Refused::SizeUnknown`]: the keys to read).
    pub(crate) fn check(&self, fresh: &[&IngestRecord]) -> Result<Checked, Refused> {
        let mut after: BTreeMap<Key, Size> = BTreeMap::new();
        let mut unknown = BTreeSet::new();
        for r in fresh {
            let before = after.get(&r.key).copied().unwrap_or_else(|| self.size(r.key));
            let size = match replay(before, &r.record) {
                Ok(Replayed::Size(s)) => s,
                Ok(Replayed::NeedsSize) => {
                    unknown.insert(r.key);
                    Size::Unknown
                }
                Err(len) => {
                    return Err(Refused::TooLarge(IngestError::ValueTooLarge {
                        key: r.key,
                        lsn: r.lsn,
                        len,
                        max: MAX_VALUE_BYTES,
                    }));
                }
            };
            after.insert(r.key, size);
        }
        if !unknown.is_empty() {
            return Err(Refused::SizeUnknown(unknown.into_iter().collect()));
        }
        Ok(Checked { after })
    }

    /// The batch was accepted: its sizes become the tracked ones.
    pub(crate) fn commit(&mut self, checked: Checked) {
        for (key, size) in checked.after {
            if let Some(dirty) = self.reading.get_mut(&key) {
                *dirty = true;
            }
            match size {
                Size::Known(s) => self.insert(key, s),
                // A write_at or truncate on a key of unknown size: still unknown.
                Size::Unknown => debug_assert!(!self.sizes.contains_key(&key)),
            }
        }
    }

    /// A size read of `key` starts (at the last ingested LSN).
    pub(crate) fn start_read(&mut self, key: Key) {
        let previous = self.reading.insert(key, false);
        debug_assert!(previous.is_none(), "one size read per key");
    }

    pub(crate) fn is_reading(&self, key: Key) -> bool {
        self.reading.contains_key(&key)
    }

    /// A size read ended: `Ok(len)` is the value's length at the LSN it read.
    pub(crate) fn read_done(&mut self, key: Key, result: Result<usize, ()>) {
        let dirty = self.reading.remove(&key).expect("a size read in flight");
        if let (Ok(len), false) = (result, dirty)
            && !self.sizes.contains_key(&key)
            && len <= MAX_VALUE_BYTES
        {
            self.insert(key, len);
        }
    }

    fn insert(&mut self, key: Key, size: usize) {
        debug_assert!(size <= MAX_VALUE_BYTES);
        let size = u16::try_from(size.min(MAX_VALUE_BYTES)).expect("MAX_VALUE_BYTES fits u16");
        if !self.sizes.contains_key(&key) && self.sizes.len() >= self.max_keys {
            // Dropped keys become unknown: a size read the next time, never a guess.
            self.sizes.pop_first();
            self.untracked_are_empty = false;
        }
        self.sizes.insert(key, size);
    }

    pub(crate) fn tracked_keys(&self) -> usize {
        self.sizes.len()
    }

    pub(crate) fn reads_in_flight(&self) -> impl Iterator<Item = Key> + '_ {
        self.reading.keys().copied()
    }

    pub(crate) fn check_invariants(&self) {
        assert!(self.sizes.len() <= self.max_keys, "{} sizes tracked", self.sizes.len());
        for (key, size) in &self.sizes {
            assert!(usize::from(*size) <= MAX_VALUE_BYTES, "{key} tracked at {size} bytes");
        }
        if self.untracked_are_empty {
            assert!(self.reading.is_empty(), "size reads while every size is known");
        }
    }
}

enum Replayed {
    Size(Size),
    /// An append to a value of unknown size.
    NeedsSize,
}

/// `record` applied to a value of `before` bytes; `Err(len)` when a step would take
/// it past the limit (the same steps and checks as `redo::apply_ops`).
fn replay(before: Size, record: &Record) -> Result<Replayed, usize> {
    let ops = match record {
        Record::Image(bytes) => {
            return check_len(bytes.len()).map(|s| Replayed::Size(Size::Known(s)));
        }
        Record::Delta(ops) => ops,
    };
    let mut size = before;
    for op in ops {
        size = match (op, size) {
            (DeltaOp::WriteAt { offset, bytes }, s) => {
                let end = check_len((*offset as usize).saturating_add(bytes.len()))?;
                match s {
                    Size::Known(s) => Size::Known(s.max(end)),
                    Size::Unknown => Size::Unknown,
                }
            }
            (DeltaOp::Append(bytes), Size::Known(s)) => {
                Size::Known(check_len(s.saturating_add(bytes.len()))?)
            }
            (DeltaOp::Append(_), Size::Unknown) => return Ok(Replayed::NeedsSize),
            (DeltaOp::Truncate(n), Size::Known(s)) => Size::Known(s.min(*n as usize)),
            (DeltaOp::Truncate(_), Size::Unknown) => Size::Unknown,
            (DeltaOp::Clear, _) => Size::Known(0),
        };
    }
    Ok(Replayed::Size(size))
}

fn check_len(len: usize) -> Result<usize, usize> {
    if len > MAX_VALUE_BYTES { Err(len) } else { Ok(len) }
}

/// Checks that can fail: each check of [`ValueSizes::check_invariants`] fires.
#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    #[should_panic(expected = "sizes tracked")]
    fn more_sizes_than_the_bound() {
        let mut s = ValueSizes::new(false, 1);
        s.sizes.insert(Key(1), 1);
        s.sizes.insert(Key(2), 1);
        s.check_invariants();
    }

    #[test]
    #[should_panic(expected = "tracked at")]
    fn a_size_above_the_value_limit() {
        let mut s = ValueSizes::new(false, 4);
        s.sizes.insert(Key(1), u16::MAX);
        s.check_invariants();
    }

    #[test]
    #[should_panic(expected = "size reads while every size is known")]
    fn a_size_read_while_every_size_is_known() {
        let mut s = ValueSizes::new(true, 4);
        s.reading.insert(Key(1), false);
        s.check_invariants();
    }
}
