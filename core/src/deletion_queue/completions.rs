//! The completion handlers of the deletion queue's own I/O (list writes and
//! removals, header writes, delete batches): each records the outcome and
//! leaves what happens next to the pump (`pump.rs`).

use super::list::{IoState, Stage};
use super::pump::*;
use super::*;

impl DeletionQueue {
    pub(super) fn list_written(
        &mut self,
        now: Instant,
        seq: u64,
        version: u64,
        result: Result<(), IoError>,
    ) {
        let backoff = |failures| now.plus_millis(backoff_ms(&self.config, failures));
        let list = self.lists.get_mut(&seq).expect("a list outlives its writes");
        match result {
            Ok(()) => {
                list.write = IoState::Idle;
                list.write_failures = 0;
                list.durable_version = list.durable_version.max(version);
                list.accepted_at.get_or_insert(now);
                let durable = list.durable_version;
                let (ready, held): (Vec<_>, Vec<_>) =
                    list.cancels.drain(..).partition(|(v, _)| *v <= durable);
                list.cancels = held;
                for (_, report) in ready {
                    self.effects.push_back(DeletionEffect::Report(report));
                }
            }
            Err(_) => {
                list.write_failures += 1;
                list.write = IoState::Backoff { until: backoff(list.write_failures) };
            }
        }
    }

    pub(super) fn list_removed(&mut self, now: Instant, seq: u64, result: Result<(), IoError>) {
        match result {
            Ok(()) => {
                let list = self.lists.remove(&seq).expect("a list outlives its removal");
                for (_, report) in list.cancels {
                    self.effects.push_back(DeletionEffect::Report(report));
                }
            }
            Err(_) => {
                let config = self.config.clone();
                let list = self.lists.get_mut(&seq).expect("a list outlives its removal");
                if let Stage::Removing { remove, failures } = &mut list.stage {
                    *failures += 1;
                    let until = now.plus_millis(backoff_ms(&config, *failures));
                    *remove = IoState::Backoff { until };
                }
            }
        }
    }

    pub(super) fn header_written(
        &mut self,
        now: Instant,
        validated_sequence: u64,
        result: Result<(), IoError>,
    ) {
        match result {
            Ok(()) => {
                self.header_write = IoState::Idle;
                self.header_failures = 0;
                self.header_durable = self.header_durable.max(validated_sequence);
            }
            Err(_) => {
                self.header_failures += 1;
                let until = now.plus_millis(backoff_ms(&self.config, self.header_failures));
                self.header_write = IoState::Backoff { until };
            }
        }
    }

    pub(super) fn batch_done(&mut self, now: Instant, id: u64, result: Result<(), IoError>) {
        let outcome = match result {
            Ok(()) => DeletionOutcome::Executed,
            Err(e) if !e.kind.is_retried_remotely() => {
                DeletionOutcome::FailedPermanently(e.to_string())
            }
            Err(_) => {
                let config = self.config.clone();
                let batch = self.batches.get_mut(&id).expect("a batch outlives its op");
                batch.failures += 1;
                let until = now.plus_millis(backoff_ms(&config, batch.failures));
                batch.state = IoState::Backoff { until };
                // Keys cancelled while it was in flight leave it now, not retried.
                for report in std::mem::take(&mut batch.cancel_if_failed) {
                    self.cancel_out_of_executor(report);
                }
                return;
            }
        };
        let batch = self.batches.remove(&id).expect("a batch outlives its op");
        for k in batch.keys {
            match &outcome {
                DeletionOutcome::Executed => self.stats.keys_executed_total += 1,
                _ => self.stats.keys_failed_total += 1,
            }
            if let Some(list) = self.lists.get_mut(&k.sequence)
                && let Stage::Executing { remaining } = &mut list.stage
            {
                *remaining -= 1;
            }
            if k.report {
                self.report(k.tenant, k.timeline, k.key, outcome.clone());
            }
        }
    }
}
