//! What the deletion queue shows its driver and the node: its next effect and
//! timer, and the counts that metrics and tests read.

use super::list::Stage;
use super::*;

impl DeletionQueue {
    pub fn poll_effect(&mut self) -> Option<DeletionEffect> {
        self.effects.pop_front()
    }

    /// The earliest deadline; [`DeletionQueue::next_timer`] says which timer it is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The earliest timer and its reason: call `handle_timeout(at, reason)` then.
    /// Ties go to the first in [`DeletionQueue::timers`] order.
    pub fn next_timer(&self) -> Option<(Instant, TimerReason)> {
        self.timers().min_by_key(|(at, _)| *at)
    }

    /// Keys pushed but not yet durable: the unbounded input (metric).
    pub fn input_queue_len(&self) -> usize {
        self.lists.values().filter(|l| l.never_written()).map(|l| l.content.len()).sum()
    }

    /// Keys in the queue at any stage (metric).
    pub fn queued_keys(&self) -> usize {
        let in_lists: usize = self.lists.values().map(|l| l.content.len()).sum();
        in_lists
            + self.exec_queue.len()
            + self.batches.values().map(|b| b.keys.len()).sum::<usize>()
    }

    /// Lists not yet gone from disk or memory (metric).
    pub fn lists_len(&self) -> usize {
        self.lists.len()
    }

    pub fn lsn_updates_waiting(&self) -> usize {
        self.lsn_waiting.len() + self.validation.as_ref().map_or(0, |v| v.2.len())
    }

    pub fn header_validated_sequence(&self) -> u64 {
        self.header_durable
    }

    pub fn stats(&self) -> DeletionQueueStats {
        self.stats
    }

    /// Nothing queued, nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.lists.values().all(|l| matches!(l.stage, Stage::Open { .. }) && l.content.is_empty())
            && self.lsn_updates_waiting() == 0
            && self.ops.is_empty()
            && self.flushes.is_empty()
    }
}
