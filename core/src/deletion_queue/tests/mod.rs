//! Deletion-queue tests: a tiny synchronous harness that plays the disk, remote
//! storage and the control plane; one test per rule; a migration model under
//! proptest (`model.rs`); a throughput measurement (`bench.rs`, ignored).

mod bench;
mod checks;
mod model;
mod rules;

use super::*;
use crate::io_error::IoErrorKind;
use std::collections::BTreeSet;

pub(super) fn g(n: u32) -> Generation {
    Generation::new(n).unwrap()
}

pub(super) const T1: TenantId = TenantId([1; 16]);
pub(super) const T2: TenantId = TenantId([2; 16]);
pub(super) const TL: TimelineId = TimelineId([7; 16]);

pub(super) fn key(tenant: TenantId, n: u32) -> RemoteKey {
    rebuild_key(tenant, TL, &format!("layer{n:06}-00000001"))
}

pub(super) fn rebuild_key(tenant: TenantId, timeline: TimelineId, name: &str) -> RemoteKey {
    pump::rebuild_key(tenant, timeline, name).unwrap()
}

pub(super) fn small_config() -> DeletionQueueConfig {
    DeletionQueueConfig {
        list_target_keys: 4,
        list_seal_delay_ms: 100,
        validate_batch_keys: 8,
        validate_delay_ms: 200,
        max_deletes_in_flight: 2,
        max_list_writes_in_flight: 2,
        backoff_base_ms: 10,
        backoff_max_ms: 80,
    }
}

/// Plays the world around one queue. With `auto`, every effect is carried out at
/// once (I/O succeeds, the control plane answers from `current`); otherwise effects
/// collect in `held` for the test to complete by hand.
pub(super) struct Harness {
    pub q: DeletionQueue,
    pub now: Instant,
    pub auto: bool,
    /// The control plane: each tenant's current generation.
    pub current: BTreeMap<TenantId, Generation>,
    pub disk: BTreeMap<u64, Vec<u8>>,
    pub header: Option<Vec<u8>>,
    pub deleted: Vec<RemoteKey>,
    pub batches: Vec<usize>,
    pub reports: Vec<DeletionReport>,
    pub lsns: Vec<LsnValidation>,
    pub flushed: Vec<FlushId>,
    pub validations: Vec<Vec<(TenantId, Generation)>>,
    /// The next this many validations fail (the control plane unreachable).
    pub failing_validations: u32,
    pub held: VecDeque<DeletionEffect>,
}

impl Harness {
    pub fn new(config: DeletionQueueConfig) -> Self {
        Harness {
            q: DeletionQueue::new(config),
            now: Instant::ZERO,
            auto: true,
            current: BTreeMap::from([(T1, g(1)), (T2, g(1))]),
            disk: BTreeMap::new(),
            header: None,
            deleted: Vec::new(),
            batches: Vec::new(),
            reports: Vec::new(),
            lsns: Vec::new(),
            flushed: Vec::new(),
            validations: Vec::new(),
            failing_validations: 0,
            held: VecDeque::new(),
        }
    }

    /// Drops the queue and rebuilds it from the disk, as after a crash.
    pub fn restart(&mut self, attached: &[(TenantId, Generation, bool)]) {
        let header = self.header.as_ref().map(|b| DeletionHeader::from_json_bytes(b).unwrap());
        let lists = self.disk.values().map(|b| DeletionList::from_json_bytes(b).unwrap()).collect();
        let attached = attached
            .iter()
            .map(|(t, gn, own)| {
                let a = ReAttachedTenant::new(*t, *gn, *own);
                (*t, a)
            })
            .collect();
        for (t, gn, _) in attached_pairs(&attached) {
            self.current.insert(t, gn);
        }
        self.held.clear();
        self.q = DeletionQueue::recover(self.q.config.clone(), header, lists, &attached, self.now);
        self.q.check_invariants();
        self.settle();
    }

    pub fn push(&mut self, tenant: TenantId, generation: Generation, keys: Vec<RemoteKey>) {
        self.q.handle_push(self.now, tenant, TL, generation, keys);
        self.settle();
    }

