//! The tenant manager: the node's map of tenant slots, and the sequencing of every
//! change to it.
//!
//! The slot table and the operations running on it are here; what an operation is
//! made of (requests, [`Step`]s) and the mode table ([`plan`]) are in `manager/plan.rs`;
//! `check_invariants` is in `manager/invariants.rs`.
//!
//! # Slots
//! A tenant this node knows sits in exactly one [`Slot`]:
//! - `Attached { mode, broken: None }`: its machines run in the node;
//! - `Attached { mode, broken: Some(reason) }`: placed in `mode` (its generation is
//!   held), but nothing runs for it: an operation on it failed, or start-up refused
//!   to load it (a generation conflict); `reason` says why;
//! - `Secondary { warm }`: its config is kept, nothing runs, nothing is written
//!   remotely;
//! - `InProgress(op)`: an operation (attach, restart, mode change, detach, …) is
//!   running its steps;
//! - `Broken { reason }`: its directory exists but its `config-v1` is missing or
//!   unreadable, so how this node holds it is unknown. Nothing is guessed: nothing
//!   runs, nothing is written (the config stays as found), requests for it are
//!   answered with the reason, until a location_config with an explicit mode places
//!   it (see the table).
//!
//! One map, one slot per tenant: a tenant can never hold two attached slots.
//!
//! # What the manager owns, and what it does not
//! The manager owns each tenant's placement: its mode and generation, the operation
//! running on it, and why it is broken when it has no machines (a failed operation,
//! a generation conflict, an unreadable config). It does **not** hold the lifecycle
//! of a tenant whose machines run (loading, active, stopping, deleting, broken by a
//! panic): that is the tenant machine's alone (`node/tenant_machine.rs`), and no copy
//! of it is kept here. Where a decision needs it (a Broken tenant restarts on a new
//! generation; a Broken tenant is not deleted), the node asks the tenant machine and
//! passes the answer in with the request (`broken`). An operation's steps end by
//! completions the node reports; nothing here follows the lifecycle as it moves.
//!
//! # No waiting, no deadlock (S-NO-DEADLOCK)
//! A request for a tenant whose slot is `InProgress` is answered at once with
//! [`ManagerError::Busy`] (HTTP 503 + Retry-After). Nothing in the manager waits for
//! anything while holding anything: an operation is a list of [`Step`]s, one in
//! flight at a time, each finished by [`TenantManager::handle_step_done`]. The manager
//! holds no lock because it is a value owned by one node loop.
//!
//! # location_config: the mode table
//! [`plan`] is the whole table, (current, requested) → steps. In short:
//!
//! | current | requested | steps |
//! |---|---|---|
//! | same as requested (healthy) | — | none: answered `Unchanged` |
//! | Detached / Secondary | Attached(m) | AcquireGeneration, WriteConfig, Load |
//! | Attached(m, g) | Attached(m', g or none) | WriteConfig, SetMode (no restart) |
//! | Attached(*, g) | Attached(*, g' > g) | Stop, AcquireGeneration(≥ g'), WriteConfig, Load |
//! | Attached(*, g) | Attached(*, g' < g) | refused: `StaleGeneration` |
//! | Attached(m, g) | Attached(m', g or none), `attach_only` | none: answered `Unchanged` (a late attach keeps the later mode) |
//! | anything not attached at g | AttachedStale at g (or any AttachedStale that would acquire) | refused: `OutOfOrder` (a stale mark never takes a generation) |
//! | Attached(*, g) | Secondary/Detached naming g' < g | refused: `StaleGeneration` (a late demotion) |
//! | Attached, Broken | any attached | Stop, AcquireGeneration, WriteConfig, Load |
//! | Attached | Secondary | Stop, FlushDeletions, ReleaseGeneration, WriteConfig |
//! | Attached | Detached | Stop, FlushDeletions, ReleaseGeneration, RenameLocalDir; then RemoveLocalDir in the background |
//! | Secondary(w) | Secondary(w') | WriteConfig |
//! | Secondary | Detached | RenameLocalDir; then RemoveLocalDir |
//! | Detached | Secondary | WriteConfig |
//! | Broken (config unreadable) | Attached(m) | AcquireGeneration, WriteConfig, Load |
//! | Broken (config unreadable) | Secondary | WriteConfig |
//! | Broken (config unreadable) | Detached | ReleaseGeneration, RenameLocalDir; then RemoveLocalDir |
//!
//! A tenant create ([`TenantManager::handle_create_tenant`]) is an attach in
//! AttachedSingle that first looks in remote storage: `CheckRemote`, then
//! AcquireGeneration, WriteConfig, Load. A create writes nothing remote, so it goes
//! on only when remote storage holds nothing of the tenant; otherwise it is refused
//! with [`ManagerError::ExistsRemotely`], naming what was found (an empty tenant
//! over what exists would hide its timelines for good: issue 15, item 2).
//!
//! Start-up's loads are operations too ([`TenantManager::handle_load`],
//! `manager/load.rs`): one `LoadTenant` step each, answering no request; a tenant
//! gets machines no other way.
//!
//! A detach renames the tenant's directory to `tenants/{t}.___detached.{n}`; the
//! manager numbers it when it plans the detach ([`DetachedDir`], unique in this node
//! run) and the rename and the background removal both carry the number, so no
//! record of renamed directories is kept beside the steps.
//!
//! Generations come from the control plane (in-process by default): a request's
//! generation is a floor and a guard, never used unchecked. `None` keeps the held
//! generation (or acquires one when not attached).
//!
//! # Inputs, effects
//! Inputs: [`TenantManager::handle_location_config`],
//! [`TenantManager::handle_step_done`] (a step's completion, or a typed
//! [`StepError`]).
//! The same inputs, with [`TenantManager::handle_settled`],
//! [`TenantManager::handle_create_tenant`] and
//! [`TenantManager::handle_delete_tenant`], as data: [`ManagerInput`], fed by
//! [`TenantManager::handle`] (an illegal one is a [`ManagerHandleError`]). The
//! manager has no timers.
//! Effects ([`ManagerEffect`]): `Step` for the node to execute, `Reply` to a request.
//!
//! # Crash
//! The manager holds nothing durable. Every step that changes the world is durable
//! when done (config writes, control-plane changes, renames); after a crash, start-up
//! rebuilds the slots from the configs on disk and the control plane's re-attach
//! answer. A crash mid-operation leaves one of: the old config (the operation never
//! happened), the new config (it happened; start-up loads the tenant in its new mode),
//! or a renamed `.___detached` directory (start-up removes it).

