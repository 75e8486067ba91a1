//! The node-wide bound on in-memory layers (`NodeConfig::max_in_memory_bytes`):
//! the open and frozen layers of every timeline on the node, summed. Each
//! timeline already refuses ingest past its own `max_in_memory_bytes`; this bound
//! is for many timelines that are each under theirs.
//!
//! - **Accounting.** Each timeline slot remembers the bytes it was last counted
//!   with (`TimelineSlot::memory_counted`); the node keeps the sum
//!   ([`MemoryBudget::total`]). A timeline's bytes change only through its inputs,
//!   and every input marks it dirty, so the pump recounts a timeline after it
//!   drains it ([`Node::recount_memory`]): O(1) per input, never a walk over every
//!   timeline. A slot that leaves (a tenant stopped or broken, a timeline deleted,
//!   start-up dropping a tenant) is uncounted as it leaves. `check_invariants`
//!   asserts, once the pump is quiet, that each slot's count is its timeline's bytes
//!   and the sum is the total.
//! - **The bound.** An ingest with records not yet ingested, while the total is at
//!   or above the bound, is refused with 503 + Retry-After
//!   (`backpressure_retry_after_ms`) and counted ([`MemoryBudget::refusals`]); the
//!   timeline with the most bytes in its open layer is told to flush, so that the
//!   node drains even when the bytes sit in idle timelines. Re-sends of what a
//!   timeline already has are never refused, and reads are not affected.
//! - **Crash.** Nothing here is durable: the count is rebuilt as timelines load.

use super::api::ApiError;
use super::{Machine, Node};
use crate::id::{TenantId, TimelineId};
use crate::redo::IngestRecord;

/// The node-wide count of in-memory layer bytes, its bound and its refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes of open and frozen layers of every timeline, as last counted.
    pub total: u64,
    /// The bound (`None`: none).
    pub limit: Option<u64>,
    /// Ingests refused by the bound since start.
    pub refusals: u64,
}

impl Node {
    /// Recounts one timeline's in-memory bytes (after the pump drained it).
    pub(crate) fn recount_memory(&mut self, t: TenantId, tl: TimelineId) {
        let Some(slot) = self.tenants.get_mut(&t).and_then(|x| x.timelines.get_mut(&tl)) else {
            return;
        };
        let now = slot.timeline.in_memory_bytes();
        self.memory.total = self.memory.total - slot.memory_counted + now;
        slot.memory_counted = now;
    }

    /// Uncounts every timeline of `tenant` (its machines are about to go).
    pub(crate) fn uncount_tenant_memory(&mut self, tenant: TenantId) {
        let counted: u64 = self
            .tenants
            .get(&tenant)
            .map(|x| x.timelines.values().map(|s| s.memory_counted).sum())
            .unwrap_or(0);
        self.memory.total -= counted;
        if let Some(x) = self.tenants.get_mut(&tenant) {
            x.timelines.values_mut().for_each(|s| s.memory_counted = 0);
        }
    }

    /// Uncounts one timeline (its slot is about to go).
    pub(crate) fn uncount_timeline_memory(&mut self, t: TenantId, tl: TimelineId) {
        if let Some(slot) = self.tenants.get_mut(&t).and_then(|x| x.timelines.get_mut(&tl)) {
            self.memory.total -= std::mem::take(&mut slot.memory_counted);
        }
    }

    /// The refusal of an ingest of `records` into `tl` while the node is at its
    /// bound (counted; the fullest open layer is flushed).
    pub(crate) fn refuse_beyond_memory(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        records: &[IngestRecord],
    ) -> Option<ApiError> {
        let limit = self.memory.limit?;
        if self.memory.total < limit {
            return None;
        }
        let slot = self.tenants.get(&t)?.timelines.get(&tl)?;
        let last = slot.timeline.last_ingested_lsn();
        if records.iter().all(|r| r.lsn <= last) {
            return None; // a re-send: nothing new to hold
        }
        self.memory.refusals += 1;
        let retry_after_ms = self.config.timeline.backpressure_retry_after_ms;
        self.flush_fullest_open_layer();
        let total = self.memory.total;
        let reason = format!(
            "node in-memory layers hold {total} bytes, at its limit of {limit} (limits.max_in_memory_bytes); flushing, retry"
        );
        Some(ApiError::Unavailable { reason, retry_after_ms })
    }

    fn flush_fullest_open_layer(&mut self) {
        let fullest = self
            .tenants
            .iter()
            .flat_map(|(t, x)| x.timelines.iter().map(move |(tl, s)| (s, *t, *tl)))
            .map(|(s, t, tl)| (s.timeline.open_layer_bytes(), t, tl))
            .max();
        let Some((bytes, t, tl)) = fullest else { return };
        if bytes == 0 {
            return; // everything is frozen and flushing already
        }
        let now = self.now;
        self.with_machines(t, tl, |slot| {
            slot.timeline.handle_flush(now);
        });
        self.dirty.insert(Machine::Timeline(t, tl));
    }

    /// Each slot's count is its timeline's bytes and the total is their sum (call
    /// with the pump quiet).
    pub(crate) fn check_memory_count(&self) {
        let mut sum = 0;
        for (t, x) in &self.tenants {
            for (tl, slot) in &x.timelines {
                let bytes = slot.timeline.in_memory_bytes();
                assert_eq!(slot.memory_counted, bytes, "timeline {t}/{tl}: counted memory stale");
                sum += slot.memory_counted;
            }
        }
        assert_eq!(self.memory.total, sum, "node memory total is not the sum of its timelines");
    }
}
