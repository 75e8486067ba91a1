//! `check_invariants`: the deletion queue's rules, asserted.

use super::list::{IoState, Stage};
use super::*;

impl DeletionQueue {
    /// Panics if a rule is broken. Tests run it after every input.
    pub fn check_invariants(&self) {
        let open: Vec<u64> = self
            .lists
            .iter()
            .filter(|(_, l)| matches!(l.stage, Stage::Open { .. }))
            .map(|(s, _)| *s)
            .collect();
        assert!(open.len() <= 1, "several open lists: {open:?}");
        if let Some(seq) = open.first() {
            assert_eq!(self.lists.keys().next_back(), Some(seq), "the open list is the newest");
        }
        if let Some(max) = self.lists.keys().next_back() {
            assert!(*max < self.next_seq, "sequence {max} not below next {}", self.next_seq);
        }
        for (seq, list) in &self.lists {
            assert_eq!(*seq, list.content.sequence, "list filed under the wrong sequence");
            assert!(list.durable_version <= list.version, "durable ahead of memory");
            let executing = matches!(list.stage, Stage::Executing { .. });
            assert!(
                !executing || list.content.validated,
                "S-DEL-GEN: list {seq} executes unvalidated"
            );
            if executing {
                assert!(list.durable_version > 0, "list {seq} executes before it was accepted");
            }
            if let Stage::Validating { op } = list.stage {
                let asked = self.validation.as_ref().map(|v| v.0);
                assert_eq!(asked, Some(op), "list {seq} waits for a validation not in flight");
            }
            if let Stage::Removing { remove: IoState::InFlight(_), .. } = list.stage {
                assert!(
                    !matches!(list.write, IoState::InFlight(_)),
                    "list {seq}: write and removal overlap"
                );
            }
            if let Stage::Executing { remaining } = list.stage {
                let queued = self.exec_queue.iter().filter(|k| k.sequence == *seq).count();
                let batched: usize = self
                    .batches
                    .values()
                    .map(|b| b.keys.iter().filter(|k| k.sequence == *seq).count())
                    .sum();
                assert_eq!(remaining, queued + batched, "list {seq}: executor lost track");
            }
        }
        for key in self.exec_queue.iter().chain(self.batches.values().flat_map(|b| &b.keys)) {
            let list = self.lists.get(&key.sequence);
            assert!(
                list.is_some_and(
                    |l| l.content.validated && matches!(l.stage, Stage::Executing { .. })
                ),
                "S-DEL-GEN: {:?} is in the executor without a validated list",
                key.key
            );
        }
        for batch in self.batches.values() {
            assert!(
                !batch.keys.is_empty() && batch.keys.len() <= MAX_KEYS_PER_DELETE,
                "batch size"
            );
        }
        assert!(self.header_durable <= self.next_seq, "header beyond every sequence");
        let header_writes =
            self.ops.values().filter(|k| matches!(k, OpKind::WriteHeader { .. })).count();
        assert!(header_writes <= 1, "{header_writes} header writes at once");
        if let Some((op, _, _)) = &self.validation {
            assert_eq!(self.ops.get(op), Some(&OpKind::Validate), "validation op not tracked");
        }
        let validate_ops = self.ops.values().filter(|k| **k == OpKind::Validate).count();
        assert!(validate_ops <= 1, "{validate_ops} validations at once");
        assert_eq!(validate_ops == 1, self.validation.is_some(), "validation op without a round");
        if let Some((failures, _)) = self.validation_retry {
            assert!(failures > 0, "a validation backoff without a failure");
        }
        // The LSN updates waiting are in arrival order (a failed validation puts
        // its own back in front), so "requested after" and "deletions first" hold.
        let indexes: Vec<u64> = self.lsn_waiting.iter().map(|u| u.index).collect();
        assert!(indexes.is_sorted(), "LSN updates out of arrival order: {indexes:?}");
        // A machine with work has something in flight, a timer, or effects to hand out.
        let has_work = !self.is_idle();
        let moving =
            !self.ops.is_empty() || self.poll_timeout().is_some() || !self.effects.is_empty();
        assert!(!has_work || moving, "stuck: queued work with nothing in flight and no timer");
    }
}