mod ending;
mod error;
mod input;
mod invariants;
mod limits;
mod load;
mod plan;
mod secondary;

pub use error::{ManagerError, ManagerInputError};
pub use input::{ManagerHandleError, ManagerInput};

pub use plan::{
    DetachedDir, LocationRequest, OperationKind, Placement, Plan, RequestedMode, Step, StepError,
    StepOutput, plan,
};

use crate::generation::Generation;
use crate::id::TenantId;
use crate::location_conf::LocationMode;
use crate::node::api::RequestId;
use crate::time::Instant;
use plan::plan_unplaced;
pub(crate) use plan::with_generation;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub kind: OperationKind,
    /// The request it answers; `None` for a start-up load, which answers none.
    pub req: Option<RequestId>,
    pub from: Placement,
    /// The target; an attached target's generation is filled in by `AcquireGeneration`.
    pub target: RequestedMode,
    pub generation: Option<Generation>,
    pub current: Option<Step>,
    pub remaining: VecDeque<Step>,
    /// Started from a `Broken` slot (its config unreadable): why. A failure before
    /// anything changed puts the slot back as it was.
    pub unplaced: Option<String>,
}

impl Operation {
    /// An operation that will run `steps` (none started yet), from a placed slot.
    fn new(
        kind: OperationKind,
        req: RequestId,
        from: Placement,
        target: RequestedMode,
        generation: Option<Generation>,
        steps: impl IntoIterator<Item = Step>,
    ) -> Self {
        Operation {
            kind,
            req: Some(req),
            from,
            target,
            generation,
            current: None,
            remaining: steps.into_iter().collect(),
            unplaced: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Placed in `mode`. `broken: None`: its machines run, and their lifecycle is the
    /// tenant machine's, not the slot's. `broken: Some(reason)`: nothing runs for it
    /// (an operation on it failed, or start-up refused to load it), until a
    /// location_config restarts it on a new generation.
    Attached {
        mode: LocationMode,
        broken: Option<String>,
    },
    /// `downloads`: a warm one's machine (`crate::secondary`), started by the node.
    Secondary {
        warm: bool,
        downloads: Option<Box<crate::secondary::WarmSecondary>>,
    },
    InProgress(Box<Operation>),
    /// Its directory exists but its `config-v1` is missing or unreadable: not
    /// loaded, nothing guessed, until a location_config with an explicit mode.
    Broken {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocationOutcome {
    /// Nothing to do: the tenant already is where the request asks.
    Unchanged(Placement),
    Changed(Placement),
    /// A create finished: the tenant is attached here, new and empty.
    Created(Placement),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagerEffect {
    Step { tenant: TenantId, step: Step },
    Reply { req: RequestId, tenant: TenantId, result: Result<LocationOutcome, ManagerError> },
}

#[derive(Debug, Default)]
pub struct TenantManager {
    slots: BTreeMap<TenantId, Slot>,
    effects: VecDeque<ManagerEffect>,
    busy_refusals: u64,
    /// The tenants-per-node bound (`limits.rs`) and its refusals.
    max_tenants: Option<usize>,
    tenant_limit_refusals: u64,
    /// Directories renamed away by detaches planned so far: the next is numbered one
    /// above ([`DetachedDir`]).
    detached_dirs: u64,
    /// Start-up loads in progress (`load.rs`), counted as they start and end, so
    /// that start-up asks in O(1) whether all have ended.
    loads: usize,
}

impl TenantManager {
    /// The slots start-up rebuilt from the configs on disk and re-attach.
    pub fn recover(slots: BTreeMap<TenantId, Slot>) -> Self {
        TenantManager { slots, ..Default::default() }
    }

    /// Adds or replaces a settled slot outside location_config (create tenant,
    /// start-up). Refused while an operation runs.
    pub fn handle_settled(
        &mut self,
        _now: Instant,
        tenant: TenantId,
        slot: Slot,
    ) -> Result<(), ManagerError> {
        if let Some(Slot::InProgress(op)) = self.slots.get(&tenant) {
            return Err(ManagerError::Busy { tenant, kind: op.kind });
        }
        self.slots.insert(tenant, slot);
        Ok(())
    }

    /// A location_config request. `broken`: what the tenant machine says, asked by
    /// the node: why it is broken if its machines were dropped after a panic (it then
    /// restarts on a new generation even when the request repeats its mode).
    pub fn handle_location_config(
        &mut self,
        _now: Instant,
        req: RequestId,
        tenant: TenantId,
        request: LocationRequest,
        broken: Option<String>,
    ) {
        let (current, healthy) = match self.slots.get(&tenant) {
            Some(Slot::InProgress(op)) => {
                self.busy_refusals += 1;
                let error = ManagerError::Busy { tenant, kind: op.kind };
                return self.effects.push_back(ManagerEffect::Reply {
                    req,
                    tenant,
                    result: Err(error),
                });
            }
            Some(Slot::Attached { mode, broken: failed }) => {
                (Placement::Located(*mode), failed.is_none() && broken.is_none())
            }
            Some(Slot::Secondary { warm, .. }) => {
                (Placement::Located(LocationMode::Secondary { warm: *warm }), true)
            }
            Some(Slot::Broken { reason }) => {
                let reason = reason.clone();
                return self.place_unplaced(req, tenant, request, reason);
            }
            None => {
                if request.mode != RequestedMode::Detached
                    && let Some(error) = self.refuse_beyond_limit(tenant)
                {
                    let result = Err(error);
                    return self.effects.push_back(ManagerEffect::Reply { req, tenant, result });
                }
                (Placement::Detached, true)
            }
        };
        match plan(tenant, current, healthy, request, self.next_dir()) {
            Err(error) => {
                self.effects.push_back(ManagerEffect::Reply { req, tenant, result: Err(error) })
            }
            Ok(Plan::Unchanged(p)) => self.effects.push_back(ManagerEffect::Reply {
                req,
                tenant,
                result: Ok(LocationOutcome::Unchanged(p)),
            }),
            Ok(Plan::Run { kind, steps, keep_generation }) => {
                let op = Operation::new(kind, req, current, request.mode, keep_generation, steps);
                self.start_operation(tenant, op);
            }
        }
    }

    /// A location_config for a `Broken` slot (its config unreadable): the request's
    /// mode is the operator's word, so the steps are those from Detached (its
    /// directory is kept or renamed away, never read).
    fn place_unplaced(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        request: LocationRequest,
        reason: String,
    ) {
        if request.mode == RequestedMode::AttachedStale {
            let held = format!("broken ({reason})");
            let error = ManagerError::OutOfOrder {
                tenant,
                requested: "AttachedStale".into(),
                held,
                why: plan::STALE_NEVER_ACQUIRES,
            };
            let result = Err(error);
            return self.effects.push_back(ManagerEffect::Reply { req, tenant, result });
        }
        let (kind, steps) = plan_unplaced(request, self.next_dir());
        let op = Operation {
            unplaced: Some(reason),
            ..Operation::new(kind, req, Placement::Detached, request.mode, None, steps)
        };
        self.start_operation(tenant, op);
    }

    /// Create the tenant: `CheckRemote`, then as an attach in AttachedSingle. Refused
    /// with `AlreadyExists` when the node has a slot for it (`Busy` while one is in
    /// progress).
    pub fn handle_create_tenant(&mut self, _now: Instant, req: RequestId, tenant: TenantId) {
        let error = match self.slots.get(&tenant) {
            Some(Slot::InProgress(op)) => {
                self.busy_refusals += 1;
                ManagerError::Busy { tenant, kind: op.kind }
            }
            Some(Slot::Attached { .. } | Slot::Secondary { .. }) => {
                ManagerError::AlreadyExists(tenant)
            }
            Some(Slot::Broken { reason }) => {
                ManagerError::Broken { tenant, reason: reason.clone() }
            }
            None => {
                if let Some(error) = self.refuse_beyond_limit(tenant) {
                    let result = Err(error);
                    return self.effects.push_back(ManagerEffect::Reply { req, tenant, result });
                }
                let steps = [Step::CheckRemote, Step::AcquireGeneration { at_least: None }];
                let (from, target) = (Placement::Detached, RequestedMode::AttachedSingle);
                let op = Operation::new(OperationKind::Create, req, from, target, None, steps);
                self.start_operation(tenant, op);
                return;
            }
        };
        self.effects.push_back(ManagerEffect::Reply { req, tenant, result: Err(error) });
    }

    /// Delete the tenant: its deletion mark first (so any later start finishes the
    /// job), then every timeline, then as a detach. Only AttachedSingle deletes
    /// (S-DEL-GEN: every object goes through the validated deletion queue). The
    /// request is answered when the tenant is gone; meanwhile requests for it get
    /// `Busy`. A Broken attached tenant is refused: its machines are gone (a failed
    /// load, or a panic in one of them), so its timelines could not be deleted and
    /// the mark would be written for nothing; a location_config reloads it first.
    /// `broken`: as for [`TenantManager::handle_location_config`], the tenant
    /// machine's word.
    pub fn handle_delete_tenant(
        &mut self,
        _now: Instant,
        req: RequestId,
        tenant: TenantId,
        broken: Option<String>,
    ) {
        let error = match self.slots.get(&tenant) {
            Some(Slot::Attached { broken: Some(reason), .. }) => {
                Some(ManagerError::Broken { tenant, reason: reason.clone() })
            }
            Some(Slot::Attached { .. }) if broken.is_some() => {
                let reason = broken.unwrap_or_default();
                Some(ManagerError::Broken { tenant, reason })
            }
            Some(Slot::InProgress(op)) => {
                self.busy_refusals += 1;
                Some(ManagerError::Busy { tenant, kind: op.kind })
            }
            None => Some(ManagerError::NotFound(tenant)),
            Some(Slot::Broken { reason }) => {
                Some(ManagerError::Broken { tenant, reason: reason.clone() })
            }
            Some(Slot::Secondary { .. }) => {
                Some(ManagerError::NotSingle { tenant, mode: "Secondary".into() })
            }
            Some(Slot::Attached { mode: mode @ LocationMode::AttachedSingle { .. }, .. }) => {
                let from = Placement::Located(*mode);
                let steps = [
                    Step::PutDeletionMark,
                    Step::DeleteTimelines,
                    Step::StopTenant,
                    Step::FlushDeletions,
                    Step::ReleaseGeneration,
                    Step::RenameLocalDir { dir: self.next_dir() },
                    Step::RemoveLocalDir { dir: self.next_dir() },
                ];
                let (target, generation) = (RequestedMode::Detached, mode.generation());
                let op =
                    Operation::new(OperationKind::Delete, req, from, target, generation, steps);
                self.start_operation(tenant, op);
                None
            }
            Some(Slot::Attached { mode, .. }) => {
                Some(ManagerError::NotSingle { tenant, mode: format!("{mode:?}") })
            }
        };
        if let Some(error) = error {
            self.effects.push_back(ManagerEffect::Reply { req, tenant, result: Err(error) });
        }
    }

    /// The node finished the step in flight for `tenant`.
    pub fn handle_step_done(
        &mut self,
        _now: Instant,
        tenant: TenantId,
        result: Result<StepOutput, StepError>,
    ) -> Result<(), ManagerInputError> {
        // A settled slot stays: only an operation is taken out of its slot.
        let Some(Slot::InProgress(_)) = self.slots.get(&tenant) else {
            return Err(ManagerInputError::NoOperation(tenant));
        };
        let Some(Slot::InProgress(mut op)) = self.slots.remove(&tenant) else { unreachable!() };
        let Some(step) = op.current.take() else {
            self.slots.insert(tenant, Slot::InProgress(op));
            return Err(ManagerInputError::NoStepInFlight(tenant));
        };
        match result {
            Err(reason) => {
                self.fail(tenant, *op, &step, reason);
                Ok(())
            }
            Ok(StepOutput::Found(found)) if step == Step::CheckRemote => {
                if found.is_empty() {
                    self.after_step(tenant, op);
                } else {
                    // Nothing was changed: the slot stays as it was (none).
                    let error = ManagerError::ExistsRemotely { tenant, found };
                    self.answer(op.req, tenant, Err(error));
                }
                Ok(())
            }
            Ok(_) if step == Step::CheckRemote => {
                op.current = Some(step);
                self.slots.insert(tenant, Slot::InProgress(op));
                Err(ManagerInputError::MissingFound(tenant))
            }
            Ok(output) => {
                if let Step::AcquireGeneration { .. } = step {
                    let StepOutput::Generation(g) = output else {
                        // Refused as a driver bug: the step stays in flight, so its
                        // real completion still finds it (as for MissingFound).
                        op.current = Some(step);
                        self.slots.insert(tenant, Slot::InProgress(op));
                        return Err(ManagerInputError::MissingGeneration(tenant));
                    };
                    op.generation = Some(g);
                    let mode = with_generation(op.target, g).expect("attached target");
                    op.remaining.push_front(Step::LoadTenant { mode });
                    op.remaining.push_front(Step::WriteConfig { mode });
                }
                self.after_step(tenant, op);
                Ok(())
            }
        }
    }

    /// The number the next detach renames its directory to.
    fn next_dir(&self) -> DetachedDir {
        DetachedDir(self.detached_dirs + 1)
    }

    /// Puts `op` in the tenant's slot with its first step in flight; a rename in its
    /// plan takes the number [`TenantManager::next_dir`] gave it.
    fn start_operation(&mut self, tenant: TenantId, mut op: Operation) {
        if op.remaining.iter().any(|s| matches!(s, Step::RenameLocalDir { .. })) {
            self.detached_dirs += 1;
        }
        self.start_next(tenant, &mut op);
        self.slots.insert(tenant, Slot::InProgress(Box::new(op)));
    }

    fn start_next(&mut self, tenant: TenantId, op: &mut Operation) {
        if let Some(step) = op.remaining.pop_front() {
            op.current = Some(step.clone());
            self.effects.push_back(ManagerEffect::Step { tenant, step });
        }
    }

    fn after_step(&mut self, tenant: TenantId, mut op: Box<Operation>) {
        // The request is answered once the tenant is placed; a background step (the
        // directory removal after a detach) runs after the answer, with the slot gone.
        if let Some(&Step::RemoveLocalDir { dir }) = op.remaining.front() {
            op.remaining.clear();
            self.finish(tenant, &op);
            self.effects
                .push_back(ManagerEffect::Step { tenant, step: Step::RemoveLocalDir { dir } });
            return;
        }
        if op.remaining.is_empty() {
            return self.finish(tenant, &op);
        }
        self.start_next(tenant, &mut op);
        self.slots.insert(tenant, Slot::InProgress(op));
    }

    pub fn poll_effect(&mut self) -> Option<ManagerEffect> {
        self.effects.pop_front()
    }

    /// No timers: every step ends by a completion.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn slot(&self, tenant: TenantId) -> Option<&Slot> {
        self.slots.get(&tenant)
    }

    pub fn slots(&self) -> impl Iterator<Item = (&TenantId, &Slot)> {
        self.slots.iter()
    }

    pub fn busy_refusals(&self) -> u64 {
        self.busy_refusals
    }

    pub fn in_progress(&self) -> usize {
        self.slots.values().filter(|s| matches!(s, Slot::InProgress(_))).count()
    }
}
