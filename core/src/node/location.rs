//! Tenant slots on a running node: the [`TenantManager`]'s steps executed on the
//! node's machines and on the world.
//!
//! | step | what the node does | done when |
//! |---|---|---|
//! | `CheckRemote` | list `tenants/{t}/` in remote storage | the listing is back (a failed listing fails the create: 503, retry) |
//! | `AcquireGeneration` | list the tenant's remote storage; a generation above the control plane's latest grant fails the step (S-GEN-MONO); then in-process control plane: attach (floor = requested − 1) | the grant is durable |
//! | `ReleaseGeneration` | in-process control plane: detach | the change is durable |
//! | `StopTenant` | freeze and flush every timeline; then stop its upload queues | everything acknowledged is visible (or the shutdown grace period passed; at once for an AttachedStale tenant, which uploads nothing) **and** no I/O of the tenant is in flight (after `stop_drain_timeout_ms`: no local write; the rest is abandoned, `tenant_machine.rs`) |
//! | `FlushDeletions` | deletion queue `flush_advisory` | at once |
//! | `WriteConfig` | crash-safe write of `config-v1` | durable |
//! | `LoadTenant` | list remote timelines, select and read each index, reconcile local files, start the machines (start-up's per-tenant path) | every timeline runs; a failure drops what was started |
//! | `SetMode` | tell every upload queue and timeline the new mode | at once |
//! | `RenameLocalDir` | rename `tenants/{t}` to `tenants/{t}.___detached.{n}` | durable (a missing directory is fine) |
//! | `RemoveLocalDir` | remove that directory | not awaited: start-up removes leftovers |
//!
//! Requests for a tenant whose slot is in progress get `Unavailable` (503 +
//! Retry-After) at once; nothing waits on a tenant (S-NO-DEADLOCK).

use super::api::{ApiError, RequestId, Response};
use super::io::{self, Io, IoError, IoErrorKind, IoResult};
use super::routing::{CpWaiter, Route};
use super::startup::StartupIo;
use super::tenant_machine::{DeletePhase, StopPhase};
use super::{Lifecycle, Machine, Node, NodePhase, RefusingMachine, SlotState, Tenant};
use crate::control_plane::{CallFailure, CpRequest};
use crate::control_plane::{ControlPlaneError, ControlPlaneReply, summarize_tenant_listing};
use crate::id::{TenantId, TimelineId};
use crate::location_conf::{LocationConf, LocationMode};
use crate::remote_path::{self, RemoteKey};
use crate::tenant::{
    LocationOutcome, LocationRequest, ManagerEffect, ManagerError, Placement, Slot, Step,
    StepError, StepOutput, TenantEvent, TenantState,
};
use crate::trace::Direction;

/// How often a transient failure of the deletion mark's PUT is retried.
pub const MARK_ATTEMPTS: u32 = 10;

impl Node {
    pub(crate) fn location_config(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        request: LocationRequest,
    ) {
        if let Some(busy) = self.secondary_busy(tenant, request) {
            return self.reply(req, Err(busy));
        }
        let broken = self.machines_broken(tenant);
        self.manager.handle_location_config(self.now, req, tenant, request, broken);
        self.dirty.insert(Machine::Manager);
    }

    /// What the tenant machine says: why `tenant` is broken, if its machines were
    /// dropped after a panic (`isolation.rs`). The manager does not keep the
    /// lifecycle; requests that depend on it carry this answer.
    pub(crate) fn machines_broken(&self, tenant: TenantId) -> Option<String> {
        match self.tenants.get(&tenant).map(|t| &t.lifecycle) {
            Some(Lifecycle::Broken { reason }) => Some(reason.clone()),
            _ => None,
        }
    }

    /// A tenant's lifecycle state, from its owner: the tenant machine while it has
    /// one; the manager's slot for a tenant placed without machines (broken before
    /// it had them); `None` otherwise.
    pub(crate) fn tenant_state(&self, tenant: TenantId) -> Option<TenantState> {
        if let Some(t) = self.tenants.get(&tenant) {
            return Some(t.state());
        }
        match self.manager.slot(tenant) {
            Some(Slot::Attached { broken: Some(reason), .. }) => {
                Some(TenantState::Broken { reason: reason.clone() })
            }
            _ => None,
        }
    }

