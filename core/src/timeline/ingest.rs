//! Ingest: a batch of records is validated whole (LSN order and range, storable
//! keys, each record valid, the value sizes redo accepts, backpressure) before any
//! of it is applied to the open layer.

use super::read::{Read, Reader};
use super::value_sizes::Refused;
use super::{SIZE_READ_RETRY_AFTER_MS, Timeline};
use crate::key::Key;
use crate::lsn::Lsn;
use crate::redo::{IngestRecord, RedoError};
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("record {index} has lsn {lsn}, not above the previous record's {previous}")]
    NotIncreasing { index: usize, lsn: Lsn, previous: Lsn },
    #[error("record at lsn {lsn} is invalid: {source}")]
    InvalidRecord { lsn: Lsn, source: RedoError },
    /// Valid on its own, but the value it leaves would be one redo refuses.
    #[error("record at lsn {lsn} would make the value of key {key} {len} bytes (max {max})")]
    ValueTooLarge { key: Key, lsn: Lsn, len: usize, max: usize },
    /// An append to a key whose value size this timeline does not know yet (written
    /// before it was loaded): a read of that size started; retry.
    #[error(
        "the size of key {key}'s value (and {more} more) is being read before appending; retry after {retry_after_ms} ms"
    )]
    SizeUnknown { key: Key, more: usize, retry_after_ms: u64 },
    #[error("lsn {lsn} is out of range")]
    LsnOutOfRange { lsn: Lsn },
    /// The key is [`Key::MAX`]. Key ranges are half-open (`[start, end)`), so no
    /// layer's range can hold that key: accepting it would make the next flush fail
    /// to write its layer (it used to panic the node). Refused at ingest, before
    /// anything is applied.
    #[error(
        "record at lsn {lsn}: key {key} is not storable (key ranges are half-open; {key} is only a range end)"
    )]
    KeyOutOfRange { lsn: Lsn, key: Key },
    #[error(
        "ingest refused: too much unflushed or un-uploaded data; retry after {retry_after_ms} ms"
    )]
    Backpressure { retry_after_ms: u64 },
    /// The local disk is full: flush writes fail with `NoSpace` (`disk_full.rs`).
    /// Reads are served meanwhile. `out_of_space`: the retry budget ran out and the
    /// timeline is Broken `no_space` until it is loaded again.
    #[error(
        "ingest refused: the local disk is full{}; retry after {retry_after_ms} ms",
        if *out_of_space { " (retry budget spent: the timeline is broken until reloaded)" } else { "" }
    )]
    NoSpace { out_of_space: bool, retry_after_ms: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestOutcome {
    pub applied: usize,
    /// Records at or below the last ingested LSN: acknowledged, not applied again.
    pub skipped: usize,
    pub last_ingested_lsn: Lsn,
}

impl Timeline {
    /// Applies the records above the last ingested LSN. The whole batch is checked
    /// first: on any error nothing is applied. A batch whose values redo would
    /// refuse is refused ([`IngestError::ValueTooLarge`]); one that appends to a key
    /// of unknown size starts a size read of it and is refused
    /// ([`IngestError::SizeUnknown`]) until that read is done (`value_sizes.rs`).
    pub fn handle_ingest(
        &mut self,
        now: Instant,
        records: Vec<IngestRecord>,
    ) -> Result<IngestOutcome, IngestError> {
        let mut previous: Option<Lsn> = None;
        for (index, r) in records.iter().enumerate() {
            if r.lsn == Lsn::MAX {
                return Err(IngestError::LsnOutOfRange { lsn: r.lsn });
            }
            if !r.key.is_storable() {
                return Err(IngestError::KeyOutOfRange { lsn: r.lsn, key: r.key });
            }
            if let Some(previous) = previous.filter(|p| r.lsn <= *p) {
                return Err(IngestError::NotIncreasing { index, lsn: r.lsn, previous });
            }
            previous = Some(r.lsn);
            r.record
                .validate()
                .map_err(|source| IngestError::InvalidRecord { lsn: r.lsn, source })?;
        }
        let fresh: Vec<&IngestRecord> =
            records.iter().filter(|r| r.lsn > self.last_ingested).collect();
        let sized = match self.sizes.check(&fresh) {
            Ok(sized) => sized,
            Err(Refused::TooLarge(e)) => return Err(e),
            Err(Refused::SizeUnknown(keys)) => {
                let (key, more) = (keys[0], keys.len() - 1);
                for k in keys {
                    self.start_size_read(now, k);
                }
                self.pump(now);
                return Err(IngestError::SizeUnknown {
                    key,
                    more,
                    retry_after_ms: SIZE_READ_RETRY_AFTER_MS,
                });
            }
        };
        let fresh = fresh.len();
        if fresh > 0
            && let Some(refusal) = self.no_space_refusal()
        {
            return Err(refusal);
        }
        if fresh > 0
            && (self.backpressure || self.in_memory_bytes() >= self.config.max_in_memory_bytes)
        {
            // Let the flush drain what is held, then refuse.
            self.freeze_open();
            self.pump(now);
            return Err(IngestError::Backpressure {
                retry_after_ms: self.config.backpressure_retry_after_ms,
            });
        }
        let skipped = records.len() - fresh;
        self.sizes.commit(sized);
        let floor = self.last_ingested;
        for r in records.into_iter().filter(|r| r.lsn > floor) {
            self.open.put(now, r.key, r.lsn, r.record);
            self.last_ingested = r.lsn;
            if self.open.size_bytes >= self.config.checkpoint_distance_bytes {
                self.freeze_open();
            }
        }
        self.pump(now);
        Ok(IngestOutcome { applied: fresh, skipped, last_ingested_lsn: self.last_ingested })
    }

    /// Starts a size read of `key` at the last ingested LSN, unless one runs.
    fn start_size_read(&mut self, now: Instant, key: Key) {
        if self.sizes.is_reading(key) {
            return;
        }
        self.sizes.start_read(key);
        let deadline = now.plus_millis(self.config.read_wait_timeout_ms);
        self.reads
            .insert(Reader::SizeProbe(key), Read::new(key, self.last_ingested, now, deadline));
    }
}
