//! One attached tenant on the node: its timelines (a [`TimelineSlot`] each: the
//! timeline, its upload queue and what waits on them), its lifecycle as one enum,
//! and the counts of its own I/O in flight.
//!
//! # States ([`Lifecycle`])
//! ```text
//!   Loading ─Loaded─┐                        (start-up)
//!                   ├─► Activating ─Activated─► Active ◄──────────────┐
//!   Attaching ─Loaded┘                       (location_config)        │
//!   Active ─PutDeletionMark─► Deleting(Mark{attempts}) ─mark done─────┤
//!   Active ─DeleteTimelines─► Deleting(Timelines) ─none left─► Active ┘ (then StopTenant)
//!   any but Stopping ─StopTenant─► Stopping(Flushing{deadline})
//!        ─all visible or deadline─► Stopping(Draining{until})
//!        ─in_flight empty, or `until` passed and no local write in flight─► (removed)
//!   Stopping(Draining{until}) ─`until` passed, a local write in flight─► Stopping(LocalWrites)
//!        ─no local write in flight─► (removed)
//!   any with machines ─a handler panicked─► Broken{reason}   (machines dropped)
//! ```
//! [`Lifecycle::state`] is the [`TenantState`] the rest of the node and the APIs
//! see (`Deleting` is `Active` there; the table of legal events is
//! [`TenantState::on`]).
//!
//! **The one owner of the lifecycle.** No copy of it is kept anywhere: the tenant
//! manager's slot holds the tenant's placement (mode, generation), the operation on
//! it and why a tenant placed *without* machines is broken (a failed load, a
//! generation conflict), never this state. The node reports a tenant's state from
//! here first, then from the slot ([`Node::tenant_state`]), and hands the manager
//! this machine's answer where a decision needs it ([`Node::machines_broken`]:
//! a broken tenant restarts on a new generation, and is not deleted).
//!
//! # Inputs
//! The tenant manager's steps for this tenant (`location.rs`: `StopTenant`,
//! `PutDeletionMark`, `DeleteTimelines`, …), completions of its routes (each one
//! counted out of `in_flight`), its machines' effects, its stop deadline (a timer
//! in the node's index under [`Machine::Tenant`]), and a panic in one of its
//! machines (`isolation.rs`).
//!
//! # Progress
//! Whenever one of those inputs touched the tenant, the node marks
//! [`Machine::Tenant`] dirty and the pump calls [`Node::advance_tenant`] once the
//! other machines are quiet (it sorts last). Progress is decided from the tenant's
//! own state and counters, never by scanning the node's routes:
//! - a stop flushes until everything acknowledged is visible or its deadline,
//!   then stops its machines and ends when none of its ops is in flight, or, after
//!   `stop_drain_timeout_ms`, when none of its *local writes* is (remote calls
//!   and reads still out are abandoned: see Crash);
//! - a tenant deletion deletes every timeline and ends its step when none is left;
//! - an interrupted timeline deletion resumes once the tenant is AttachedSingle
//!   and that timeline's `upload_in_flight` is zero;
//! - a deletion mark found while loading starts the deletion once the tenant is
//!   settled in AttachedSingle;
//! - a load after start-up (`LoadTenant`) ends when the completion of its last
//!   start-up I/O marks it (`on_startup_io`): active, or its step fails;
//! - while the node leaves emergency mode, a tenant with none of its ops in flight
//!   has drained (`emergency.rs`); the last one lets start-up go on.
//!
//! The pump runs no sweep: these, and a running background job whose timeline
//! leaves (`jobs.rs`: freed as it leaves), are all the node's tenant progress.
//!
//! # Identity of ops: incarnations
//! Op ids are unique per node run (`Node::emit_io` takes them from one counter),
//! and each tenant incarnation (one [`Tenant`] value, from its load to its stop)
//! holds the ids of its own ops in flight (`in_flight`). A completion is handed to
//! the tenant's machines only if its op is in the current incarnation's set;
//! otherwise it belongs to an incarnation that is gone (a stop gave up waiting for
//! it) and is dropped by identity: a page-cache fill is released, nothing else
//! happens, so it can never reach a new machine that reuses the same machine op
//! ids.
//!
//! # Invariants (`Node::check_invariants`)
//! Every op in `in_flight` has its route, naming this tenant; `local_writes` ⊆
//! `in_flight`; every slot's `upload_in_flight` equals its routes of the current
//! incarnation; a `Broken` tenant holds no timelines; the timer index holds each
//! tenant's stop deadline.
//!
//! # Crash
//! Nothing here is durable. A crash drops the tenant with its machines; start-up
//! reloads it from its `config-v1`, the control plane and the remote index. A
//! deletion mark is durable in remote storage, so a tenant deletion interrupted
//! after it resumes at the next load (`deletion_marked`).
//!
//! **A stop that abandons ops in flight.** After
//! `NodeConfig::stop_drain_timeout_ms` (default [`STOP_DRAIN_TIMEOUT_MS`]) a stop
//! drops the tenant although remote calls (GET, PUT, LIST), local reads and redo
//! may still be out; the next incarnation may already run when they complete.
//! That is what `kill -9` does to one tenant, and it is safe for the same reasons
//! (`isolation.rs`): a late read changes nothing and its completion is dropped by
//! identity; a late layer PUT is unreferenced until an index names it, and no
//! index of the old incarnation is written after the drop; a late index PUT lands
//! under the old generation's own sequence-numbered key, so it never rolls back an
//! index of the new incarnation, whose generation is newer (a stop is followed by
//! a new generation, or by no attachment here at all).
//!
//! **Local writes are never abandoned.** A local disk write or removal of the old
//! incarnation (a layer or metadata write, a downloaded layer's write, an evicted
//! layer's removal: `local_writes`) could land in the very file the new
//! incarnation reads (it loads the same `tenants/{t}/timelines/…` paths and
//! reconciles them against the remote index once, at load). So the stop waits for
//! every one of them without a timeout (`Stopping(LocalWrites)`), and only then
//! drops the tenant; the new incarnation is loaded after that. A write that never
//! completes stalls that tenant's stop (and the operation that asked for it),
//! never another tenant and never correctness. Tests:
//! `a_stale_completion_after_a_tenant_restart_is_dropped` and
//! `a_stop_waits_for_a_local_write_past_the_drain_timeout`
//! (`core/src/node/tests/incarnation.rs`); in the simulator, the hold seed
//! (`sim-tests/tests/hold.rs`: a held layer write and a held PUT at a stop).

