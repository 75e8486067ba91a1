//! The deletion queue: deletes remote objects only once the control plane has
//! confirmed that the generation that asked for the deletion is still current.
//!
//! # Purpose
//! GC and compaction unlink layers from the index, then hand their keys here. A
//! node that was superseded (migration, partition, its own restart) must never
//! delete: the current holder's index may still reference those objects
//! (S-DEL-GEN, L-DELETE). The queue also carries the upload queues' LSN updates
//! through the same validation, so a visible LSN is published only on the word of
//! a validation requested after the index that made it projected (S-VISIBLE).
//!
//! # Stages (each list moves through them in order)
//! 1. **Front end** — [`DeletionQueue::handle_push`] /
//!    [`DeletionQueue::handle_push_lsn_update`] never block and never fail: keys
//!    collect in the *open* list. The open list is sealed when it holds
//!    `list_target_keys`, when it is `list_seal_delay_ms` old, when a flush asks, or
//!    when a push brings a second generation of a tenant (one generation per tenant
//!    per list). **The input is unbounded by design**, the one exception to the
//!    named-bounds rule: the callers are upload queues reacting to index uploads
//!    that already happened; refusing or blocking them would leave unlinked
//!    garbage nobody remembers, and their own bounds (index uploads in flight)
//!    already bound the rate. [`DeletionQueue::input_queue_len`] exports the number
//!    of keys not yet durable as a metric.
//! 2. **Persist** — a sealed list is written to `deletion/{seq:016x}-01.list`
//!    ([`DeletionEffect::WriteList`]); only once that write completed does it count
//!    as accepted. A cancelled key makes the list be rewritten, and the cancel is
//!    reported only after the rewrite (or the list's removal) is durable.
//! 3. **Validate** — accepted lists and waiting LSN updates go to the control plane
//!    in one [`DeletionEffect::Validate`] (a `(tenant, generation)` pair per
//!    distinct generation). Pairs found stale are dropped and counted, never
//!    executed; their keys are reported [`DeletionOutcome::DroppedStale`] (the
//!    objects are leaked on purpose, for a scrubber). An LSN update is reported
//!    ([`DeletionEffect::LsnValidated`]) only by a validation requested after it
//!    arrived, and only once the lists holding deletions pushed before it were
//!    accepted (LSN updates travel in order with deletions). No validity is cached.
//!    The header `deletion/header-01` records the highest sequence at or below
//!    which every remaining list passed validation, with its validated content on
//!    disk.
//!    A validation can fail ([`DeletionQueue::handle_validation_failed`]: the
//!    control plane was unreachable, did not answer within the client's deadline,
//!    or refused, after the client's own retries). Then nothing is deleted, nothing
//!    is dropped and nothing becomes visible: the lists go back to waiting, the LSN
//!    updates back to the front of the waiting ones, and a new validation (a new
//!    request, so "requested after" still holds) is sent when the
//!    [`TimerReason::RetryValidation`] backoff expires (`backoff_base_ms` doubling
//!    per consecutive failure up to `backoff_max_ms`; a success resets it). Flushes
//!    wait meanwhile: they complete only when every key has its outcome.
//! 4. **Execute** — keys of validated lists go out in
//!    [`DeletionEffect::DeleteObjects`] batches of at most [`MAX_KEYS_PER_DELETE`],
//!    at most `max_deletes_in_flight` at once; a transient failure retries the
//!    batch after an exponential backoff, a permanent one reports the keys
//!    [`DeletionOutcome::FailedPermanently`]. A list whose keys are all done is
//!    removed from disk ([`DeletionEffect::RemoveList`]). A key not in a delete in
//!    flight still leaves when cancelled, or (read back at start-up) when its
//!    tenant leaves AttachedSingle ([`DeletionQueue::handle_stop_deleting`]); see
//!    `cancel.rs` for why and for its crash argument.
//!
//! [`DeletionQueue::handle_flush`] completes ([`DeletionEffect::FlushDone`]) when
//! every key and LSN update pushed before it has its outcome; it makes every stage
//! skip its batching delay meanwhile. [`DeletionQueue::handle_flush_advisory`] does
//! the same without a completion (used before a detach, so pending deletions are
//! validated while this node still holds the latest generation).
//!
//! # Inputs, effects, completions
//! Inputs are the `handle_*` methods, and the same as data: [`DeletionInput`], fed
//! by [`DeletionQueue::handle`] (what the fuzz target drives). Effects carry an [`OpId`]; `WriteList`,
//! `WriteHeader`, `RemoveList` and `DeleteObjects` complete through
//! [`DeletionQueue::handle_completion`], `Validate` through
//! [`DeletionQueue::handle_validation`] (the node composite routes it to the
//! control plane). `Report`, `LsnValidated` and `FlushDone` need no completion.
//!
//! # Invariants (checked by [`DeletionQueue::check_invariants`])
//! - S-DEL-GEN: a key is in a `DeleteObjects` batch only if its list passed a
//!   validation requested after the list was accepted, for the generation the list
//!   records.
//! - A list holds one generation per tenant; sequences only grow.
//! - A batch holds at most [`MAX_KEYS_PER_DELETE`] keys.
//! - A list write and its removal never overlap; at most one header write.
//! - Queued work always has an effect in flight or a timer set.
//! - A validation retry waits only while no validation is in flight; a list waits
//!   for a validation only while that validation is in flight.
//!
//! # Crash and recovery
//! Durable state is the list files and the header; the rest is rebuilt by
//! [`DeletionQueue::recover`] after the node's re-attach:
//! - crash before a list write completed: its keys are lost; they were never
//!   reported accepted, and the objects are leaked, not wrongly deleted;
//! - crash during validation or execution: the list is still on disk; it is
//!   validated again (or, at or below the header, executed again: deleting a
//!   missing object succeeds) — only for tenants loading AttachedSingle: a
//!   validated list's keys of any other tenant are dropped and counted
//!   (S-SINGLE-WRITER: a node deletes nothing for a tenant it does not hold
//!   Single);
//! - lists of a tenant's immediately preceding generation, when the control plane
//!   says that generation was this node's own, are rewritten to the new generation
//!   and validated as usual, so a plain restart loses no deletion; lists of any
//!   other generation, or of a tenant no longer attached here, are dropped and
//!   counted, never executed;
//! - keys recovered from disk produce no reports: no upload queue of this run
//!   waits for them.
//!
//! A failed write, fsync, header write or removal leaves the file's content
//! unknown: the machine retries the same operation after a backoff (the
//! crash-safe write replaces the whole file), and never counts it done before a
//! success. The driver maps "already removed" to success.

