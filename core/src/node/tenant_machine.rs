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
//!        ─all visible or deadline─► Stopping(Draining) ─in_flight = 0─► (removed)
//!   any with machines ─a handler panicked─► Broken{reason}   (machines dropped)
//! ```
//! [`Lifecycle::state`] is the [`TenantState`] the rest of the node and the APIs
//! see (`Deleting` is `Active` there; the table of legal events is
//! [`TenantState::on`]).
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
//!   then stops its machines and ends when `in_flight` is zero;
//! - a tenant deletion deletes every timeline and ends its step when none is left;
//! - an interrupted timeline deletion resumes once the tenant is AttachedSingle
//!   and that timeline's `upload_in_flight` is zero;
//! - a deletion mark found while loading starts the deletion once the tenant is
//!   settled in AttachedSingle.
//!
//! # Invariants (`Node::check_invariants`)
//! `in_flight` and every slot's `upload_in_flight` equal the routes in flight for
//! them; every route of a tenant names a tenant the node holds; a `Broken` tenant
//! holds no timelines; the timer index holds each tenant's stop deadline.
//!
//! # Crash
//! Nothing here is durable. A crash drops the tenant with its machines; start-up
//! reloads it from its `config-v1`, the control plane and the remote index. A
//! deletion mark is durable in remote storage, so a tenant deletion interrupted
//! after it resumes at the next load (`deletion_marked`).

use super::api::RequestId;
use super::{BrokenReason, Machine, Node, TimelineSlot};
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::key::Key;
use crate::location_conf::LocationMode;
use crate::lsn::Lsn;
use crate::tenant::{IllegalTransition, Slot, Step, StepOutput, TenantEvent, TenantState};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopPhase {
    /// Every timeline flushes, until all it acknowledged is visible or `deadline`.
    Flushing { deadline: Instant },
    /// Its machines are stopped; waiting for its I/O in flight to come back.
    Draining,
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
    /// This tenant's I/O in flight: every route whose [`Route::tenant`] is this
    /// tenant, counted where the node inserts and removes routes (`emit_io`,
    /// `handle_io`). A stop ends, and emergency mode is left, only at zero, so no
    /// completion of the old machines can reach new ones.
    ///
    /// [`Route::tenant`]: super::Route::tenant
    pub(crate) in_flight: usize,
    /// Timeline creates whose remote check is in flight (`create.rs`): another
    /// create of the same timeline meanwhile answers 503.
    pub(crate) create_checks: BTreeSet<TimelineId>,
    /// Reads waiting for their timeline's answer: what was asked.
    pub(crate) reads: BTreeMap<RequestId, (Key, Lsn)>,
    /// Found with a deletion mark while loading: its deletion starts again once it
    /// is settled in AttachedSingle.
    pub(crate) deletion_marked: bool,
}

impl Tenant {
    pub(crate) fn new(generation: Generation, mode: LocationMode, lifecycle: Lifecycle) -> Self {
        Tenant {
            generation,
            mode,
            lifecycle,
            timelines: BTreeMap::new(),
            unloadable: BTreeMap::new(),
            in_flight: 0,
            create_checks: BTreeSet::new(),
            reads: BTreeMap::new(),
            deletion_marked: false,
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
                let why = format!("the tenant broke while stopping: {reason}");
                self.step_done(tenant, Err(why));
            }
            Some(Step::DeleteTimelines) => self.step_done(tenant, Ok(StepOutput::Done)),
            _ => {}
        }
    }

    /// Something of `tenant` changed: it is looked at once the pump is quiet.
    pub(crate) fn touch_tenant(&mut self, tenant: TenantId) {
        self.dirty.insert(Machine::Tenant(tenant));
    }
}