use super::api::RequestId;
use super::io::Io;
use super::{BrokenReason, Machine, Node, Route, TimelineSlot};
use crate::generation::Generation;
use crate::id::{OpId, TenantId, TimelineId};
use crate::key::Key;
use crate::location_conf::LocationMode;
use crate::lsn::Lsn;
use crate::tenant::{
    IllegalTransition, Slot, Step, StepError, StepOutput, TenantEvent, TenantState,
};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// Where a tenant is in its life on this node: the node's one record of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Start-up: loading from the local config and the remote index.
    Loading,
    /// Attached by location_config: reading its remote storage.
    Attaching,
    /// Indexes read; its timelines' machines being started.
    Activating,
    Active,
    /// The tenant manager's Delete operation runs its tenant-side steps.
    Deleting(DeletePhase),
    Stopping(StopPhase),
    /// Its machines were dropped after a panic (`isolation.rs`); nothing runs.
    Broken {
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeletePhase {
    /// Putting the deletion mark; `attempts` transient failures retried so far
    /// (at most [`MARK_ATTEMPTS`](super::location::MARK_ATTEMPTS)).
    Mark { attempts: u32 },
    /// Deleting every timeline (`Step::DeleteTimelines`).
    Timelines,
}

/// The default of [`NodeConfig::stop_drain_timeout_ms`](super::NodeConfig): how
/// long a stop waits, once its machines are stopped, for the tenant's remote calls
/// and reads still in flight before it abandons them (their completions are then
/// dropped by identity). Local writes are waited for without a limit.
pub const STOP_DRAIN_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopPhase {
    /// Every timeline flushes, until all it acknowledged is visible or `deadline`.
    Flushing { deadline: Instant },
    /// Its machines are stopped; waiting until `until` for its ops in flight.
    Draining { until: Instant },
    /// Past the drain timeout: waiting, without a limit, for its local writes only.
    LocalWrites,
}

impl Lifecycle {
    /// The state the tenant manager, the APIs and the metrics see.
    pub(crate) fn state(&self) -> TenantState {
        match self {
            Lifecycle::Loading => TenantState::Loading,
            Lifecycle::Attaching => TenantState::Attaching,
            Lifecycle::Activating => TenantState::Activating,
            Lifecycle::Active | Lifecycle::Deleting(_) => TenantState::Active,
            Lifecycle::Stopping(_) => TenantState::Stopping,
            Lifecycle::Broken { reason } => TenantState::Broken { reason: reason.clone() },
        }
    }

    /// The lifecycle after `event` (legal as in [`TenantState::on`]); a `Stop`
    /// starts flushing until `stop_deadline` (a tenant already stopping stays where
    /// it is; a `Stop` without a deadline is illegal).
    fn on(
        &self,
        event: &TenantEvent,
        stop_deadline: Option<Instant>,
    ) -> Result<Self, IllegalTransition> {
        let illegal = || IllegalTransition { from: self.state(), event: event.clone() };
        Ok(match self.state().on(event)? {
            TenantState::Loading => Lifecycle::Loading,
            TenantState::Attaching => Lifecycle::Attaching,
            TenantState::Activating => Lifecycle::Activating,
            TenantState::Active => Lifecycle::Active,
            TenantState::Stopping => match self {
                Lifecycle::Stopping(phase) => Lifecycle::Stopping(*phase),
                _ => Lifecycle::Stopping(StopPhase::Flushing {
                    deadline: stop_deadline.ok_or_else(illegal)?,
                }),
            },
            TenantState::Broken { reason } => Lifecycle::Broken { reason },
        })
    }
}

/// One attached tenant.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) generation: Generation,
    pub(crate) mode: LocationMode,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) timelines: BTreeMap<TimelineId, TimelineSlot>,
    /// Timelines found in remote storage that could not be loaded (their index is
    /// corrupt or unreadable for good): no machines run for them, they are listed
    /// as broken with the reason and every request for them answers it (500), until
    /// the tenant is loaded again (a restart or a `location_config`) after an
    /// operator restored the object. Never both here and in `timelines`.
    pub(crate) unloadable: BTreeMap<TimelineId, BrokenReason>,
    /// This incarnation's ops in flight (node op ids, unique per node run): added
    /// where the node inserts a route ([`Node::emit_io`]), removed where it takes
    /// one back (`handle_io`). A completion whose op is not here is a straggler of
    /// a replaced incarnation and is dropped (module doc, Identity of ops).
    pub(crate) in_flight: BTreeSet<OpId>,
    /// Those of `in_flight` that write or remove a local file: a stop waits for
    /// them without a limit (module doc, Crash).
    pub(crate) local_writes: BTreeSet<OpId>,
    /// Timeline creates whose remote check is in flight (`create.rs`): another
    /// create of the same timeline meanwhile answers 503.
    pub(crate) create_checks: BTreeSet<TimelineId>,
    /// Reads waiting for their timeline's answer: what was asked.
    pub(crate) reads: BTreeMap<RequestId, (Key, Lsn)>,
    /// Found with a deletion mark while loading: its deletion starts again once it
    /// is settled in AttachedSingle.
    pub(crate) deletion_marked: bool,
    /// While its load (the manager's `LoadTenant` step) runs: how many of the load's
    /// I/Os are outstanding (start-up's bounded queue, retries included). At zero
    /// the load ends (`Node::finish_tenant_load`) and this becomes `None`.
    pub(crate) loading: Option<usize>,
}