mod cancel;
mod check;
mod completions;
mod input;
mod list;
pub mod messages;
/// The reference world (two nodes, the control plane, remote storage) of the
/// property test and, with the `fuzzing` feature, of the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
mod observe;
mod pump;
mod recover;
#[cfg(test)]
mod tests;

pub use input::{DeletionInput, DeletionOutput};
pub use messages::*;

use crate::control_plane::{CallFailure, ReAttachedTenant};
use crate::deletion_list::{DeletionHeader, DeletionList};
use crate::generation::Generation;
use crate::id::{OpId, OpIds, TenantId, TimelineId};
use crate::lsn::Lsn;
use crate::remote_path::{RemoteKey, timeline_prefix};
use crate::time::Instant;
use list::{IoState, List};
use std::collections::{BTreeMap, VecDeque};

/// The most keys one `DeleteObjects` may carry (the S3 limit).
pub const MAX_KEYS_PER_DELETE: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionQueueConfig {
    /// Seal the open list once it holds this many keys.
    pub list_target_keys: usize,
    /// Seal the open list this long after its first key arrived.
    pub list_seal_delay_ms: u64,
    /// Validate as soon as this many accepted keys wait.
    pub validate_batch_keys: usize,
    /// Validate once the oldest waiting list or LSN update has waited this long.
    pub validate_delay_ms: u64,
    /// `DeleteObjects` batches in flight at once.
    pub max_deletes_in_flight: usize,
    /// List writes in flight at once.
    pub max_list_writes_in_flight: usize,
    /// First retry delay; doubles per failure up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for DeletionQueueConfig {
    fn default() -> Self {
        DeletionQueueConfig {
            list_target_keys: 16_384,
            list_seal_delay_ms: 10_000,
            validate_batch_keys: 16_384,
            validate_delay_ms: 10_000,
            max_deletes_in_flight: 4,
            max_list_writes_in_flight: 4,
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
        }
    }
}