    /// A request that needs `tenant` settled: `Unavailable` while an operation runs;
    /// a broken tenant answers with why it is broken (nothing runs for it).
    pub(crate) fn tenant_busy(&self, tenant: TenantId) -> Option<ApiError> {
        if let Some(broken) = self.tenant_broken(tenant) {
            return Some(broken);
        }
        match self.manager.slot(tenant) {
            Some(Slot::InProgress(op)) => Some(ApiError::unavailable(format!(
                "tenant {tenant} is busy ({:?} in progress)",
                op.kind
            ))),
            _ => None,
        }
    }

    /// The error for a broken tenant, naming why: placed nowhere because its config
    /// is unreadable, or its machines dropped after a panic (`isolation.rs`) or a
    /// failed load.
    pub(crate) fn tenant_broken(&self, tenant: TenantId) -> Option<ApiError> {
        if let Some(Slot::Broken { reason }) = self.manager.slot(tenant) {
            let reason = reason.clone();
            return Some(manager_error_to_api(ManagerError::Broken { tenant, reason }));
        }
        match (self.machines_broken(tenant), self.tenant_state(tenant)) {
            (Some(reason), _) => Some(ApiError::Internal(format!(
                "tenant {tenant} is broken ({reason}); a location_config re-attaches it on a new generation, as does a restart"
            ))),
            // A failed load or a generation conflict: no machines; the reason says why.
            (None, Some(TenantState::Broken { reason })) => {
                Some(ApiError::Internal(format!("tenant {tenant} is broken: {reason}")))
            }
            _ => None,
        }
    }

    pub(crate) fn drain_manager(&mut self) {
        while let Some(effect) = self.manager.poll_effect() {
            self.trace_lazy("tenant_manager", None, Direction::Effect, || format!("{effect:?}"));
            match effect {
                ManagerEffect::Reply { req, tenant, result } => {
                    let result = match result {
                        Ok(LocationOutcome::Created(placement)) => match placement {
                            Placement::Located(mode) if mode.generation().is_some() => {
                                let generation = mode.generation().expect("checked");
                                Ok(Response::TenantCreated { tenant, generation })
                            }
                            other => Err(ApiError::Internal(format!(
                                "a create ended in {other:?}, not attached"
                            ))),
                        },
                        other => {
                            other.map(Response::LocationConfigured).map_err(manager_error_to_api)
                        }
                    };
                    self.reply(req, result);
                    // A warm Secondary slot settled by the operation gets its machine.
                    self.start_secondary(tenant);
                }
                ManagerEffect::Step { tenant, step } => self.run_step(tenant, step),
            }
        }
    }

    pub(crate) fn step_done(&mut self, tenant: TenantId, result: Result<StepOutput, StepError>) {
        if let Err(e) = self.manager.handle_step_done(self.now, tenant, result) {
            self.refused(RefusingMachine::TenantManager, "a step completion", &e);
        }
        self.dirty.insert(Machine::Manager);
    }