impl Tenant {
    pub(crate) fn new(generation: Generation, mode: LocationMode, lifecycle: Lifecycle) -> Self {
        Tenant {
            generation,
            mode,
            lifecycle,
            timelines: BTreeMap::new(),
            unloadable: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            local_writes: BTreeSet::new(),
            create_checks: BTreeSet::new(),
            reads: BTreeMap::new(),
            deletion_marked: false,
            loading: None,
        }
    }

    pub(crate) fn state(&self) -> TenantState {
        self.lifecycle.state()
    }

    pub(crate) fn is_broken(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Broken { .. })
    }

    pub(crate) fn is_stopping(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Stopping(_))
    }

    /// The stop's deadline while it flushes (a timer in the node's index).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.lifecycle {
            Lifecycle::Stopping(StopPhase::Flushing { deadline }) => Some(deadline),
            Lifecycle::Stopping(StopPhase::Draining { until }) => Some(until),
            _ => None,
        }
    }

    /// Applies a lifecycle event (`Loaded`, `Activated`, `Fail`; a stop begins with
    /// [`Tenant::begin_stop`]); an illegal one is a bug, logged (tests catch it via the debug assertion).
    pub(crate) fn transition(&mut self, event: TenantEvent) {
        self.apply(&event, None);
    }

    /// `Stop`: every timeline flushes until `deadline`.
    pub(crate) fn begin_stop(&mut self, deadline: Instant) {
        self.apply(&TenantEvent::Stop, Some(deadline));
    }

    fn apply(&mut self, event: &TenantEvent, stop_deadline: Option<Instant>) {
        match self.lifecycle.on(event, stop_deadline) {
            Ok(next) => self.lifecycle = next,
            Err(e) => {
                debug_assert!(false, "{e}");
                tracing::error!(error = %e, "illegal tenant transition");
            }
        }
    }
}

