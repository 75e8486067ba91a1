//! The background-job scheduler: one per node, shared by every tenant's timelines.
//!
//! **Purpose.** Compaction, GC and eviction reshape a timeline's layers and cost
//! disk and network. A timeline that wants such a job asks here first; the
//! scheduler grants at most [`SchedulerConfig::max_concurrent_jobs`] jobs at once
//! across the whole node (S4: bounded background work, labelled by [`JobKind`]),
//! and chooses among waiting jobs fairly *by tenant*: a tenant with a hundred
//! timelines gets no more turns than a tenant with one.
//!
//! **States.** A job is identified by its [`JobOwner`] `(tenant, timeline, kind)`
//! and is, per owner: absent → `Queued` → `Running` → absent. An owner may also be
//! `Queued` *and* `Running` at once (it asked again while its previous run was
//! still going); the queued request becomes eligible once that run finishes, so
//! one owner never runs twice at a time.
//!
//! **Inputs.** [`Scheduler::handle_request`] (idempotent: one queued request per
//! owner), [`Scheduler::handle_finished`] (the job's work ended: success,
//! failure, or abandoned), [`Scheduler::handle_cancel_owner`] (a tenant or a
//! timeline is going away: its queued requests are dropped; its running jobs keep
//! their slots until `handle_finished` reports them). The same inputs as data:
//! [`SchedulerInput`], fed by [`Scheduler::handle`], which answers an illegal one
//! (a finish for an owner not running) with [`SchedulerError::NotRunning`]. The
//! scheduler has no timers, so no timer input.
//!
//! **Effects.** [`SchedulerEffect::Grant`]: the owner may start its job now. The
//! node routes it to the timeline within the same input; a grant for a timeline
//! that no longer exists must be answered with `handle_finished` at once.
//!
//! **Fairness rule (round robin, two levels).** The scheduler remembers the
//! tenant it granted last. The next grant goes to the first tenant after it (in
//! `TenantId` order, wrapping around) that has an *eligible* job (queued, and its
//! owner not running); within that tenant, to the first eligible
//! `(timeline, kind)` after the one that tenant was granted last (wrapping). So
//! between two grants to one tenant, every other tenant that had an eligible job
//! the whole time was granted once: over any run of grants during which tenants A
//! and B both have eligible work, their grant counts differ by at most 1. A job
//! that stays eligible is granted within `tenants × owners-of-its-tenant` grants
//! (no starvation). Everything is ordered by `BTreeMap`, so the same inputs give
//! the same grants (determinism).
//!
//! **Invariants** (`check_invariants`):
//! - running jobs ≤ `max_concurrent_jobs`;
//! - never idle with work: if fewer than `max_concurrent_jobs` jobs run, no queued
//!   job is eligible (every queued owner is running already);
//! - no empty per-tenant queue is kept; the per-tenant cursor exists only for a
//!   tenant with queued work.
//!
//! **Crash.** Nothing here is durable. After a restart the timelines ask again.

/// The reference model and the step language of the property test and the
/// `scheduler` fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
#[cfg(test)]
mod tests;

use crate::id::{TenantId, TimelineId};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

/// The kinds of background job. Closed: metrics label by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum JobKind {
    Compaction,
    Gc,
    Eviction,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Compaction, JobKind::Gc, JobKind::Eviction];

    fn index(self) -> usize {
        match self {
            JobKind::Compaction => 0,
            JobKind::Gc => 1,
            JobKind::Eviction => 2,
        }
    }

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Compaction => "compaction",
            JobKind::Gc => "gc",
            JobKind::Eviction => "eviction",
        }
    }
}

/// Who a job is for, and which job: the identity of a request and a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub struct JobOwner {
    pub tenant: TenantId,
    pub timeline: TimelineId,
    pub kind: JobKind,
}

/// Default of [`SchedulerConfig::max_concurrent_jobs`].
pub const DEFAULT_MAX_CONCURRENT_JOBS: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Background jobs running at once on the node, all kinds together (at least 1).
    pub max_concurrent_jobs: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { max_concurrent_jobs: DEFAULT_MAX_CONCURRENT_JOBS }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedulerEffect {
    /// The owner may start its job now; it reports `handle_finished` when it ends.
    Grant(JobOwner),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("bug in the caller: {0:?} reported finished but is not running")]
    NotRunning(JobOwner),
}

