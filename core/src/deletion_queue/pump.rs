//! Scheduling: the one place that decides what the deletion queue does next, and
//! the completion handlers that feed it.

use super::list::{IoState, List, Stage};
use super::*;
use crate::remote_path::timeline_prefix;
use std::collections::BTreeSet;

/// `base · 2^(failures-1)`, capped at `max`.
pub(crate) fn backoff_ms(config: &DeletionQueueConfig, failures: u32) -> u64 {
    let factor = 1u64.checked_shl(failures.saturating_sub(1).min(63)).unwrap_or(u64::MAX);
    config.backoff_base_ms.saturating_mul(factor).min(config.backoff_max_ms)
}

/// Only an idle I/O may start: a backoff ends when its timer fires (`fire`).
pub(super) fn ready(state: IoState) -> bool {
    matches!(state, IoState::Idle)
}

/// A backoff whose timer fired becomes idle (the pump then retries it).
pub(super) fn end_backoff(state: &mut IoState) {
    if matches!(state, IoState::Backoff { .. }) {
        *state = IoState::Idle;
    }
}

impl DeletionQueue {
    /// The open list that may take a push of `tenant` in `generation`; seals the
    /// current one first if it is full or holds another generation of the tenant.
    pub(super) fn open_list_for(
        &mut self,
        now: Instant,
        tenant: TenantId,
        generation: Generation,
    ) -> &mut List {
        let reusable = self.lists.last_key_value().is_some_and(|(_, l)| {
            matches!(l.stage, Stage::Open { .. })
                && l.generation_of(tenant).is_none_or(|g| g == generation)
                && l.content.len() < self.config.list_target_keys
        });
        if !reusable {
            self.seal_open();
            let seq = self.next_seq;
            self.next_seq += 1;
            self.lists.insert(seq, List::open(seq, now));
        }
        self.lists.values_mut().next_back().expect("an open list exists now")
    }

    fn seal_open(&mut self) {
        if let Some((_, list)) = self.lists.last_key_value()
            && matches!(list.stage, Stage::Open { .. })
        {
            let (seq, mut list) = self.lists.pop_last().expect("just looked");
            if !list.content.is_empty() {
                list.stage = Stage::Sealed;
                self.lists.insert(seq, list);
            } // an empty open list is simply forgotten
        }
    }

    /// The transition of one due timer (`handle_timeout` checked it is due).
    pub(super) fn fire(&mut self, timer: TimerReason) {
        match timer {
            TimerReason::SealOpenList => {
                if self.lists.last_key_value().is_some_and(|(_, l)| !l.content.is_empty()) {
                    self.seal_open();
                }
            }
            TimerReason::Validate | TimerReason::RetryValidation => self.start_validation(true),
            TimerReason::RetryListWrite(seq) => {
                if let Some(list) = self.lists.get_mut(&seq) {
                    end_backoff(&mut list.write);
                }
            }
            TimerReason::RetryListRemove(seq) => {
                if let Some(list) = self.lists.get_mut(&seq)
                    && let Stage::Removing { remove, .. } = &mut list.stage
                {
                    end_backoff(remove);
                }
            }
            TimerReason::RetryHeaderWrite => end_backoff(&mut self.header_write),
            TimerReason::RetryDelete(id) => {
                if let Some(batch) = self.batches.get_mut(&id) {
                    end_backoff(&mut batch.state);
                }
            }
        }
    }

    /// Makes every decision the current state allows. Time passing alone changes
    /// nothing here: that is what the timers are for.
    pub(super) fn pump(&mut self) {
        self.seal_if_due();
        self.drop_empty_lists();
        self.start_list_writes();
        self.start_validation(false);
        self.start_batches();
        self.start_removals();
        self.start_header_write();
        self.complete_flushes();
    }

    /// Seals the open list when it is full or a flush waits for it (its age seals
    /// it through [`TimerReason::SealOpenList`]).
    fn seal_if_due(&mut self) {
        let Some((seq, list)) = self.lists.last_key_value() else { return };
        let Stage::Open { .. } = list.stage else { return };
        let flushing = self.flushes.iter().any(|f| f.upto_seq >= *seq);
        let due = list.content.len() >= self.config.list_target_keys || flushing;
        if due && !list.content.is_empty() {
            self.seal_open();
        }
    }

    /// Sealed lists emptied by cancels: forget them, or remove their file.
    fn drop_empty_lists(&mut self) {
        let empty: Vec<u64> = self
            .lists
            .iter()
            .filter(|(_, l)| l.stage == Stage::Sealed && l.content.is_empty())
            .map(|(s, _)| *s)
            .collect();
        for seq in empty {
            self.retire(seq);
        }
    }