impl Node {
    /// Moves `tenant` on as far as its own state and counters allow (see the
    /// module doc, Progress). Called by the pump for a dirty [`Machine::Tenant`].
    pub(crate) fn advance_tenant(&mut self, tenant: TenantId) {
        if self.tenants.get(&tenant).is_some_and(|t| t.loading == Some(0)) {
            // Its load's last start-up I/O completed (`on_startup_io`).
            self.finish_tenant_load(tenant);
        }
        if self.emergency.is_some() {
            self.advance_leaving_emergency(tenant);
        }
        let Some(t) = self.tenants.get(&tenant) else { return };
        match t.lifecycle.clone() {
            Lifecycle::Stopping(phase) => self.advance_stop(tenant, phase),
            Lifecycle::Deleting(DeletePhase::Timelines) => self.advance_tenant_deletion(tenant),
            Lifecycle::Broken { reason } => self.end_step_of_broken(tenant, &reason),
            _ => {}
        }
        if !self.tenants.contains_key(&tenant) {
            return;
        }
        self.resume_aborted_deletions(tenant);
        self.resume_marked_deletion(tenant);
    }

    /// A machine of `tenant` panicked while a step ran on it: a stop fails (what it
    /// had not flushed is gone; the operation must not go on as if it had); a
    /// timeline deletion step is done (its timelines are gone with the machines).
    fn end_step_of_broken(&mut self, tenant: TenantId, reason: &str) {
        let Some(Slot::InProgress(op)) = self.manager.slot(tenant) else { return };
        match op.current {
            Some(Step::StopTenant) => {
                let reason = reason.to_string();
                self.step_done(tenant, Err(StepError::BrokeWhileStopping { reason }));
            }
            Some(Step::DeleteTimelines) => self.step_done(tenant, Ok(StepOutput::Done)),
            _ => {}
        }
    }