    fn run_step(&mut self, tenant: TenantId, step: Step) {
        match step {
            Step::CheckRemote => self.emit_io(
                Route::Manager { tenant },
                Io::RemoteList { prefix: remote_path::tenant_prefix(tenant) },
            ),
            Step::AcquireGeneration { at_least } => {
                if self.cp.record(tenant).is_some() {
                    // S-GEN-MONO: look before granting (see `on_generation_check`).
                    let prefix = remote_path::timelines_prefix(tenant);
                    self.emit_io(
                        Route::GenerationCheck { tenant, at_least },
                        Io::RemoteList { prefix },
                    );
                } else {
                    // A tenant the control plane does not know: it lists remote
                    // storage itself and grants above everything there.
                    self.acquire_generation(tenant, at_least);
                }
            }
            Step::ReleaseGeneration => {
                let node = self.config.node_id;
                self.cp_call(CpWaiter::Manager { tenant }, CpRequest::Detach { tenant, node });
            }
            Step::StopTenant => self.begin_stop_tenant(tenant),
            Step::FlushDeletions => {
                self.nudge_validation();
                self.step_done(tenant, Ok(StepOutput::Done));
            }
            Step::WriteConfig { mode } => {
                let tenant_conf = self
                    .startup
                    .configs
                    .get(&tenant)
                    .map(|c| c.tenant_conf.clone())
                    .unwrap_or_default();
                let conf = LocationConf { mode, tenant_conf };
                let bytes = conf.to_toml().into_bytes();
                self.startup.configs.insert(tenant, conf);
                self.emit_io(
                    Route::Manager { tenant },
                    Io::DiskWrite { path: io::location_conf_path(tenant), bytes },
                );
            }
            Step::LoadTenant { mode } => self.begin_load_tenant(tenant, mode),
            Step::SetMode { mode } => {
                self.set_tenant_mode(tenant, mode);
                self.step_done(tenant, Ok(StepOutput::Done));
            }
            Step::RenameLocalDir { dir } => {
                let to = io::detached_dir(tenant, dir.0);
                self.startup.configs.remove(&tenant);
                self.emit_io(
                    Route::Manager { tenant },
                    Io::DiskRename { from: io::tenant_dir(tenant), to },
                );
            }
            Step::PutDeletionMark => {
                if let Some(t) = self.tenants.get_mut(&tenant)
                    && t.lifecycle == Lifecycle::Active
                {
                    t.lifecycle = Lifecycle::Deleting(DeletePhase::Mark { attempts: 0 });
                }
                self.emit_io(
                    Route::Manager { tenant },
                    Io::RemotePut {
                        key: remote_path::tenant_deletion_mark_key(tenant),
                        bytes: Vec::new(),
                    },
                )
            }
            Step::DeleteTimelines => match self.tenants.get_mut(&tenant) {
                // Nothing runs for it: no timeline to delete.
                None => self.step_done(tenant, Ok(StepOutput::Done)),
                Some(t) => {
                    if t.lifecycle == Lifecycle::Active {
                        t.lifecycle = Lifecycle::Deleting(DeletePhase::Timelines);
                    }
                    self.touch_tenant(tenant);
                }
            },
            Step::RemoveLocalDir { dir } => {
                let path = io::detached_dir(tenant, dir.0);
                self.emit_io(Route::DetachedRemoved, Io::DiskRemoveDir { path });
            }
        }
    }

    fn acquire_generation(&mut self, tenant: TenantId, at_least: Option<crate::Generation>) {
        let node = self.config.node_id;
        let reported = at_least.and_then(|g| g.previous());
        self.cp_call(CpWaiter::Manager { tenant }, CpRequest::Attach { tenant, node, reported });
    }

    /// `AcquireGeneration`, after listing the tenant's remote storage: objects above
    /// the latest generation the control plane granted for it (to any node) were
    /// written under another control plane's grant. Granting now would let this node
    /// share that generation or load that attachment's data as its own (S-GEN-MONO):
    /// the step fails naming the generation found, and nothing is granted, so every
    /// later attempt finds it again.
    pub(crate) fn on_generation_check(
        &mut self,
        tenant: TenantId,
        at_least: Option<crate::Generation>,
        result: IoResult,
    ) {
        let entries = match result {
            IoResult::Listing(Ok(entries)) => entries,
            IoResult::Listing(Err(IoError { kind: IoErrorKind::NotFound, .. })) => Vec::new(),
            other => return self.step_done(tenant, Err(step_error(other))),
        };
        if let Some((_, reason)) = self.conflict_above_latest_grant(tenant, &entries) {
            return self.step_done(tenant, Err(StepError::GenerationConflict(reason)));
        }
        self.acquire_generation(tenant, at_least);
    }

    /// The completion of a step's I/O (remote listing, config write, rename, mark).
    pub(crate) fn on_manager_io(&mut self, tenant: TenantId, result: IoResult) {
        if let IoResult::Listing(listing) = result {
            let result = match listing {
                Ok(entries) => {
                    let keys: Vec<RemoteKey> = entries
                        .iter()
                        .filter_map(|e| RemoteKey::from_listing(&e.name).ok())
                        .collect();
                    Ok(StepOutput::Found(summarize_tenant_listing(tenant, &keys)))
                }
                Err(e) => Err(StepError::Io(e)),
            };
            return self.step_done(tenant, result);
        }
        if let IoResult::Done(Err(IoError {
            kind: IoErrorKind::Transient | IoErrorKind::OperatorFixable(_),
            message: why,
            ..
        })) = &result
            && let Some(Slot::InProgress(op)) = self.manager.slot(tenant)
            && op.current == Some(Step::PutDeletionMark)
            && let Some(t) = self.tenants.get_mut(&tenant)
            && let Lifecycle::Deleting(DeletePhase::Mark { attempts }) = t.lifecycle
            && attempts < MARK_ATTEMPTS
        {
            // Remote storage hiccuped: put the mark again.
            t.lifecycle = Lifecycle::Deleting(DeletePhase::Mark { attempts: attempts + 1 });
            tracing::warn!(%tenant, %why, "putting the deletion mark failed; retrying");
            return self.run_step(tenant, Step::PutDeletionMark);
        }
        if let Some(t) = self.tenants.get_mut(&tenant)
            && let Lifecycle::Deleting(DeletePhase::Mark { .. }) = t.lifecycle
        {
            t.lifecycle = Lifecycle::Active;
        }
        let result = match result {
            IoResult::Done(Ok(()))
            | IoResult::Done(Err(IoError { kind: IoErrorKind::NotFound, .. })) => {
                Ok(StepOutput::Done)
            }
            other => Err(step_error(other)),
        };
        self.step_done(tenant, result);
    }