/// How a `WriteList` / `WriteHeader` / `RemoveList` / `DeleteObjects` failed: the
/// one I/O error type. A local list or header write is retried whatever the kind
/// (the file must get durable; after a failed fsync it is written again whole);
/// a `DeleteObjects` that failed `Permanent` or `Corrupt` is reported failed,
/// anything else is retried with backoff.
pub use crate::io_error::IoError;

/// Identifies one flush; its [`DeletionEffect::FlushDone`] carries it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlushId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionEffect {
    /// Crash-safe write of `deletion/{DeletionList::file_name(sequence)}`.
    WriteList {
        op: OpId,
        sequence: u64,
        bytes: Vec<u8>,
    },
    /// Crash-safe write of `deletion/header-01`.
    WriteHeader {
        op: OpId,
        bytes: Vec<u8>,
    },
    /// Remove `deletion/{DeletionList::file_name(sequence)}` (durably).
    RemoveList {
        op: OpId,
        sequence: u64,
    },
    /// Ask the control plane; answered by `handle_validation` with results in
    /// request order.
    Validate {
        op: OpId,
        tenants: Vec<(TenantId, Generation)>,
    },
    DeleteObjects {
        op: OpId,
        keys: Vec<RemoteKey>,
    },
    /// For the upload queue of `(tenant, timeline)`.
    Report(DeletionReport),
    /// For the upload queue of `(tenant, timeline)`.
    LsnValidated(LsnValidation),
    FlushDone {
        id: FlushId,
    },
}

/// An input that does not fit the machine's state: a bug in the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeletionQueueError {
    #[error("stale or unknown completion {0}: nothing is waiting for it")]
    UnexpectedCompletion(OpId),
    #[error("validation {op} answered {got} results for {asked} pairs, or out of order")]
    ValidationMismatch { op: OpId, asked: usize, got: usize },
}

/// Why the machine wants to be woken: the closed set of timers. Time-based
/// transitions happen only when their timer fires (`handle_timeout`): an expired
/// backoff is not retried, an old open list not sealed, by any other input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerReason {
    SealOpenList,
    Validate,
    RetryListWrite(u64),
    RetryListRemove(u64),
    RetryHeaderWrite,
    RetryDelete(u64),
    /// The last validation failed; the next one waits for this backoff.
    RetryValidation,
}

/// One LSN update waiting for (or in) a validation.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LsnUpdate {
    tenant: TenantId,
    timeline: TimelineId,
    generation: Generation,
    lsn: Lsn,
    /// Deletions pushed before it live in lists with sequence at or below this.
    after_seq: u64,
    /// Position among all LSN updates ever pushed (for flushes).
    index: u64,
    arrived_at: Instant,
}

/// The validation in flight: its op, the pairs asked, the LSN updates it covers.
type Validation = (OpId, Vec<(TenantId, Generation)>, Vec<LsnUpdate>);

/// One key handed to the executor.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ExecKey {
    sequence: u64,
    tenant: TenantId,
    timeline: TimelineId,
    key: RemoteKey,
    report: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Batch {
    keys: Vec<ExecKey>,
    state: IoState,
    failures: u32,
    /// Keys cancelled while this batch was in flight: if it fails, they leave it
    /// (cancelled) instead of being retried (`cancel.rs`).
    cancel_if_failed: Vec<DeletionReport>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flush {
    /// `None` for an advisory flush.
    id: Option<FlushId>,
    upto_seq: u64,
    upto_lsn_index: u64,
}

/// What an op id stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    WriteList { sequence: u64, version: u64 },
    RemoveList { sequence: u64 },
    WriteHeader { validated_sequence: u64 },
    Validate,
    Delete { batch: u64 },
}

/// Counters exported as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletionQueueStats {
    pub keys_pushed_total: u64,
    pub keys_executed_total: u64,
    pub keys_failed_total: u64,
    pub keys_dropped_stale_total: u64,
    pub keys_cancelled_total: u64,
    /// Keys of recovered lists dropped at start-up (another generation's).
    pub keys_dropped_at_recovery_total: u64,
    pub lists_dropped_stale_total: u64,
    pub lsn_updates_valid_total: u64,
    pub lsn_updates_dropped_total: u64,
    pub validations_total: u64,
    /// Validations that got no usable answer, by kind; each is retried.
    pub validations_unreachable_total: u64,
    pub validations_timed_out_total: u64,
    pub validations_refused_total: u64,
    pub delete_retries_total: u64,
}

