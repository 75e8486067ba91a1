//! The migration reconciler: moves a tenant from one node to another by calling the
//! nodes' `location_config`, one durable phase at a time.
//!
//! # Purpose
//! A migration of tenant T from origin O (attached at generation G) to destination D
//! walks five phases. Each phase is written to the control plane's store before its
//! first call, so a control-plane crash resumes it (every call is idempotent):
//!
//! | phase (persisted) | calls | leaves when |
//! |---|---|---|
//! | `AttachDestination` | D: status; D: `location_config(AttachedMulti, at_least)` | D holds T attached at a generation above G (the *destination generation*) |
//! | `StaleOrigin { dg }` | O: status; O: `location_config(AttachedStale, g)` only if O holds T attached at some g below dg; O: status again | O is stale (its `last_ingested` per timeline is the catch-up *target*), or O does not hold T (target empty), or O stayed unreachable for `origin_give_up_ms` (target empty) |
//! | `CatchUp { dg, target }` | D: status, every `catch_up_poll_ms` | every target timeline's visible LSN on D is at or above its target LSN, or `catch_up_timeout_ms` passed |
//! | `DemoteOrigin { dg }` | O: `location_config(Secondary{warm: true}, dg - 1)` or `(Detached, dg - 1)` | O answers Secondary/Detached, or stayed unreachable for `origin_give_up_ms` |
//! | `FinalizeDestination { dg }` | D: status; D: `location_config(AttachedSingle, g)` | D answers AttachedSingle |
//! | `Done { generation }` | none | — |
//!
//! The destination's generation comes from the control plane's own table: D's
//! `location_config` makes D ask the control plane to attach it (`/attach`, at
//! least `G + 1`), and the control plane commits that grant to its store before D
//! hears it. So "destination AttachedMulti at generation G + 1, persisted first" is
//! the control-plane machine's rule; this machine records the generation D answers
//! (which is above G, and higher still if D restarted in between: a restart bumps).
//!
//! A status call observes before every call that could attach: the origin is only
//! ever called with `AttachedStale` at the generation it is seen holding (which
//! sets the mode without asking for a generation), so the reconciler never makes the
//! origin acquire a generation above the destination's. The drivers add a fence
//! ([`MigrationReconciler::attach_fence`], `fence.rs`): while T migrates, an
//! `/attach` of T from any node but D is refused, and after it an attach reporting a
//! generation below the table's while another node holds T (a late call) is too.
//!
//! Calls may be delivered late, after their migration moved on or finished (a call
//! that timed out here may still reach its node). Each is harmless then, by the
//! nodes' mode table (`tenant/manager.rs`): `AttachedStale` never takes a
//! generation; an attached mode never goes back within one generation (a late
//! AttachedMulti cannot demote the finished AttachedSingle); a demotion names the
//! newest generation it demotes (below D's), so it cannot undo a later attach; and a
//! late attach on a node that no longer holds T meets the stale fence above.
//!
//! # Call protocol
//! - Inputs ([`MigrationInput`], fed by [`MigrationReconciler::handle`], or the
//!   `handle_*` methods): `Start` (answered by a `Reply` once its first phase is
//!   durable), `Persisted { op, result }`, `NodeAnswered { op, result }`,
//!   `Timeout(timer)`.
//! - Effects ([`MigrationEffect`], drained with `poll_effect` after every input):
//!   `Persist { op, record }` (one store upsert of the tenant's migration row; answer
//!   with `handle_persisted`), `Call { op, node, tenant, call }` (a node's status or
//!   `location_config`; answer with `handle_node_answer`), `Reply { req, result }`.
//! - Timers ([`MigrationTimer`], from `next_timer`/`timers`; fire with
//!   `handle_timeout(now, timer)`): `CallDeadline` (a call had `call_timeout_ms`
//!   without an answer: a failure), `Retry` (a backoff ended: the failed step or
//!   persist runs again), `Poll` (catch-up looks at D again).
//! - Getters: [`MigrationReconciler::migration`], `migrations`, `migrating_to`,
//!   `stats`; [`MigrationReconciler::check_invariants`] after every input in tests.
//!
//! # States (per migration)
//! The durable [`MigrationRecord`] (its [`Phase`]), and what it waits for: a persist
//! in flight, one call in flight (with its deadline), a retry backoff, or a catch-up
//! poll. Exactly one at a time: an active migration always waits on something, so
//! it cannot get stuck silently (checked by `check_invariants`).
//!
//! # Failures and retries (named bounds, [`MigrationConfig`])
//! A failed call (unreachable, busy, refused, an answer that does not show the step
//! done, no answer within `call_timeout_ms`) is retried after
//! `backoff_base_ms · 2^(n-1)` capped at `backoff_max_ms`, forever: a migration
//! finishes once its nodes answer (L-MIGRATE). The exceptions are the origin's
//! steps: after `origin_give_up_ms` of failures in a phase the step is skipped (the
//! origin is fenced by generations anyway: D's grant makes O's validations fail;
//! what O ingested and never made visible is the client's to re-send to D). A failed
//! persist (outcome unknown) is retried the same way; nothing is called until it
//! succeeds. An answer to a call no longer awaited (it timed out) is dropped and
//! counted; one naming an op never issued is a typed [`MigrationInputError`].
//!
//! # Invariants
//! - Phases only move forward, and a phase's calls go out only after the phase is
//!   durable: a crash never repeats an earlier phase's effect after a later one.
//! - D is told AttachedSingle only after O was demoted (or given up on); O is told
//!   nothing attached but `AttachedStale` at the generation it was seen holding,
//!   below D's.
//! - The destination generation is above the origin generation.
//! - At most [`MAX_ACTIVE_MIGRATIONS`] run; each keeps at most
//!   [`MAX_EVENTS_PER_MIGRATION`] events.
//!
//! # Crash
//! Durable: one [`MigrationRecord`] per tenant (the last migration, `Done` or not).
//! [`MigrationReconciler::recover`] resumes every unfinished one at its persisted
//! phase, from the phase's first step. A call in flight at the crash may or may not
//! have happened: the phase repeats it (idempotent: a node already in the asked mode
//! answers `Unchanged`), and the status calls before each action see what it did.
//! A persist in flight may or may not be in the store: either the old phase repeats
//! its calls, or the new phase starts. Timers (catch-up timeout, origin give-up)
//! restart from the recovery.