    pub fn flush(&mut self) -> FlushId {
        let id = self.q.handle_flush(self.now);
        self.settle();
        id
    }

    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
        self.fire_due_timers();
    }

    /// Fires every timer due at `now`, one named timer at a time, settling after each.
    pub fn fire_due_timers(&mut self) {
        for _ in 0..10_000 {
            match self.q.next_timer() {
                Some((at, timer)) if at <= self.now => {
                    self.q.handle_timeout(self.now, timer);
                    self.settle();
                }
                _ => return self.settle(),
            }
        }
        panic!("a timer that fired stayed due");
    }

    /// Runs time forward timer by timer until the queue is idle (bounded).
    pub fn run_until_idle(&mut self) {
        for _ in 0..1000 {
            self.settle();
            if self.q.is_idle() && self.held.is_empty() {
                return;
            }
            match self.q.poll_timeout() {
                Some(at) => {
                    self.now = self.now.max(at);
                    self.fire_due_timers();
                }
                None if self.held.is_empty() => panic!("stuck: work but no timer"),
                None => return,
            }
        }
        panic!("the queue did not go idle");
    }

    pub fn settle(&mut self) {
        self.q.check_invariants();
        while let Some(effect) = self.q.poll_effect() {
            if self.auto
                || matches!(
                    effect,
                    DeletionEffect::Report(_)
                        | DeletionEffect::LsnValidated(_)
                        | DeletionEffect::FlushDone { .. }
                )
            {
                self.carry_out(effect, Ok(()));
            } else {
                self.held.push_back(effect);
            }
            self.q.check_invariants();
        }
    }

    /// Completes one effect with `result` (I/O) or the control plane's answer.
    pub fn carry_out(&mut self, effect: DeletionEffect, result: Result<(), IoError>) {
        let now = self.now;
        match effect {
            DeletionEffect::WriteList { op, sequence, bytes } => {
                if result.is_ok() {
                    self.disk.insert(sequence, bytes);
                }
                self.q.handle_completion(now, op, result).unwrap();
            }
            DeletionEffect::WriteHeader { op, bytes } => {
                if result.is_ok() {
                    self.header = Some(bytes);
                }
                self.q.handle_completion(now, op, result).unwrap();
            }
            DeletionEffect::RemoveList { op, sequence } => {
                if result.is_ok() {
                    self.disk.remove(&sequence);
                }
                self.q.handle_completion(now, op, result).unwrap();
            }
            DeletionEffect::DeleteObjects { op, keys } => {
                assert!(keys.len() <= MAX_KEYS_PER_DELETE);
                if result.is_ok() {
                    self.batches.push(keys.len());
                    self.deleted.extend(keys);
                }
                self.q.handle_completion(now, op, result).unwrap();
            }
            DeletionEffect::Validate { op, .. } if self.failing_validations > 0 => {
                self.failing_validations -= 1;
                let failure = CallFailure::Unreachable("connection refused".into());
                self.q.handle_validation_failed(now, op, &failure).unwrap();
            }
            DeletionEffect::Validate { op, tenants } => {
                self.validations.push(tenants.clone());
                let results =
                    tenants.iter().map(|(t, gn)| (*t, self.current.get(t) == Some(gn))).collect();
                self.q.handle_validation(now, op, results).unwrap();
            }
            DeletionEffect::Report(r) => self.reports.push(r),
            DeletionEffect::LsnValidated(v) => self.lsns.push(v),
            DeletionEffect::FlushDone { id } => self.flushed.push(id),
        }
        self.q.check_invariants();
    }

    /// Takes the first held effect matching `pred`.
    pub fn take(&mut self, pred: impl Fn(&DeletionEffect) -> bool) -> DeletionEffect {
        let i = self.held.iter().position(pred).expect("a matching held effect");
        self.held.remove(i).unwrap()
    }

    pub fn complete(
        &mut self,
        pred: impl Fn(&DeletionEffect) -> bool,
        result: Result<(), IoError>,
    ) {
        let effect = self.take(pred);
        self.carry_out(effect, result);
        self.settle();
    }

    pub fn outcomes(&self) -> BTreeMap<RemoteKey, DeletionOutcome> {
        self.reports.iter().map(|r| (r.key.clone(), r.outcome.clone())).collect()
    }

    pub fn deleted_set(&self) -> BTreeSet<RemoteKey> {
        self.deleted.iter().cloned().collect()
    }
}

fn attached_pairs(
    attached: &BTreeMap<TenantId, ReAttachedTenant>,
) -> Vec<(TenantId, Generation, bool)> {
    attached.values().map(|a| (a.tenant, a.generation, a.previous_was_own)).collect()
}

pub(super) fn is_write(e: &DeletionEffect) -> bool {
    matches!(e, DeletionEffect::WriteList { .. })
}
pub(super) fn is_validate(e: &DeletionEffect) -> bool {
    matches!(e, DeletionEffect::Validate { .. })
}
pub(super) fn is_delete(e: &DeletionEffect) -> bool {
    matches!(e, DeletionEffect::DeleteObjects { .. })
}
pub(super) fn is_remove(e: &DeletionEffect) -> bool {
    matches!(e, DeletionEffect::RemoveList { .. })
}
pub(super) fn is_header(e: &DeletionEffect) -> bool {
    matches!(e, DeletionEffect::WriteHeader { .. })
}