#[derive(Debug)]
pub struct DeletionQueue {
    config: DeletionQueueConfig,
    /// Every list not yet gone, by sequence. At most one is `Open`, the newest.
    lists: BTreeMap<u64, List>,
    next_seq: u64,
    /// LSN updates not yet in a validation, in arrival order.
    lsn_waiting: Vec<LsnUpdate>,
    /// The validation in flight: its op, the pairs asked, the LSN updates it covers.
    validation: Option<Validation>,
    /// After a failed validation: consecutive failures, and when the next
    /// validation may be sent. `None` once a validation succeeded.
    validation_retry: Option<(u32, Instant)>,
    lsn_pushed: u64,
    /// Keys of validated lists not yet in a batch, in list order.
    exec_queue: VecDeque<ExecKey>,
    batches: BTreeMap<u64, Batch>,
    next_batch: u64,
    /// The header as durable on disk, and its write state.
    header_durable: u64,
    header_write: IoState,
    header_failures: u32,
    flushes: Vec<Flush>,
    next_flush: u64,
    ops: BTreeMap<OpId, OpKind>,
    op_ids: OpIds,
    effects: VecDeque<DeletionEffect>,
    stats: DeletionQueueStats,
}

impl DeletionQueue {
    /// A queue with nothing on disk (a fresh node).
    pub fn new(config: DeletionQueueConfig) -> Self {
        recover::empty(config, 0, 1)
    }

    /// Rebuilds the queue from what `deletion/` holds (`lists` parsed by the driver;
    /// unparsable ones it reported and skipped) and the re-attach answer.
    pub fn recover(
        config: DeletionQueueConfig,
        header: Option<DeletionHeader>,
        lists: Vec<DeletionList>,
        attached: &BTreeMap<TenantId, ReAttachedTenant>,
        now: Instant,
    ) -> Self {
        recover::recover(config, header, lists, attached, now)
    }

    pub fn handle_push(
        &mut self,
        now: Instant,
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
        keys: Vec<RemoteKey>,
    ) {
        let prefix = timeline_prefix(tenant, timeline);
        let mut names = Vec::with_capacity(keys.len());
        for key in keys {
            self.stats.keys_pushed_total += 1;
            match key.as_str().strip_prefix(&prefix) {
                Some(name) if !name.is_empty() => names.push(name.to_owned()),
                _ => {
                    self.stats.keys_failed_total += 1;
                    let outcome = DeletionOutcome::FailedPermanently(format!(
                        "key is not under the timeline prefix {prefix}"
                    ));
                    self.report(tenant, timeline, key, outcome);
                }
            }
        }
        if !names.is_empty() {
            let list = self.open_list_for(now, tenant, generation);
            list.add(tenant, generation, timeline, names);
        }
        self.pump();
    }

    pub fn handle_push_lsn_update(
        &mut self,
        now: Instant,
        tenant: TenantId,
        timeline: TimelineId,
        generation: Generation,
        lsn: Lsn,
    ) {
        let after_seq = self.highest_nonempty_seq();
        self.lsn_pushed += 1;
        let index = self.lsn_pushed;
        // A newer update of the same timeline and generation supersedes a waiting one.
        self.lsn_waiting.retain(|u| {
            !(u.tenant == tenant && u.timeline == timeline && u.generation == generation)
        });
        let update =
            LsnUpdate { tenant, timeline, generation, lsn, after_seq, index, arrived_at: now };
        self.lsn_waiting.push(update);
        self.pump();
    }

    pub fn handle_flush(&mut self, _now: Instant) -> FlushId {
        let id = FlushId(self.next_flush);
        self.next_flush += 1;
        self.add_flush(Some(id));
        id
    }

    pub fn handle_flush_advisory(&mut self, _now: Instant) {
        self.add_flush(None);
    }