    /// A list with nothing left to execute: gone at once if no write of it was
    /// ever attempted, else its file is removed.
    fn retire(&mut self, seq: u64) {
        let list = self.lists.get_mut(&seq).expect("retiring a known list");
        if list.no_file() {
            let list = self.lists.remove(&seq).expect("just looked");
            for (_, report) in list.cancels {
                self.effects.push_back(DeletionEffect::Report(report));
            }
        } else {
            list.stage = Stage::Removing { remove: IoState::Idle, failures: 0 };
        }
    }

    fn start_list_writes(&mut self) {
        let in_flight =
            self.lists.values().filter(|l| matches!(l.write, IoState::InFlight(_))).count();
        let slots = self.config.max_list_writes_in_flight.saturating_sub(in_flight);
        let due: Vec<u64> = self
            .lists
            .iter()
            .filter(|(_, l)| l.needs_write() && ready(l.write))
            .map(|(s, _)| *s)
            .take(slots)
            .collect();
        for seq in due {
            let version = self.lists[&seq].version;
            let op = self.next_op(OpKind::WriteList { sequence: seq, version });
            let list = self.lists.get_mut(&seq).expect("listed above");
            list.write = IoState::InFlight(op);
            let bytes = list.content.to_json_bytes();
            self.effects.push_back(DeletionEffect::WriteList { op, sequence: seq, bytes });
        }
    }

    /// Lists accepted and waiting for validation.
    fn validation_candidates(&self) -> impl Iterator<Item = (&u64, &List)> {
        self.lists.iter().filter(|(_, l)| l.stage == Stage::Sealed && l.durable_version > 0)
    }

    /// LSN updates whose earlier deletions are all accepted.
    fn eligible_lsn_updates(&self) -> usize {
        let first_unaccepted = self
            .lists
            .iter()
            .find(|(_, l)| !l.content.is_empty() && l.durable_version == 0)
            .map_or(u64::MAX, |(s, _)| *s);
        self.lsn_waiting.iter().take_while(|u| u.after_seq < first_unaccepted).count()
    }

    /// When the next validation is due by age alone, or, after a failed one, when
    /// its backoff ends.
    pub(super) fn validation_deadline(&self) -> Option<Instant> {
        if self.validation.is_some() {
            return None;
        }
        let lists = self.validation_candidates().filter_map(|(_, l)| l.accepted_at);
        let eligible = self.eligible_lsn_updates();
        let lsns = self.lsn_waiting[..eligible].iter().map(|u| u.arrived_at);
        let oldest = lists.chain(lsns).min()?;
        match self.validation_retry {
            Some((_, at)) => Some(at),
            None => Some(oldest.plus_millis(self.config.validate_delay_ms)),
        }
    }

    /// Starts a validation when enough keys wait, a flush waits, or
    /// (`delay_passed`, from [`TimerReason::Validate`]) the oldest waited long enough.
    fn start_validation(&mut self, delay_passed: bool) {
        if self.validation.is_some() {
            return;
        }
        let due = match self.validation_retry {
            // After a failure only the backoff's timer decides: no flush or full
            // batch hurries a control plane that just failed.
            Some(_) => delay_passed,
            None => {
                let waiting_keys: usize =
                    self.validation_candidates().map(|(_, l)| l.content.len()).sum();
                waiting_keys >= self.config.validate_batch_keys
                    || !self.flushes.is_empty()
                    || delay_passed
            }
        };
        let eligible = self.eligible_lsn_updates();
        let lists: Vec<u64> = self.validation_candidates().map(|(s, _)| *s).collect();
        if !due || (lists.is_empty() && eligible == 0) {
            return;
        }
        let lsn_updates: Vec<LsnUpdate> = self.lsn_waiting.drain(..eligible).collect();
        let mut pairs = BTreeSet::new();
        for seq in &lists {
            pairs.extend(self.lists[seq].content.tenants.iter().map(|(t, d)| (*t, d.generation)));
        }
        pairs.extend(lsn_updates.iter().map(|u| (u.tenant, u.generation)));
        let tenants: Vec<(TenantId, Generation)> = pairs.into_iter().collect();
        let op = self.next_op(OpKind::Validate);
        for seq in lists {
            self.lists.get_mut(&seq).expect("candidate").stage = Stage::Validating { op };
        }
        self.validation = Some((op, tenants.clone(), lsn_updates));
        self.effects.push_back(DeletionEffect::Validate { op, tenants });
    }

