//! Disk full: what a timeline does when a flush write fails with `NoSpace`.
//!
//! **Policy** (the budget is named: [`TimelineConfig::no_space_budget_ms`]):
//! 1. The first flush write (layer or metadata) that fails with
//!    [`IoErrorKind::NoSpace`] starts an episode, [`DiskFull::Refusing`]. Ingest of
//!    new records is refused with [`IngestError::NoSpace`] (the node answers 503
//!    with a Retry-After; `strata_timelines_disk_full` counts such timelines);
//!    reads keep being served (the frozen layers stay in memory, the layer files
//!    stay readable); the write is retried with the flush backoff, its bytes encoded
//!    again from memory.
//! 2. Any flush write that succeeds ends the episode: ingest is accepted again.
//! 3. A write failing with `NoSpace` `no_space_budget_ms` or more after the episode
//!    began makes it [`DiskFull::OutOfSpace`]: the flush stops retrying (no timer,
//!    so nothing more is written), ingest stays refused, and the timeline emits
//!    [`TimelineEffect::OutOfSpace`]; the node marks it Broken with reason
//!    `no_space` and still serves its reads. It comes back when it is loaded again
//!    (a restart or a `location_config`) after an operator freed space; what it
//!    acknowledged above its visible LSN is re-sent by the client.
//!
//! Another failure kind during an episode (a failed fsync, a permanent error)
//! neither ends it nor counts against the budget; the write is retried as usual.
//!
//! **Crash.** Nothing here is durable: a restarted timeline starts without an
//! episode and finds out again at its first flush.

#[cfg(doc)]
use super::TimelineConfig;
use super::ingest::IngestError;
use super::{Timeline, TimelineEffect};
use crate::io_error::{IoError, IoErrorKind};
use crate::time::Instant;

/// A disk-full episode of one timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFull {
    /// Flush writes fail with `NoSpace` since `since`: ingest refused, reads
    /// served, the flush retried.
    Refusing { since: Instant },
    /// The budget ran out: no more retries, ingest refused, reads served; the node
    /// holds the timeline Broken (`no_space`).
    OutOfSpace { since: Instant },
}

impl Timeline {
    /// A flush write ended: `NoSpace` starts or continues an episode (and may end the
    /// budget); a success ends it. Returns true when the flush must not retry.
    pub(super) fn note_flush_write(&mut self, now: Instant, result: &Result<(), IoError>) -> bool {
        match (result, self.disk_full) {
            (Ok(()), Some(DiskFull::Refusing { .. })) => {
                self.disk_full = None;
                false
            }
            (Err(e), None) if e.kind == IoErrorKind::NoSpace => {
                self.disk_full = Some(DiskFull::Refusing { since: now });
                false
            }
            (Err(e), Some(DiskFull::Refusing { since })) if e.kind == IoErrorKind::NoSpace => {
                if now.millis_since(since) < self.config.no_space_budget_ms {
                    return false;
                }
                self.disk_full = Some(DiskFull::OutOfSpace { since });
                self.effects.push_back(TimelineEffect::OutOfSpace { since });
                true
            }
            (_, Some(DiskFull::OutOfSpace { .. })) => true,
            (_, _) => false,
        }
    }

    /// The refusal ingest answers while an episode lasts, if one does.
    pub(super) fn no_space_refusal(&self) -> Option<IngestError> {
        self.disk_full.map(|d| IngestError::NoSpace {
            out_of_space: matches!(d, DiskFull::OutOfSpace { .. }),
            retry_after_ms: self.config.backpressure_retry_after_ms,
        })
    }

    /// Whether the flush stopped for good (the budget ran out).
    pub(super) fn out_of_space(&self) -> bool {
        matches!(self.disk_full, Some(DiskFull::OutOfSpace { .. }))
    }

    /// The disk-full episode this timeline is in, if any.
    pub fn disk_full(&self) -> Option<DiskFull> {
        self.disk_full
    }
}

/// Default of [`TimelineConfig::no_space_budget_ms`]: five minutes of failing
/// writes, long enough for an operator alert to be acted on or for space to be
/// freed by eviction and GC elsewhere, short enough that a client is not left
/// retrying forever.
pub const DEFAULT_NO_SPACE_BUDGET_MS: u64 = 5 * 60 * 1000;