    pub fn handle_completion(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<(), IoError>,
    ) -> Result<(), DeletionQueueError> {
        let kind = match self.ops.get(&op) {
            Some(OpKind::Validate) | None => {
                return Err(DeletionQueueError::UnexpectedCompletion(op));
            }
            Some(kind) => *kind,
        };
        self.ops.remove(&op);
        match kind {
            OpKind::WriteList { sequence, version } => {
                self.list_written(now, sequence, version, result)
            }
            OpKind::RemoveList { sequence } => self.list_removed(now, sequence, result),
            OpKind::WriteHeader { validated_sequence } => {
                self.header_written(now, validated_sequence, result)
            }
            OpKind::Delete { batch } => self.batch_done(now, batch, result),
            OpKind::Validate => unreachable!("refused above"),
        }
        self.pump();
        Ok(())
    }

    /// The control plane's answer to `Validate { op, .. }`, in request order.
    pub fn handle_validation(
        &mut self,
        now: Instant,
        op: OpId,
        results: Vec<(TenantId, bool)>,
    ) -> Result<(), DeletionQueueError> {
        let Some((expected, asked, _)) = &self.validation else {
            return Err(DeletionQueueError::UnexpectedCompletion(op));
        };
        if *expected != op {
            return Err(DeletionQueueError::UnexpectedCompletion(op));
        }
        let aligned = asked.len() == results.len()
            && asked.iter().zip(&results).all(|((t, _), (r, _))| t == r);
        if !aligned {
            let (asked, got) = (asked.len(), results.len());
            return Err(DeletionQueueError::ValidationMismatch { op, asked, got });
        }
        let (_, asked, lsn_updates) = self.validation.take().expect("checked above");
        self.ops.remove(&op);
        self.validation_retry = None;
        let valid: Vec<(TenantId, Generation)> = asked
            .into_iter()
            .zip(results)
            .filter(|(_, (_, ok))| *ok)
            .map(|(pair, _)| pair)
            .collect();
        self.validated(now, op, &valid, lsn_updates);
        self.pump();
        Ok(())
    }

    /// The validation `op` failed (see [`CallFailure`]): nothing it covers is
    /// deleted, dropped or made visible; everything waits for the next validation,
    /// sent after a backoff.
    pub fn handle_validation_failed(
        &mut self,
        now: Instant,
        op: OpId,
        failure: &CallFailure,
    ) -> Result<(), DeletionQueueError> {
        match &self.validation {
            Some((expected, _, _)) if *expected == op => {}
            _ => return Err(DeletionQueueError::UnexpectedCompletion(op)),
        }
        let (_, _, lsn_updates) = self.validation.take().expect("checked above");
        self.ops.remove(&op);
        match failure {
            CallFailure::Unreachable(_) => self.stats.validations_unreachable_total += 1,
            CallFailure::Timeout { .. } => self.stats.validations_timed_out_total += 1,
            CallFailure::Refused(_) => self.stats.validations_refused_total += 1,
        }
        self.validation_failed(op, lsn_updates);
        let failures = self.validation_retry.map_or(1, |(n, _)| n + 1);
        let at = now.plus_millis(pump::backoff_ms(&self.config, failures));
        self.validation_retry = Some((failures, at));
        self.pump();
        Ok(())
    }

    /// Fires one timer, named by the caller ([`DeletionQueue::next_timer`] says which
    /// and when): only that timer's transition happens (a retry becomes ready, the
    /// open list is sealed, the validation delay has passed), then the pump. A timer
    /// that is not set or not yet due at `now` does nothing.
    pub fn handle_timeout(&mut self, now: Instant, timer: TimerReason) {
        let due = self.timers().any(|(at, t)| t == timer && at <= now);
        if due {
            self.fire(timer);
        }
        self.pump();
    }

    fn report(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        key: RemoteKey,
        outcome: DeletionOutcome,
    ) {
        self.effects.push_back(DeletionEffect::Report(DeletionReport {
            tenant,
            timeline,
            key,
            outcome,
        }));
    }

    fn next_op(&mut self, kind: OpKind) -> OpId {
        let op = self.op_ids.next_id();
        self.ops.insert(op, kind);
        op
    }

    /// The highest sequence holding a not-yet-validated key pushed so far (0: none).
    fn highest_nonempty_seq(&self) -> u64 {
        self.lists.iter().rev().find(|(_, l)| !l.content.is_empty()).map_or(0, |(s, _)| *s)
    }

    fn add_flush(&mut self, id: Option<FlushId>) {
        let upto_seq = self.next_seq.saturating_sub(1);
        self.flushes.push(Flush { id, upto_seq, upto_lsn_index: self.lsn_pushed });
        self.pump();
    }
}
