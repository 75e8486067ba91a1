//! Taking keys back: a cancelled key (its upload queue's tenant left
//! AttachedSingle) and, when a tenant leaves AttachedSingle, the keys of lists
//! recovered from disk, which no upload queue of this run knows about.
//!
//! # Why a key may leave a validated list (S-SINGLE-WRITER)
//! A node in AttachedMulti deletes nothing. A list that passed validation while
//! the tenant was Single may still be executing when the mode changes: its delete
//! is queued, or refused and backing off (cluster seed 5802: `access_denied` kept
//! one retrying across the change). Every key not in a `DeleteObjects` in flight
//! is therefore taken out of the executor and out of the list's content. A batch
//! in flight was sent before the mode changed and cannot be recalled; if it
//! fails, its cancelled keys leave it then instead of being retried.
//!
//! # Crash argument
//! Removing a key changes the list's content, so the list is rewritten (crash
//! safe: the old file or the new one). A cancelled key's `Cancelled` report waits
//! for that rewrite (or the list's removal), so the upload queue never believes a
//! cancel the disk does not hold. A crash before the rewrite leaves the old,
//! validated list; start-up executes a validated list only for tenants that load
//! AttachedSingle (`recover.rs`), where deleting the key is allowed: it was
//! unlinked from an index before it was handed here, so nobody reads it. For any
//! other tenant the key is dropped and its object leaks, for a scrubber. Either way
//! no node deletes while it is not the single holder, and no object an index names
//! is deleted.

use super::list::{IoState, Stage};
use super::*;

impl DeletionQueue {
    /// Cancels a queued deletion of `key`: from a list still collecting, waiting
    /// or validating, or from the executor of a validated one; a key in a delete in
    /// flight is cancelled only if that delete fails. Answered by a `Cancelled`
    /// report once the cancel is durable; a key not cancelled gets no extra answer
    /// (its normal report follows or already went out).
    pub fn handle_cancel(
        &mut self,
        _now: Instant,
        tenant: TenantId,
        timeline: TimelineId,
        key: RemoteKey,
    ) {
        let Some(name) = key.as_str().strip_prefix(&timeline_prefix(tenant, timeline)) else {
            return;
        };
        let name = name.to_owned();
        let report = DeletionReport { tenant, timeline, key, outcome: DeletionOutcome::Cancelled };
        let found = self.lists.values_mut().rev().find_map(|list| {
            let cancellable =
                matches!(list.stage, Stage::Open { .. } | Stage::Sealed | Stage::Validating { .. });
            (cancellable && list.remove_key(tenant, timeline, &name))
                .then_some(list.content.sequence)
        });
        match found {
            Some(seq) => self.cancelled(seq, report),
            None => self.cancel_out_of_executor(report),
        }
        self.pump();
    }

    /// Takes a cancelled key out of the executor, or, if its delete is in flight,
    /// has it taken out should that delete fail (then it is not retried).
    pub(super) fn cancel_out_of_executor(&mut self, report: DeletionReport) {
        let (tenant, timeline) = (report.tenant, report.timeline);
        if let Some(seq) = self.take_from_executor(tenant, Some(timeline), &report.key) {
            return self.cancelled(seq, report);
        }
        let in_flight = self.batches.values_mut().find(|b| {
            in_flight(b) && b.keys.iter().any(|k| k.tenant == tenant && k.key == report.key)
        });
        if let Some(batch) = in_flight {
            batch.cancel_if_failed.push(report);
        }
    }

    /// A key left list `seq`: its `Cancelled` report goes out once that is durable.
    fn cancelled(&mut self, seq: u64, report: DeletionReport) {
        self.stats.keys_cancelled_total += 1;
        let list = self.lists.get_mut(&seq).expect("the key's list");
        if list.no_file() {
            self.effects.push_back(DeletionEffect::Report(report));
        } else {
            list.cancels.push((list.version, report));
        }
    }

    /// The tenant may delete nothing now (it left AttachedSingle). Keys that came
    /// from disk at start-up are dropped from every list not in a delete in flight,
    /// and counted: no upload queue of this run waits for them or could cancel
    /// them, and their objects leak, for a scrubber. Keys pushed in this run are
    /// cancelled by their upload queues (`handle_cancel`).
    pub fn handle_stop_deleting(&mut self, _now: Instant, tenant: TenantId) {
        let mut dropped = 0u64;
        let recovered: Vec<u64> =
            self.lists.iter().filter(|(_, l)| l.recovered).map(|(s, _)| *s).collect();
        for seq in recovered {
            let list = self.lists.get_mut(&seq).expect("listed above");
            if matches!(list.stage, Stage::Executing { .. }) {
                let keys: Vec<RemoteKey> = (self.exec_queue.iter())
                    .chain(self.batches.values().filter(|b| !in_flight(b)).flat_map(|b| &b.keys))
                    .filter(|k| k.sequence == seq && k.tenant == tenant)
                    .map(|k| k.key.clone())
                    .collect();
                for key in keys {
                    if self.take_from_executor(tenant, None, &key).is_some() {
                        dropped += 1;
                    }
                }
            } else if !matches!(list.stage, Stage::Removing { .. })
                && let Some(t) = list.content.tenants.remove(&tenant)
            {
                dropped += t.timelines.values().map(|n| n.len() as u64).sum::<u64>();
                list.version += 1;
            }
        }
        self.stats.keys_dropped_stale_total += dropped;
        self.pump();
    }

    /// Takes every not-in-flight copy of `key` out of the executor and out of its
    /// list's content; the list's sequence if there was one.
    fn take_from_executor(
        &mut self,
        tenant: TenantId,
        timeline: Option<TimelineId>,
        key: &RemoteKey,
    ) -> Option<u64> {
        let hit = |k: &ExecKey| {
            k.tenant == tenant && timeline.is_none_or(|t| t == k.timeline) && &k.key == key
        };
        let mut taken: Vec<ExecKey> = Vec::new();
        self.exec_queue.retain(|k| {
            let take = hit(k);
            if take {
                taken.push(k.clone());
            }
            !take
        });
        for batch in self.batches.values_mut().filter(|b| !in_flight(b)) {
            batch.keys.retain(|k| {
                let take = hit(k);
                if take {
                    taken.push(k.clone());
                }
                !take
            });
        }
        // An emptied batch has nothing left to retry (its timer goes with it).
        self.batches.retain(|_, b| !b.keys.is_empty());
        let first = taken.first()?.clone();
        let name = key.as_str().strip_prefix(&timeline_prefix(tenant, first.timeline))?;
        for k in &taken {
            let list = self.lists.get_mut(&k.sequence).expect("an executing key has its list");
            if let Stage::Executing { remaining } = &mut list.stage {
                *remaining -= 1;
            }
            list.remove_key(tenant, k.timeline, name);
        }
        Some(first.sequence)
    }
}

fn in_flight(batch: &Batch) -> bool {
    matches!(batch.state, IoState::InFlight(_))
}