/// One input of the scheduler; each variant names the `handle_*` method it
/// stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum SchedulerInput {
    /// `handle_request`.
    Request(JobOwner),
    /// `handle_finished`.
    Finished(JobOwner),
    /// `handle_cancel_owner`.
    CancelOwner { tenant: TenantId, timeline: Option<TimelineId> },
}

/// One tenant's queued requests and its round-robin position.
#[derive(Clone, Debug, Default)]
struct TenantQueue {
    queued: BTreeSet<(TimelineId, JobKind)>,
    /// The `(timeline, kind)` granted last in this tenant.
    cursor: Option<(TimelineId, JobKind)>,
}

#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    /// Only tenants with queued requests.
    queues: BTreeMap<TenantId, TenantQueue>,
    running: BTreeSet<JobOwner>,
    /// Queued requests per kind (by `JobKind::index`), kept so getters are O(1).
    queued_counts: [usize; 3],
    /// The tenant granted last.
    cursor: Option<TenantId>,
    granted_total: u64,
    effects: VecDeque<SchedulerEffect>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            queues: BTreeMap::new(),
            running: BTreeSet::new(),
            queued_counts: [0; 3],
            cursor: None,
            granted_total: 0,
            effects: VecDeque::new(),
        }
    }

    /// `owner` wants to run its job. Repeating a queued request is a no-op.
    pub fn handle_request(&mut self, now: Instant, owner: JobOwner) {
        let q = self.queues.entry(owner.tenant).or_default();
        if q.queued.insert((owner.timeline, owner.kind)) {
            self.queued_counts[owner.kind.index()] += 1;
        }
        self.pump(now);
    }

    /// `owner`'s job ended (done, failed or abandoned): its slot is free.
    pub fn handle_finished(&mut self, now: Instant, owner: JobOwner) -> Result<(), SchedulerError> {
        if !self.running.remove(&owner) {
            return Err(SchedulerError::NotRunning(owner));
        }
        self.pump(now);
        Ok(())
    }

    /// The tenant (every timeline when `timeline` is `None`) or one timeline goes
    /// away: its queued requests are dropped. Running jobs keep their slots until
    /// reported finished (see [`Scheduler::running_of`]).
    pub fn handle_cancel_owner(
        &mut self,
        now: Instant,
        tenant: TenantId,
        timeline: Option<TimelineId>,
    ) {
        if let Some(q) = self.queues.get_mut(&tenant) {
            let counts = &mut self.queued_counts;
            q.queued.retain(|(t, k)| {
                let keep = timeline.is_some_and(|tl| *t != tl);
                if !keep {
                    counts[k.index()] -= 1;
                }
                keep
            });
            if q.queued.is_empty() {
                self.queues.remove(&tenant);
            }
        }
        self.pump(now);
    }

    /// Feeds one input; an illegal one is an `Err`, exactly as the `handle_*`
    /// method it stands for answers it.
    pub fn handle(&mut self, now: Instant, input: SchedulerInput) -> Result<(), SchedulerError> {
        match input {
            SchedulerInput::Request(owner) => self.handle_request(now, owner),
            SchedulerInput::Finished(owner) => self.handle_finished(now, owner)?,
            SchedulerInput::CancelOwner { tenant, timeline } => {
                self.handle_cancel_owner(now, tenant, timeline)
            }
        }
        Ok(())
    }

    pub fn poll_effect(&mut self) -> Option<SchedulerEffect> {
        self.effects.pop_front()
    }

    /// The scheduler has no timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Requests waiting for a grant, of `kind`.
    pub fn queued(&self, kind: JobKind) -> usize {
        self.queued_counts[kind.index()]
    }

    /// Jobs of `kind` running now.
    pub fn running(&self, kind: JobKind) -> usize {
        self.running.iter().filter(|o| o.kind == kind).count()
    }

    pub fn running_total(&self) -> usize {
        self.running.len()
    }

    /// Grants made since start.
    pub fn granted_total(&self) -> u64 {
        self.granted_total
    }

    pub fn is_running(&self, owner: &JobOwner) -> bool {
        self.running.contains(owner)
    }

    pub fn is_queued(&self, owner: &JobOwner) -> bool {
        self.queues
            .get(&owner.tenant)
            .is_some_and(|q| q.queued.contains(&(owner.timeline, owner.kind)))
    }

    /// Every running job.
    pub fn running_jobs(&self) -> impl Iterator<Item = &JobOwner> {
        self.running.iter()
    }

    /// Running jobs of a tenant (or of one of its timelines).
    pub fn running_of(&self, tenant: TenantId, timeline: Option<TimelineId>) -> Vec<JobOwner> {
        self.running
            .iter()
            .filter(|o| o.tenant == tenant && timeline.is_none_or(|tl| o.timeline == tl))
            .copied()
            .collect()
    }

    /// Tenants with a queued job that could be granted now (its owner not running).
    pub fn eligible_tenants(&self) -> BTreeSet<TenantId> {
        self.queues
            .iter()
            .filter(|(t, q)| {
                q.queued.iter().any(|(tl, k)| !self.running.contains(&owner(**t, *tl, *k)))
            })
            .map(|(t, _)| *t)
            .collect()
    }

    /// Panics if a rule is broken. Run after every input in tests.
    pub fn check_invariants(&self) {
        let bound = self.config.max_concurrent_jobs.max(1);
        assert!(self.running.len() <= bound, "{} jobs run, bound {bound}", self.running.len());
        if self.running.len() < bound {
            assert!(
                self.eligible_tenants().is_empty(),
                "idle with work: {} of {bound} slots used and eligible jobs queued",
                self.running.len()
            );
        }
        for (t, q) in &self.queues {
            assert!(!q.queued.is_empty(), "empty queue kept for {t}");
        }
        for kind in JobKind::ALL {
            let n: usize = self
                .queues
                .values()
                .map(|q| q.queued.iter().filter(|(_, k)| *k == kind).count())
                .sum();
            assert_eq!(self.queued_counts[kind.index()], n, "{kind:?} queued count");
        }
    }

    /// The one place that grants.
    fn pump(&mut self, _now: Instant) {
        let bound = self.config.max_concurrent_jobs.max(1);
        while self.running.len() < bound {
            let Some(o) = self.pick() else { return };
            let q = self.queues.get_mut(&o.tenant).expect("picked from it");
            q.queued.remove(&(o.timeline, o.kind));
            self.queued_counts[o.kind.index()] -= 1;
            q.cursor = Some((o.timeline, o.kind));
            if q.queued.is_empty() {
                self.queues.remove(&o.tenant);
            }
            self.cursor = Some(o.tenant);
            self.running.insert(o);
            self.granted_total += 1;
            self.effects.push_back(SchedulerEffect::Grant(o));
        }
    }

    /// The next job by the fairness rule (module doc).
    fn pick(&self) -> Option<JobOwner> {
        let (after, upto) = match self.cursor {
            Some(c) => {
                (self.queues.range((Bound::Excluded(c), Bound::Unbounded)), self.queues.range(..=c))
            }
            None => (self.queues.range(..), self.queues.range(..TenantId::from_bytes([0; 16]))),
        };
        after.chain(upto).find_map(|(t, q)| self.pick_in(*t, q))
    }

    fn pick_in(&self, tenant: TenantId, q: &TenantQueue) -> Option<JobOwner> {
        let eligible =
            |(tl, k): &&(TimelineId, JobKind)| !self.running.contains(&owner(tenant, *tl, *k));
        let found = match q.cursor {
            Some(c) => q
                .queued
                .range((Bound::Excluded(c), Bound::Unbounded))
                .chain(q.queued.range(..=c))
                .find(eligible),
            None => q.queued.iter().find(eligible),
        };
        found.map(|(tl, k)| owner(tenant, *tl, *k))
    }
}

fn owner(tenant: TenantId, timeline: TimelineId, kind: JobKind) -> JobOwner {
    JobOwner { tenant, timeline, kind }
}