mod fence;
mod invariants;
mod steps;
#[cfg(test)]
mod tests;
mod types;
#[cfg(any(test, feature = "fuzzing"))]
pub mod world;

pub use fence::FenceRefusal;
pub use types::*;

use super::{ReAttachedTenant, RequestId};
use crate::generation::Generation;
use crate::id::{NodeId, OpId, OpIds, TenantId};
use crate::io_error::IoError;
use crate::time::Instant;
use std::collections::{BTreeMap, VecDeque};

/// One step inside a phase (memory only: a recovery starts the phase over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    ObserveDestination,
    /// `convert`: D was seen attached above the origin's generation in another
    /// mode, so the call changes its mode (not attach-only).
    AttachDestination {
        at_least: Generation,
        convert: bool,
    },
    ObserveOrigin,
    StaleOrigin {
        generation: Generation,
    },
    ObserveStaleOrigin,
    ObserveCatchUp,
    DemoteOrigin,
    ObserveFinal,
    FinalizeDestination {
        generation: Option<Generation>,
    },
}

/// What a migration waits for: exactly one thing.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wait {
    Persist { op: OpId, record: MigrationRecord },
    Call { op: OpId, step: Step, deadline: Instant },
    RetryStep { step: Step, until: Instant },
    RetryPersist { record: MigrationRecord, until: Instant },
    Poll { until: Instant },
}