    pub(crate) fn on_manager_cp_reply(
        &mut self,
        tenant: TenantId,
        reply: Result<ControlPlaneReply, CallFailure>,
    ) {
        let result = match reply {
            Ok(ControlPlaneReply::Attached { generation }) => {
                Ok(StepOutput::Generation(generation))
            }
            Ok(ControlPlaneReply::Detached) => Ok(StepOutput::Done),
            Err(CallFailure::Refused(ControlPlaneError::UnknownTenant(_))) => Ok(StepOutput::Done),
            Err(failure) => Err(StepError::ControlPlane(failure)),
            Ok(other) => Err(StepError::Unexpected(format!("control plane answered {other:?}"))),
        };
        self.step_done(tenant, result);
    }

    fn set_tenant_mode(&mut self, tenant: TenantId, mode: LocationMode) {
        let now = self.now;
        let (attach, (may_compact, may_delete)) =
            (super::requests::attach_mode(&mode), super::requests::background_gates(&mode));
        let Some(t) = self.tenants.get_mut(&tenant) else { return };
        t.mode = mode;
        if !attach.may_delete()
            && let Some(dq) = &mut self.dq
        {
            // Keys read back from disk at start-up have no upload queue to cancel
            // them: the deletion queue drops those it has not sent (S-SINGLE-WRITER).
            dq.handle_stop_deleting(now, tenant);
            self.dirty.insert(Machine::DeletionQueue);
        }
        if !attach.may_upload() {
            self.answer_creates_that_cannot_finish(tenant);
        }
        for tl in self.timelines_of(tenant) {
            self.with_machines(tenant, tl, |slot| {
                slot.upload.handle_mode_changed(now, attach);
                // A timeline broken by corruption runs no background work (see
                // `break_timeline`), whatever the mode.
                let corrupt = matches!(
                    slot.state,
                    super::SlotState::Broken(super::BrokenReason::Corrupt { .. })
                );
                slot.timeline.handle_mode(now, may_compact && !corrupt, may_delete && !corrupt);
            });
            self.dirty.insert(Machine::Upload(tenant, tl));
            self.dirty.insert(Machine::Timeline(tenant, tl));
        }
    }

    /// The tenant went to a mode that uploads nothing: a create still waiting for
    /// its timeline's first index would wait for good (the tenant world's seed
    /// c2ca9b2c: a create, then AttachedStale on the same generation). It is
    /// answered 503 now; the timeline becomes Active, unanswered, if uploads
    /// resume and the index lands, and a retried create then gets 201.
    fn answer_creates_that_cannot_finish(&mut self, tenant: TenantId) {
        let Some(t) = self.tenants.get_mut(&tenant) else { return };
        let mut answered = Vec::new();
        for (tl, slot) in t.timelines.iter_mut() {
            if let SlotState::Creating { req } = &mut slot.state
                && let Some(req) = req.take()
            {
                answered.push((*tl, req));
            }
        }
        for (tl, req) in answered {
            let why = format!(
                "tenant {tenant} stopped uploading (stale) before timeline {tl}'s first index was durable; retry"
            );
            self.reply(req, Err(ApiError::unavailable(why)));
        }
    }

    // ---- stop ----