    /// Applies a validation answer: stale tenants leave their lists (reported and
    /// counted), the rest goes to the executor; LSN updates are reported.
    pub(super) fn validated(
        &mut self,
        now: Instant,
        op: OpId,
        valid: &[(TenantId, Generation)],
        lsn_updates: Vec<LsnUpdate>,
    ) {
        let _ = now;
        self.stats.validations_total += 1;
        let in_round: Vec<u64> = self
            .lists
            .iter()
            .filter(|(_, l)| l.stage == Stage::Validating { op })
            .map(|(s, _)| *s)
            .collect();
        for seq in in_round {
            let list = self.lists.get_mut(&seq).expect("listed above");
            let stale: Vec<TenantId> = list
                .content
                .tenants
                .iter()
                .filter(|(t, d)| !valid.contains(&(**t, d.generation)))
                .map(|(t, _)| *t)
                .collect();
            let mut dropped = Vec::new();
            for tenant in &stale {
                let deletions = list.content.tenants.remove(tenant).expect("listed above");
                for (timeline, names) in deletions.timelines {
                    dropped.extend(names.into_iter().map(|n| (*tenant, timeline, n)));
                }
            }
            if !stale.is_empty() {
                list.version += 1;
                self.stats.lists_dropped_stale_total += 1;
            }
            list.content.validated = true;
            let recovered = list.recovered;
            self.stats.keys_dropped_stale_total += dropped.len() as u64;
            if !recovered {
                for (tenant, timeline, name) in dropped {
                    if let Ok(key) = rebuild_key(tenant, timeline, &name) {
                        self.report(tenant, timeline, key, DeletionOutcome::DroppedStale);
                    }
                }
            }
            self.start_executing(seq);
        }
        for u in lsn_updates {
            let valid = valid.contains(&(u.tenant, u.generation));
            if valid {
                self.stats.lsn_updates_valid_total += 1;
            } else {
                self.stats.lsn_updates_dropped_total += 1;
            }
            let LsnUpdate { tenant, timeline, generation, lsn, .. } = u;
            let v = LsnValidation { tenant, timeline, generation, lsn, valid };
            self.effects.push_back(DeletionEffect::LsnValidated(v));
        }
    }

    /// A failed validation gives back what it covered: its lists wait again, its
    /// LSN updates go back in front of those that arrived meanwhile (unless a newer
    /// update of the same timeline and generation superseded one).
    pub(super) fn validation_failed(&mut self, op: OpId, lsn_updates: Vec<LsnUpdate>) {
        for list in self.lists.values_mut() {
            if list.stage == (Stage::Validating { op }) {
                list.stage = Stage::Sealed;
            }
        }
        let superseded = |u: &LsnUpdate, waiting: &[LsnUpdate]| {
            waiting.iter().any(|w| {
                (w.tenant, w.timeline, w.generation) == (u.tenant, u.timeline, u.generation)
            })
        };
        let mut back: Vec<LsnUpdate> =
            lsn_updates.into_iter().filter(|u| !superseded(u, &self.lsn_waiting)).collect();
        back.append(&mut self.lsn_waiting);
        self.lsn_waiting = back;
    }

    /// Hands a validated list's keys to the executor (or retires an empty list).
    pub(super) fn start_executing(&mut self, seq: u64) {
        let list = self.lists.get_mut(&seq).expect("a known list");
        debug_assert!(list.content.validated, "S-DEL-GEN: executing an unvalidated list");
        let report = !list.recovered;
        let mut keys = Vec::new();
        let mut malformed = 0;
        for (tenant, deletions) in &list.content.tenants {
            for (timeline, names) in &deletions.timelines {
                for name in names {
                    match rebuild_key(*tenant, *timeline, name) {
                        Ok(key) => keys.push(ExecKey {
                            sequence: seq,
                            tenant: *tenant,
                            timeline: *timeline,
                            key,
                            report,
                        }),
                        Err(_) => malformed += 1,
                    }
                }
            }
        }
        self.stats.keys_failed_total += malformed;
        if keys.is_empty() {
            self.retire(seq);
            return;
        }
        list.stage = Stage::Executing { remaining: keys.len() };
        self.exec_queue.extend(keys);
    }