#[derive(Clone, Debug)]
struct Migration {
    /// The last record the store confirmed; `None` until the start is durable.
    durable: Option<MigrationRecord>,
    wait: Wait,
    /// Failures in a row (backoff).
    failures: u32,
    /// When the current phase became durable (or the machine recovered it).
    phase_started: Instant,
    /// The `Start` to answer once the first record is durable.
    start_req: Option<RequestId>,
    events: VecDeque<MigrationEvent>,
}

/// A read-only view of one migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationView<'a> {
    /// The durable record (`None` while a start is being persisted).
    pub record: Option<&'a MigrationRecord>,
    pub active: bool,
    pub events: &'a VecDeque<MigrationEvent>,
}

#[derive(Debug, Default)]
pub struct MigrationReconciler {
    config: MigrationConfig,
    active: BTreeMap<TenantId, Migration>,
    /// Finished migrations (their `Done` record and events), for listings.
    finished: BTreeMap<TenantId, (MigrationRecord, VecDeque<MigrationEvent>)>,
    /// Which migration each op in flight belongs to.
    ops: BTreeMap<OpId, TenantId>,
    op_ids: OpIds,
    issued: u64,
    next_seq: u64,
    effects: VecDeque<MigrationEffect>,
    stats: MigrationStats,
}

impl MigrationReconciler {
    /// A reconciler resuming what the store holds (an empty vec for a fresh store):
    /// every unfinished migration starts its persisted phase over at `now`.
    pub fn recover(config: MigrationConfig, records: Vec<MigrationRecord>, now: Instant) -> Self {
        let mut this = MigrationReconciler { config, ..MigrationReconciler::default() };
        for record in records {
            let tenant = record.tenant;
            if matches!(record.phase, Phase::Done { .. }) {
                this.finished.insert(tenant, (record, VecDeque::new()));
                continue;
            }
            let placeholder = Wait::Poll { until: now };
            let migration = Migration {
                durable: Some(record.clone()),
                wait: placeholder,
                failures: 0,
                phase_started: now,
                start_req: None,
                events: VecDeque::new(),
            };
            this.active.insert(tenant, migration);
            this.event(now, tenant, EventKind::Phase(record.phase.clone()));
            this.begin_phase(now, tenant);
        }
        this
    }

    pub fn handle_start(&mut self, now: Instant, req: RequestId, start: MigrationStart) {
        let tenant = start.tenant;
        if let Some(m) = self.active.get(&tenant) {
            let phase = m.current().map_or("starting", |r| r.phase.name());
            let err = MigrationError::AlreadyMigrating { tenant, phase };
            return self.effects.push_back(MigrationEffect::Reply { req, result: Err(err) });
        }
        if start.origin == start.destination {
            let err = MigrationError::SameNode { tenant, node: start.origin };
            return self.effects.push_back(MigrationEffect::Reply { req, result: Err(err) });
        }
        if self.active.len() >= MAX_ACTIVE_MIGRATIONS {
            let err = MigrationError::TooMany { active: self.active.len() };
            return self.effects.push_back(MigrationEffect::Reply { req, result: Err(err) });
        }
        let record = MigrationRecord {
            tenant,
            origin: start.origin,
            origin_generation: start.origin_generation,
            destination: start.destination,
            origin_after: start.origin_after,
            phase: Phase::AttachDestination,
        };
        self.stats.started_total += 1;
        self.finished.remove(&tenant);
        let migration = Migration {
            durable: None,
            wait: Wait::Poll { until: now },
            failures: 0,
            phase_started: now,
            start_req: Some(req),
            events: VecDeque::new(),
        };
        self.active.insert(tenant, migration);
        self.persist(tenant, record);
    }

    /// A `Persist` completed; `Err` means its outcome is unknown.
    pub fn handle_persisted(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<(), IoError>,
    ) -> Result<(), MigrationInputError> {
        let Some(tenant) = self.take_op(op)? else { return Ok(()) };
        let m = self.active.get_mut(&tenant).expect("an op belongs to an active migration");
        let Wait::Persist { op: expected, record } = m.wait.clone() else {
            return Err(MigrationInputError::WrongCompletion { op });
        };
        debug_assert_eq!(expected, op);
        match result {
            Ok(()) => self.on_durable(now, tenant, record),
            Err(e) => {
                self.stats.persist_failures_total += 1;
                let m = self.active.get_mut(&tenant).expect("checked above");
                m.failures += 1;
                let until = now.plus_millis(self.config.backoff_ms(m.failures));
                m.wait = Wait::RetryPersist { record, until };
                self.event(now, tenant, EventKind::PersistFailed { reason: e.to_string() });
            }
        }
        Ok(())
    }