    fn begin_stop_tenant(&mut self, tenant: TenantId) {
        let now = self.now;
        let Some(t) = self.tenants.get_mut(&tenant) else {
            // Nothing runs (a Broken tenant whose load failed): nothing to stop.
            return self.step_done(tenant, Ok(StepOutput::Done));
        };
        // A stale attachment uploads nothing (S-SINGLE-WRITER): nothing more can
        // become visible, so waiting for it would only spend the grace period (a
        // migration's origin demoted to Secondary). It stops at once.
        let grace_ms = match t.mode {
            LocationMode::AttachedStale { .. } => 0,
            _ => self.config.shutdown_grace_ms,
        };
        let deadline = now.plus_millis(grace_ms);
        t.begin_stop(deadline);
        for tl in self.timelines_of(tenant) {
            self.with_machines(tenant, tl, |slot| {
                if slot.state == SlotState::Active {
                    slot.timeline.handle_flush(now);
                }
            });
            self.dirty.insert(Machine::Timeline(tenant, tl));
        }
        self.touch_tenant(tenant);
        self.nudge_validation();
    }

    fn tenant_visible(&self, tenant: TenantId) -> bool {
        self.tenants.get(&tenant).is_none_or(|t| {
            t.timelines.values().filter(|s| s.state == SlotState::Active).all(|s| {
                let last = s.timeline.last_ingested_lsn();
                s.timeline.disk_consistent_lsn() == last
                    && s.upload.visible_lsn() == last
                    && s.upload.is_idle()
            })
        })
    }

    /// Advances a stopping tenant: once flushed (or out of time) its machines stop;
    /// once none of its ops is in flight, or the drain timeout passed and none of
    /// its local writes is, it is dropped and the step is done (`tenant_machine.rs`,
    /// Crash).
    pub(crate) fn advance_stop(&mut self, tenant: TenantId, phase: StopPhase) {
        let now = self.now;
        if let StopPhase::Flushing { deadline } = phase {
            let visible = self.tenant_visible(tenant);
            if !(visible || now >= deadline) {
                return;
            }
            if !visible {
                tracing::warn!(%tenant, "stopping: grace period ended before everything was visible");
            }
            self.stop_machines(tenant);
            match self.tenants.get_mut(&tenant) {
                Some(t) if t.is_stopping() => {
                    let until = now.plus_millis(self.config.stop_drain_timeout_ms);
                    t.lifecycle = Lifecycle::Stopping(StopPhase::Draining { until });
                }
                // A handler panicked while its machines stopped: `end_step_of_broken`.
                _ => return,
            }
        }
        let Some(t) = self.tenants.get_mut(&tenant) else { return };
        let out_of_time = match t.lifecycle {
            Lifecycle::Stopping(StopPhase::Draining { until }) => now >= until,
            Lifecycle::Stopping(StopPhase::LocalWrites) => true,
            _ => return,
        };
        if !t.local_writes.is_empty() {
            if out_of_time && t.lifecycle != Lifecycle::Stopping(StopPhase::LocalWrites) {
                let n = t.local_writes.len();
                tracing::warn!(%tenant, local_writes = n, "stopping: waiting for local writes past the drain timeout");
                t.lifecycle = Lifecycle::Stopping(StopPhase::LocalWrites);
            }
            return;
        }
        if !t.in_flight.is_empty() && !out_of_time {
            return;
        }
        // A create still waiting for its timeline's first index is answered here:
        // its upload queue's answer (the barrier failing at the stop) goes with the
        // machines when the tenant is dropped in the same input.
        let creating: Vec<(TimelineId, RequestId)> = t
            .timelines
            .iter()
            .filter_map(|(tl, slot)| match slot.state {
                SlotState::Creating { req: Some(req) } => Some((*tl, req)),
                _ => None,
            })
            .collect();
        let abandoned = t.in_flight.len();
        for (tl, req) in creating {
            let why =
                format!("tenant {tenant} stopped while timeline {tl} was being created; retry");
            self.reply(req, Err(ApiError::unavailable(why)));
        }
        if abandoned > 0 {
            tracing::warn!(%tenant, abandoned, "stopping: remote calls and reads still in flight are abandoned; their completions will be dropped");
            let what = format!("tenant {tenant} stopped with {abandoned} ops abandoned");
            self.trace_line("node", None, crate::trace::Direction::Effect, what);
        }
        self.uncount_tenant_memory(tenant);
        self.tenants.remove(&tenant);
        self.page_cache.invalidate_tenant(tenant);
        // A job still running (its reads abandoned) would hold its slot for good.
        self.forget_background_jobs(tenant, None);
        self.step_done(tenant, Ok(StepOutput::Done));
    }