    fn start_batches(&mut self) {
        // A batch is idle only between its backoff's timer and this retry.
        let retry: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| b.state == IoState::Idle)
            .map(|(id, _)| *id)
            .collect();
        for id in retry {
            self.stats.delete_retries_total += 1;
            self.issue_batch(id);
        }
        loop {
            let in_flight =
                self.batches.values().filter(|b| matches!(b.state, IoState::InFlight(_))).count();
            if in_flight >= self.config.max_deletes_in_flight || self.exec_queue.is_empty() {
                return;
            }
            let take = self.exec_queue.len().min(MAX_KEYS_PER_DELETE);
            let keys: Vec<ExecKey> = self.exec_queue.drain(..take).collect();
            let id = self.next_batch;
            self.next_batch += 1;
            let batch = Batch { keys, state: IoState::Idle, failures: 0, cancel_if_failed: vec![] };
            self.batches.insert(id, batch);
            self.issue_batch(id);
        }
    }

    fn issue_batch(&mut self, id: u64) {
        let op = self.next_op(OpKind::Delete { batch: id });
        let batch = self.batches.get_mut(&id).expect("a known batch");
        batch.state = IoState::InFlight(op);
        let keys = batch.keys.iter().map(|k| k.key.clone()).collect();
        self.effects.push_back(DeletionEffect::DeleteObjects { op, keys });
    }

    fn start_removals(&mut self) {
        let done: Vec<u64> = self
            .lists
            .iter()
            .filter(|(_, l)| l.stage == Stage::Executing { remaining: 0 })
            .map(|(s, _)| *s)
            .collect();
        for seq in done {
            self.retire(seq);
        }
        let due: Vec<u64> = self
            .lists
            .iter()
            .filter(|(_, l)| match l.stage {
                // Never race the list's own write: removal waits for it.
                Stage::Removing { remove, .. } => {
                    ready(remove) && !matches!(l.write, IoState::InFlight(_))
                }
                _ => false,
            })
            .map(|(s, _)| *s)
            .collect();
        for seq in due {
            let op = self.next_op(OpKind::RemoveList { sequence: seq });
            let list = self.lists.get_mut(&seq).expect("listed above");
            list.write = IoState::Idle; // a pending rewrite is moot now
            if let Stage::Removing { remove, .. } = &mut list.stage {
                *remove = IoState::InFlight(op);
            }
            self.effects.push_back(DeletionEffect::RemoveList { op, sequence: seq });
        }
    }

    /// The highest sequence the header may claim: every list at or below it is
    /// validated with that content on disk.
    pub(super) fn header_target(&self) -> u64 {
        match self.lists.iter().find(|(_, l)| !l.clean_on_disk()) {
            Some((seq, _)) => seq - 1,
            None => self.next_seq.saturating_sub(1),
        }
    }

    fn start_header_write(&mut self) {
        let target = self.header_target();
        if target <= self.header_durable || !ready(self.header_write) {
            return;
        }
        let op = self.next_op(OpKind::WriteHeader { validated_sequence: target });
        self.header_write = IoState::InFlight(op);
        let bytes = DeletionHeader::new(target).to_json_bytes();
        self.effects.push_back(DeletionEffect::WriteHeader { op, bytes });
    }

    fn complete_flushes(&mut self) {
        let mut done = Vec::new();
        for (i, flush) in self.flushes.iter().enumerate() {
            let lists_pending = self
                .lists
                .range(..=flush.upto_seq)
                .any(|(_, l)| !(matches!(l.stage, Stage::Open { .. }) && l.content.is_empty()));
            let lsn_pending = self
                .lsn_waiting
                .iter()
                .chain(self.validation.iter().flat_map(|v| v.2.iter()))
                .any(|u| u.index <= flush.upto_lsn_index);
            if !lists_pending && !lsn_pending {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            if let Some(id) = self.flushes.remove(i).id {
                self.effects.push_back(DeletionEffect::FlushDone { id });
            }
        }
    }

    /// Every timer, with its reason.
    pub fn timers(&self) -> impl Iterator<Item = (Instant, TimerReason)> + '_ {
        let seal = self.lists.last_key_value().and_then(|(_, l)| match l.stage {
            Stage::Open { opened_at } if !l.content.is_empty() => Some((
                opened_at.plus_millis(self.config.list_seal_delay_ms),
                TimerReason::SealOpenList,
            )),
            _ => None,
        });
        let reason = match self.validation_retry {
            Some(_) => TimerReason::RetryValidation,
            None => TimerReason::Validate,
        };
        let validate = self.validation_deadline().map(|at| (at, reason));
        let lists = self.lists.iter().flat_map(|(seq, l)| {
            let write = match l.write {
                IoState::Backoff { until } => Some((until, TimerReason::RetryListWrite(*seq))),
                _ => None,
            };
            let remove = match l.stage {
                Stage::Removing { remove: IoState::Backoff { until }, .. } => {
                    Some((until, TimerReason::RetryListRemove(*seq)))
                }
                _ => None,
            };
            write.into_iter().chain(remove)
        });
        let header = match self.header_write {
            IoState::Backoff { until } => Some((until, TimerReason::RetryHeaderWrite)),
            _ => None,
        };
        let batches = self.batches.iter().filter_map(|(id, b)| match b.state {
            IoState::Backoff { until } => Some((until, TimerReason::RetryDelete(*id))),
            _ => None,
        });
        seal.into_iter().chain(validate).chain(lists).chain(header).chain(batches)
    }
}

/// The full key of `name` in `tenant`'s `timeline`.
pub(crate) fn rebuild_key(
    tenant: TenantId,
    timeline: TimelineId,
    name: &str,
) -> Result<RemoteKey, crate::error::ParseError> {
    RemoteKey::from_listing(&format!("{}{name}", timeline_prefix(tenant, timeline)))
}