    /// A node answered a `Call` (or the call failed).
    pub fn handle_node_answer(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<NodeAnswer, NodeCallError>,
    ) -> Result<(), MigrationInputError> {
        let Some(tenant) = self.take_op(op)? else { return Ok(()) };
        let m = self.active.get_mut(&tenant).expect("an op belongs to an active migration");
        let Wait::Call { step, .. } = m.wait else {
            return Err(MigrationInputError::WrongCompletion { op });
        };
        let node = self.step_node(tenant, step);
        match result {
            Ok(answer) => {
                self.event(now, tenant, EventKind::Answered { node, answer: answer.clone() });
                self.on_answer(now, tenant, step, answer);
            }
            Err(e) => self.call_failed(now, tenant, step, e.to_string()),
        }
        Ok(())
    }

    /// Fires one timer ([`MigrationReconciler::next_timer`] says which and when). A
    /// timer that is not set or not yet due does nothing.
    pub fn handle_timeout(&mut self, now: Instant, timer: MigrationTimer) {
        if !self.timers().any(|(at, t)| t == timer && at <= now) {
            return;
        }
        let tenant = match timer {
            MigrationTimer::CallDeadline(t)
            | MigrationTimer::Retry(t)
            | MigrationTimer::Poll(t) => t,
        };
        let Some(m) = self.active.get(&tenant) else { return };
        match m.wait.clone() {
            Wait::Call { op, step, .. } => {
                self.ops.remove(&op);
                self.stats.call_timeouts_total += 1;
                let reason = format!("no answer within {} ms", self.config.call_timeout_ms);
                self.call_failed(now, tenant, step, reason);
            }
            Wait::RetryStep { step, .. } => self.run_step(now, tenant, step),
            Wait::RetryPersist { record, .. } => self.persist(tenant, record),
            Wait::Poll { .. } => self.run_step(now, tenant, Step::ObserveCatchUp),
            Wait::Persist { .. } => {}
        }
    }

    /// Feeds one input, exactly as the `handle_*` method it names.
    pub fn handle(
        &mut self,
        now: Instant,
        input: MigrationInput,
    ) -> Result<(), MigrationInputError> {
        match input {
            MigrationInput::Start { req, start } => self.handle_start(now, req, start),
            MigrationInput::Persisted { op, result } => self.handle_persisted(now, op, result)?,
            MigrationInput::NodeAnswered { op, result } => {
                self.handle_node_answer(now, op, result)?
            }
            MigrationInput::Timeout(timer) => self.handle_timeout(now, timer),
        }
        Ok(())
    }

    pub fn poll_effect(&mut self) -> Option<MigrationEffect> {
        self.effects.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The earliest timer and its name: call `handle_timeout(at, timer)` then.
    pub fn next_timer(&self) -> Option<(Instant, MigrationTimer)> {
        self.timers().min()
    }

    /// Every timer, with its reason.
    pub fn timers(&self) -> impl Iterator<Item = (Instant, MigrationTimer)> + '_ {
        self.active.iter().filter_map(|(tenant, m)| match m.wait {
            Wait::Call { deadline, .. } => Some((deadline, MigrationTimer::CallDeadline(*tenant))),
            Wait::RetryStep { until, .. } | Wait::RetryPersist { until, .. } => {
                Some((until, MigrationTimer::Retry(*tenant)))
            }
            Wait::Poll { until } => Some((until, MigrationTimer::Poll(*tenant))),
            Wait::Persist { .. } => None,
        })
    }