    /// Records an op of a tenant's machines (or a timeline create's check) going
    /// out: into its incarnation's `in_flight` (and `local_writes` when `io` writes
    /// or removes a local file), its upload queue's count, its create checks.
    pub(crate) fn track_op(&mut self, op: OpId, route: &Route, io: &Io) {
        if let Route::CreateTimelineCheck { tenant, timeline, generation, .. } = route {
            if let Some(t) = self.tenants.get_mut(tenant)
                && t.generation == *generation
            {
                t.create_checks.insert(*timeline);
            }
            return;
        }
        let Some(tenant) = route.tenant() else { return };
        let Some(t) = self.tenants.get_mut(&tenant) else {
            debug_assert!(false, "a route of tenant {tenant}, which the node does not hold");
            return;
        };
        t.in_flight.insert(op);
        if io.writes_locally() {
            t.local_writes.insert(op);
        }
        if let Some(slot) = upload_timeline(route).and_then(|tl| t.timelines.get_mut(&tl)) {
            slot.upload_in_flight += 1;
        }
        self.draining_again(tenant);
    }

    /// Takes an op's completion back: `false` if it belongs to no current tenant
    /// incarnation (a straggler of a replaced one: to be dropped).
    pub(crate) fn untrack_op(&mut self, op: OpId, route: &Route) -> bool {
        if let Route::CreateTimelineCheck { tenant, timeline, generation, .. } = route {
            if let Some(t) = self.tenants.get_mut(tenant)
                && t.generation == *generation
            {
                t.create_checks.remove(timeline);
            }
            return true;
        }
        let Some(tenant) = route.tenant() else { return true };
        let Some(t) = self.tenants.get_mut(&tenant) else { return false };
        if !t.in_flight.remove(&op) {
            return false;
        }
        t.local_writes.remove(&op);
        if let Some(slot) = upload_timeline(route).and_then(|tl| t.timelines.get_mut(&tl)) {
            debug_assert!(slot.upload_in_flight > 0, "upload count below zero: {route:?}");
            slot.upload_in_flight = slot.upload_in_flight.saturating_sub(1);
        }
        self.touch_tenant(tenant);
        true
    }

    /// Every tenant's ops in flight are routes of that tenant (routes of a tenant
    /// beyond them are stragglers of a replaced incarnation, never local writes);
    /// its local writes are among them; every upload queue's count is that of its
    /// routes of the current incarnation.
    pub(crate) fn check_in_flight_counts(&self) {
        let mut uploads: BTreeMap<(TenantId, TimelineId), usize> = BTreeMap::new();
        let mut checks: BTreeSet<(TenantId, TimelineId)> = BTreeSet::new();
        for (op, route) in &self.routes {
            match route {
                Route::UploadPut { tenant, timeline, .. }
                | Route::UploadList { tenant, timeline, .. }
                    if self.tenants.get(tenant).is_some_and(|t| t.in_flight.contains(op)) =>
                {
                    *uploads.entry((*tenant, *timeline)).or_default() += 1;
                }
                Route::CreateTimelineCheck { tenant, timeline, generation, .. }
                    if self.tenants.get(tenant).is_some_and(|t| t.generation == *generation) =>
                {
                    checks.insert((*tenant, *timeline));
                }
                _ => {}
            }
        }
        for (id, t) in &self.tenants {
            for op in &t.in_flight {
                let route = self.routes.get(op);
                assert!(
                    route.is_some_and(|r| r.tenant() == Some(*id)),
                    "tenant {id}: op {op} in flight without its route ({route:?})"
                );
            }
            assert!(t.local_writes.is_subset(&t.in_flight), "tenant {id}: a local write untracked");
            for tl in &t.create_checks {
                assert!(checks.contains(&(*id, *tl)), "create check of {id}/{tl} not in flight");
            }
            for (tl, slot) in &t.timelines {
                let counted = uploads.get(&(*id, *tl)).copied().unwrap_or(0);
                assert_eq!(slot.upload_in_flight, counted, "{id}/{tl}: upload in-flight count");
            }
        }
    }

    /// Something of `tenant` changed: it is looked at once the pump is quiet.
    pub(crate) fn touch_tenant(&mut self, tenant: TenantId) {
        self.dirty.insert(Machine::Tenant(tenant));
    }
}

/// The timeline whose upload queue an op belongs to, if it does.
fn upload_timeline(route: &Route) -> Option<TimelineId> {
    match route {
        Route::UploadPut { timeline, .. } | Route::UploadList { timeline, .. } => Some(*timeline),
        _ => None,
    }
}