    /// Stops a tenant's upload queues and answers its waiting reads.
    fn stop_machines(&mut self, tenant: TenantId) {
        let now = self.now;
        for tl in self.timelines_of(tenant) {
            self.with_machines(tenant, tl, |slot| {
                slot.upload.handle_stop(now);
                // Background work winds down too (a running job reports finished).
                slot.timeline.handle_mode(now, false, false);
            });
            self.dirty.insert(Machine::Upload(tenant, tl));
            self.dirty.insert(Machine::Timeline(tenant, tl));
        }
        for tl in self.timelines_of(tenant) {
            let why = format!("tenant {tenant} is stopping; retry the deletion");
            self.answer_deletion_waiters(tenant, tl, Err(ApiError::unavailable(why)));
        }
        let waiting = self.tenants.get_mut(&tenant).map(|t| std::mem::take(&mut t.reads));
        for req in waiting.unwrap_or_default().into_keys() {
            self.reply(req, Err(ApiError::unavailable(format!("tenant {tenant} is stopping"))));
        }
    }

    // ---- load ----

    fn begin_load_tenant(&mut self, tenant: TenantId, mode: LocationMode) {
        let Some(generation) = mode.generation() else {
            return self.step_done(tenant, Err(StepError::NotAttached(mode)));
        };
        self.uncount_tenant_memory(tenant); // machines it may still have are replaced
        // Start-up's loads (`OperationKind::Load`) come this way too.
        let lifecycle = match self.phase {
            NodePhase::Starting(_) => Lifecycle::Loading,
            _ => Lifecycle::Attaching,
        };
        let loading = Some(0);
        self.tenants.insert(tenant, Tenant { loading, ..Tenant::new(generation, mode, lifecycle) });
        self.startup_io(
            StartupIo::ListRemoteTimelines(tenant),
            Io::RemoteList { prefix: remote_path::timelines_prefix(tenant) },
        );
    }

    /// A tenant loaded after start-up has no I/O outstanding (the completion that
    /// brought its count to zero marked it, `on_startup_io`): it is active, or its
    /// load failed (start-up's per-tenant path removed it) and what started is dropped.
    pub(crate) fn finish_tenant_load(&mut self, tenant: TenantId) {
        let result = match self.tenants.get_mut(&tenant) {
            // A handler panicked while it loaded (`isolation.rs`).
            Some(t) if t.is_broken() => {
                t.loading = None;
                Err(StepError::LoadFailed { tenant, reason: format!("{:?}", t.state()) })
            }
            Some(t) => {
                t.loading = None;
                t.transition(TenantEvent::Loaded);
                t.transition(TenantEvent::Activated);
                Ok(StepOutput::Done)
            }
            // Dropped without its load ending (`load_failed` ends it): not expected.
            None => Err(StepError::LoadFailed { tenant, reason: "its machines are gone".into() }),
        };
        self.step_done(tenant, result);
        // The last of start-up's loads to end lets the node become active.
        if let NodePhase::Starting(_) = self.phase {
            self.startup_step_done();
        }
    }
}

/// A step's failed (or unexpected) I/O completion, typed.
fn step_error(result: IoResult) -> StepError {
    match result.failure() {
        Some(e) => StepError::Io(e.clone()),
        None => StepError::Unexpected(format!("{result:?}")),
    }
}

pub(crate) fn manager_error_to_api(e: ManagerError) -> ApiError {
    match e {
        ManagerError::Busy { .. } | ManagerError::NotAccepting { .. } => {
            ApiError::unavailable(e.to_string())
        }
        ManagerError::RemoteCheckFailed { .. } | ManagerError::TooManyTenants { .. } => {
            ApiError::unavailable(e.to_string())
        }
        ManagerError::StaleGeneration { .. }
        | ManagerError::OutOfOrder { .. }
        | ManagerError::NotSingle { .. }
        | ManagerError::AlreadyExists(_)
        | ManagerError::ExistsRemotely { .. } => ApiError::Conflict(e.to_string()),
        ManagerError::NotFound(_) => ApiError::NotFound(e.to_string()),
        ManagerError::StepFailed { .. } | ManagerError::Broken { .. } => {
            ApiError::Internal(e.to_string())
        }
    }
}