    /// The tenant's last migration (active or finished).
    pub fn migration(&self, tenant: TenantId) -> Option<MigrationView<'_>> {
        if let Some(m) = self.active.get(&tenant) {
            return Some(MigrationView {
                record: m.durable.as_ref(),
                active: true,
                events: &m.events,
            });
        }
        let (record, events) = self.finished.get(&tenant)?;
        Some(MigrationView { record: Some(record), active: false, events })
    }

    /// Every tenant's last migration, in tenant order.
    pub fn migrations(&self) -> impl Iterator<Item = (TenantId, MigrationView<'_>)> + '_ {
        let mut tenants: Vec<TenantId> =
            self.active.keys().chain(self.finished.keys()).copied().collect();
        tenants.sort();
        tenants.into_iter().filter_map(|t| Some((t, self.migration(t)?)))
    }

    /// The destination of the tenant's migration while one runs: the driver refuses
    /// an attach of the tenant from any other node meanwhile.
    pub fn migrating_to(&self, tenant: TenantId) -> Option<NodeId> {
        let m = self.active.get(&tenant)?;
        m.current().map(|r| r.destination)
    }

    /// Marks each tenant of `node`'s re-attach answer that is migrating to `node`
    /// (`ReAttachedTenant::migration_destination`): the drivers call it on the
    /// generation table's answer before they send it.
    pub fn mark_destinations(&self, node: NodeId, tenants: &mut [ReAttachedTenant]) {
        for t in tenants {
            t.migration_destination = self.migrating_to(t.tenant) == Some(node);
        }
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    pub fn stats(&self) -> MigrationStats {
        self.stats
    }

    pub fn config(&self) -> &MigrationConfig {
        &self.config
    }

    // ---- internals shared by the steps ----

    /// A tracked op's migration; `None` for a late answer (dropped, counted).
    fn take_op(&mut self, op: OpId) -> Result<Option<TenantId>, MigrationInputError> {
        if op.0 >= self.issued {
            return Err(MigrationInputError::UnknownOp(op));
        }
        match self.ops.remove(&op) {
            Some(tenant) => Ok(Some(tenant)),
            None => {
                self.stats.late_answers_total += 1;
                Ok(None)
            }
        }
    }

    fn next_op(&mut self, tenant: TenantId) -> OpId {
        let op = self.op_ids.next_id();
        self.issued += 1;
        self.ops.insert(op, tenant);
        op
    }

    fn persist(&mut self, tenant: TenantId, record: MigrationRecord) {
        let op = self.next_op(tenant);
        let m = self.active.get_mut(&tenant).expect("persisting an active migration");
        m.wait = Wait::Persist { op, record: record.clone() };
        self.effects.push_back(MigrationEffect::Persist { op, record });
    }

    /// Records an event. Quiet on repeats: a status call is not recorded (only its
    /// answer), and an answer equal to the last one recorded is not either (catch-up
    /// polls every `catch_up_poll_ms`).
    fn event(&mut self, at: Instant, tenant: TenantId, kind: EventKind) {
        let Some(m) = self.active.get(&tenant) else { return };
        let repeat = match &kind {
            EventKind::Calling { call: NodeCall::Status, .. } => true,
            EventKind::Answered { .. } => m
                .events
                .iter()
                .rev()
                .find(|e| matches!(e.kind, EventKind::Answered { .. }))
                .is_some_and(|e| e.kind == kind),
            _ => false,
        };
        if repeat {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(m) = self.active.get_mut(&tenant) {
            tracing::info!(%tenant, seq, "migration: {kind}");
            m.events.push_back(MigrationEvent { seq, at, kind });
            while m.events.len() > MAX_EVENTS_PER_MIGRATION {
                m.events.pop_front();
            }
        }
    }
}

impl Migration {
    /// The record being persisted, else the durable one.
    fn current(&self) -> Option<&MigrationRecord> {
        match &self.wait {
            Wait::Persist { record, .. } | Wait::RetryPersist { record, .. } => Some(record),
            _ => self.durable.as_ref(),
        }
    }
}
