//! Requests: what a client asks of an active node, and the shutdown sequence.
//!
//! - Create tenant: the tenant manager's `Create` operation (`location.rs`): it
//!   lists the tenant's remote storage and refuses (409, naming what it found) unless
//!   it is empty; then the in-process control plane attaches the tenant to this node
//!   (its first generation lies above anything in the tenant's remote storage), the
//!   `config-v1` is written durably, and the tenant is answered as created.
//! - Create timeline (`create.rs`): remote storage is looked at first, and a create
//!   never writes over what it finds (409) unless it is exactly what the create
//!   would make; then both machines start; the upload queue uploads the first index
//!   at once; the request is answered when a barrier behind it completes, so a
//!   timeline is never reported before it is durable remotely (S-ACTIVE-UPLOADED).
//! - Ingest, read, info: handed to the timeline; reads answer asynchronously.
//! - Shutdown: every timeline freezes and flushes; the node answers when every
//!   acknowledged LSN is visible (flushed, uploaded, validated) or when the grace
//!   period ends, whichever is first, and says which.

use super::api::{
    ApiError, BrokenTimeline, Request, RequestId, Response, TenantInfo, TenantLocation,
    TimelineInfo,
};
use super::{BrokenReason, Machine, Node, NodeEffect, NodePhase, SlotState, TimelineSlot};
use crate::id::{TenantId, TimelineId};
use crate::key::Key;
use crate::location_conf::LocationMode;
use crate::lsn::Lsn;
use crate::redo::IngestRecord;
use crate::tenant::{Placement, Slot, TenantState};
use crate::timeline::{IngestError, ReadError, ReadId};
use crate::upload_queue::AttachMode;

impl Node {
    /// Answers a request: refused at once unless the node is active (and, in
    /// emergency mode, unless it writes nothing remotely), else handed to the
    /// handler of its family.
    pub(crate) fn on_request(&mut self, req: RequestId, request: Request) {
        if let Some(refusal) = self.refuse_request(&request) {
            return self.reply(req, Err(refusal));
        }
        match request {
            Request::CreateTenant { tenant } => self.create_tenant(req, tenant),
            Request::DeleteTimeline { tenant, timeline } => {
                self.request_delete_timeline(req, tenant, timeline)
            }
            Request::DeleteTenant { tenant } => self.request_delete_tenant(req, tenant),
            Request::LocationConfig { tenant, request } => {
                self.location_config(req, tenant, request)
            }
            Request::CreateTimeline { tenant, timeline } => {
                self.request_create_timeline(req, tenant, timeline)
            }
            Request::Ingest { tenant, timeline, records } => {
                self.request_ingest(req, tenant, timeline, records)
            }
            Request::Read { tenant, timeline, key, lsn } => {
                self.request_read(req, tenant, timeline, key, lsn)
            }
            Request::TimelineInfo { tenant, timeline } => {
                self.request_timeline_info(req, tenant, timeline)
            }
            Request::ListTenants => {
                let tenants = self.list_tenants();
                self.reply(req, Ok(Response::Tenants(tenants)));
            }
            Request::TenantLocation { tenant } => {
                let location = self.tenant_location(tenant).map(Response::TenantLocation);
                self.reply(req, location);
            }
            Request::Shutdown => self.begin_shutdown(req),
        }
    }

    /// Why the node cannot take `request` now: it is not active, or it is in
    /// emergency mode and the request would need a generation or a remote write.
    fn refuse_request(&self, request: &Request) -> Option<ApiError> {
        match &self.phase {
            NodePhase::Active => {}
            NodePhase::Starting(phase) => {
                let why = format!("node is starting ({phase:?})");
                return Some(ApiError::unavailable(why));
            }
            NodePhase::ShuttingDown { .. } | NodePhase::Stopped | NodePhase::Failed(_) => {
                return Some(ApiError::ShuttingDown);
            }
        }
        if self.emergency.is_some()
            && matches!(
                request,
                Request::CreateTenant { .. }
                    | Request::CreateTimeline { .. }
                    | Request::DeleteTimeline { .. }
                    | Request::LocationConfig { .. }
                    | Request::DeleteTenant { .. }
            )
        {
            let why = "emergency mode: the control plane is unavailable, so no generation can be granted and nothing is written remotely; retry";
            return Some(ApiError::unavailable(why));
        }
        None
    }

    fn request_delete_timeline(&mut self, req: RequestId, tenant: TenantId, timeline: TimelineId) {
        if let Some(busy) = self.tenant_busy(tenant) {
            return self.reply(req, Err(busy));
        }
        match self.delete_timeline(tenant, timeline) {
            // Answered once the tombstone is durable: a crash before that
            // would lose the deletion, and the client would not know.
            Ok(false) => match self.slot_mut(tenant, timeline) {
                Some(slot) => slot.deletion_waiters.push(req),
                None => self.bug("a deletion started without its timeline's slot"),
            },
            Ok(true) => self.reply(req, Ok(Response::TimelineDeleting)),
            Err(e) => self.reply(req, Err(e)),
        }
    }

    fn request_delete_tenant(&mut self, req: RequestId, tenant: TenantId) {
        if let Some((timeline, reason)) =
            self.tenants.get(&tenant).and_then(|t| t.unloadable.iter().next())
        {
            // No machines could delete that timeline's objects: the deletion
            // would leave them behind its mark. Restore it first.
            let why = format!(
                "tenant {tenant} cannot be deleted while its timeline {timeline} is broken: {reason}"
            );
            return self.reply(req, Err(ApiError::Conflict(why)));
        }
        let broken = self.machines_broken(tenant);
        self.manager.handle_delete_tenant(self.now, req, tenant, broken);
        self.dirty.insert(Machine::Manager);
    }

    fn request_create_timeline(&mut self, req: RequestId, tenant: TenantId, timeline: TimelineId) {
        if let Some(busy) = self.tenant_busy(tenant) {
            return self.reply(req, Err(busy));
        }
        self.create_timeline(req, tenant, timeline)
    }

    fn request_ingest(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
        records: Vec<IngestRecord>,
    ) {
        let now = self.now;
        let active = self.active_slot(tenant, timeline).is_ok();
        let refused =
            if active { self.refuse_beyond_memory(tenant, timeline, &records) } else { None };
        let result = match self.active_slot(tenant, timeline).map(|_| ()) {
            Ok(()) if let Some(error) = refused => Err(error),
            Ok(()) => match self
                .with_machines(tenant, timeline, |slot| slot.timeline.handle_ingest(now, records))
            {
                Some(r) => r
                    .map(|o| Response::Ingested {
                        last_ingested_lsn: o.last_ingested_lsn,
                        applied: o.applied,
                        skipped: o.skipped,
                    })
                    .map_err(|e| ingest_error_to_api(&e)),
                // The handler panicked: the tenant is broken (`isolation.rs`).
                None => Err(self
                    .tenant_busy(tenant)
                    .unwrap_or_else(|| ApiError::Internal(format!("tenant {tenant} is broken")))),
            },
            Err(e) => Err(e),
        };
        self.dirty.insert(Machine::Timeline(tenant, timeline));
        self.reply(req, result);
    }

    fn request_read(
        &mut self,
        req: RequestId,
        tenant: TenantId,
        timeline: TimelineId,
        key: Key,
        lsn: Lsn,
    ) {
        let now = self.now;
        match self.readable_slot(tenant, timeline) {
            Ok(()) => {
                // Waiting before the call: a panic in it answers the read.
                if let Some(t) = self.tenants.get_mut(&tenant) {
                    t.reads.insert(req, (key, lsn));
                }
                self.with_machines(tenant, timeline, |slot| {
                    slot.timeline.handle_read(now, ReadId(req.0), key, lsn)
                });
                self.dirty.insert(Machine::Timeline(tenant, timeline));
            }
            Err(e) => self.reply(req, Err(e)),
        }
    }

    fn request_timeline_info(&mut self, req: RequestId, tenant: TenantId, timeline: TimelineId) {
        let result = match self.tenant_broken(tenant) {
            Some(broken) => Err(broken),
            None => self.timeline_info(tenant, timeline).map(Response::TimelineInfo),
        };
        self.reply(req, result);
    }

    /// Every tenant with machines, and every broken one (which has none), with why.
    fn list_tenants(&self) -> Vec<TenantInfo> {
        let mut tenants: std::collections::BTreeMap<TenantId, TenantInfo> = self
            .tenants
            .iter()
            .map(|(id, t)| {
                let reason = match &t.lifecycle {
                    crate::node::Lifecycle::Broken { reason } => Some(reason.clone()),
                    _ => None,
                };
                let info = TenantInfo {
                    tenant: *id,
                    generation: Some(t.generation),
                    state: t.state().label().to_string(),
                    reason,
                    timelines: t.timelines.keys().chain(t.unloadable.keys()).copied().collect(),
                    broken_timelines: t
                        .timelines
                        .iter()
                        .filter_map(|(tl, slot)| match &slot.state {
                            SlotState::Broken(reason) => Some((*tl, reason)),
                            _ => None,
                        })
                        .chain(t.unloadable.iter().map(|(tl, reason)| (*tl, reason)))
                        .map(|(timeline, reason)| BrokenTimeline {
                            timeline,
                            kind: reason.label().to_string(),
                            reason: reason.to_string(),
                        })
                        .collect(),
                };
                (*id, info)
            })
            .collect();
        for (id, slot) in self.manager.slots() {
            let (generation, reason) = match slot {
                Slot::Broken { reason } => (None, reason),
                Slot::Attached { mode, broken: Some(reason) } => (mode.generation(), reason),
                _ => continue,
            };
            tenants.entry(*id).or_insert_with(|| TenantInfo {
                tenant: *id,
                generation,
                state: TenantState::Broken { reason: reason.clone() }.label().to_string(),
                reason: Some(reason.clone()),
                timelines: Vec::new(),
                broken_timelines: Vec::new(),
            });
        }
        tenants.into_values().collect()
    }

    /// Where `tenant` stands here, with its timelines' LSNs (see
    /// [`Request::TenantLocation`]). A Broken slot is an error naming why.
    fn tenant_location(&self, tenant: TenantId) -> Result<TenantLocation, ApiError> {
        let placement = match self.manager.slot(tenant) {
            None => Placement::Detached,
            Some(Slot::InProgress(_) | Slot::Broken { .. }) => {
                let why = self.tenant_busy(tenant);
                return Err(why.unwrap_or_else(|| ApiError::unavailable("tenant is changing")));
            }
            Some(Slot::Attached { mode, .. }) => Placement::Located(*mode),
            Some(Slot::Secondary { warm, .. }) => {
                Placement::Located(LocationMode::Secondary { warm: *warm })
            }
        };
        let timelines = match self.tenants.get(&tenant) {
            Some(t) => {
                t.timelines.keys().filter_map(|tl| self.timeline_info(tenant, *tl).ok()).collect()
            }
            None => Vec::new(),
        };
        Ok(TenantLocation { tenant, placement, timelines })
    }

    /// Reads go where ingest goes, and also to a timeline Broken because its disk
    /// is full: its machines run and hold everything it acknowledged
    /// (`timeline/disk_full.rs`).
    fn readable_slot(&mut self, tenant: TenantId, timeline: TimelineId) -> Result<(), ApiError> {
        let refused = match self.active_slot(tenant, timeline) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let out_of_space = self.tenant_busy(tenant).is_none()
            && self.slot_mut(tenant, timeline).is_some_and(|s| {
                matches!(s.state, SlotState::Broken(BrokenReason::NoSpace { .. }))
            });
        if out_of_space { Ok(()) } else { Err(refused) }
    }

    fn active_slot(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<&mut TimelineSlot, ApiError> {
        if let Some(busy) = self.tenant_busy(tenant) {
            return Err(busy);
        }
        let t = self
            .tenants
            .get_mut(&tenant)
            .ok_or_else(|| ApiError::NotFound(format!("tenant {tenant}")))?;
        if let Some(reason) = t.unloadable.get(&timeline) {
            return Err(broken_timeline_error(timeline, reason));
        }
        let slot = t
            .timelines
            .get_mut(&timeline)
            .ok_or_else(|| ApiError::NotFound(format!("timeline {tenant}/{timeline}")))?;
        match &slot.state {
            SlotState::Active => Ok(slot),
            SlotState::Creating { .. } => {
                Err(ApiError::unavailable(format!("timeline {timeline} is not yet active")))
            }
            SlotState::Deleting => {
                Err(ApiError::NotFound(format!("timeline {tenant}/{timeline} is being deleted")))
            }
            SlotState::Broken(reason) => Err(broken_timeline_error(timeline, reason)),
        }
    }

    pub(crate) fn timeline_info(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<TimelineInfo, ApiError> {
        if let Some(broken) = self.tenant_broken(tenant) {
            return Err(broken);
        }
        let t = self
            .tenants
            .get(&tenant)
            .ok_or_else(|| ApiError::NotFound(format!("tenant {tenant}")))?;
        if let Some(reason) = t.unloadable.get(&timeline) {
            // No machines, so no LSNs to show: the reason is the answer.
            return Err(broken_timeline_error(timeline, reason));
        }
        let slot = t
            .timelines
            .get(&timeline)
            .ok_or_else(|| ApiError::NotFound(format!("timeline {tenant}/{timeline}")))?;
        let state = match &slot.state {
            SlotState::Creating { .. } => "Creating".to_string(),
            SlotState::Active => "Active".to_string(),
            SlotState::Deleting => "Deleting".to_string(),
            SlotState::Broken(reason) => format!("Broken: {reason}"),
        };
        Ok(TimelineInfo {
            tenant,
            timeline,
            state,
            generation: t.generation,
            last_ingested_lsn: slot.timeline.last_ingested_lsn(),
            disk_consistent_lsn: slot.timeline.disk_consistent_lsn(),
            remote_consistent_lsn_projected: slot.upload.projected_lsn(),
            remote_consistent_lsn_visible: slot.upload.visible_lsn(),
            layers: slot.upload.remote_layers().len(),
        })
    }

    fn create_tenant(&mut self, req: RequestId, tenant: TenantId) {
        if let Some(busy) = self.tenant_busy(tenant) {
            return self.reply(req, Err(busy));
        }
        if self.cp.record(tenant).is_some() && self.manager.slot(tenant).is_none() {
            // A tenant that existed (detached since, or deleted) is brought back by
            // attaching it, which loads what remote storage holds; creating it again
            // would hide its timelines behind an empty tenant.
            return self.reply(
                req,
                Err(ApiError::Conflict(format!(
                    "tenant {tenant} exists (the control plane knows it); attach it with location_config"
                ))),
            );
        }
        // The tenant manager looks in remote storage first (a create over what is
        // there would hide it), then attaches the tenant in AttachedSingle.
        self.manager.handle_create_tenant(self.now, req, tenant);
        self.dirty.insert(Machine::Manager);
    }

    pub(crate) fn on_barrier(&mut self, tenant: TenantId, timeline: TimelineId, ok: bool) {
        let Some(slot) = self.slot_mut(tenant, timeline) else { return };
        if let SlotState::Creating { req } = slot.state {
            if ok {
                slot.state = SlotState::Active;
                let info = self.timeline_info(tenant, timeline);
                if let Some(req) = req {
                    self.reply(req, info.map(Response::TimelineCreated));
                }
            } else {
                self.break_timeline(
                    tenant,
                    timeline,
                    "the first index upload did not complete".to_string(),
                );
            }
        }
    }

    fn begin_shutdown(&mut self, req: RequestId) {
        let now = self.now;
        let deadline = now.plus_millis(self.config.shutdown_grace_ms);
        self.phase = NodePhase::ShuttingDown { req, deadline };
        for (t, tl) in self.all_timelines() {
            self.with_machines(t, tl, |slot| {
                if slot.state == SlotState::Active {
                    slot.timeline.handle_flush(now);
                }
            });
            self.dirty.insert(Machine::Timeline(t, tl));
        }
        self.nudge_validation();
    }

    /// Asks the deletion queue to validate what it holds now (LSN updates included).
    pub(crate) fn nudge_validation(&mut self) {
        if let Some(dq) = &mut self.dq {
            dq.handle_flush_advisory(self.now);
            self.dirty.insert(Machine::DeletionQueue);
        }
    }

    /// Everything acknowledged is visible: flushed, uploaded, validated.
    pub(crate) fn all_visible(&self) -> bool {
        self.tenants
            .values()
            .flat_map(|t| t.timelines.values())
            .filter(|s| s.state == SlotState::Active)
            .all(|s| {
                let last = s.timeline.last_ingested_lsn();
                s.timeline.disk_consistent_lsn() == last
                    && s.upload.visible_lsn() == last
                    && s.upload.is_idle()
            })
    }

    /// Ends a shutdown once everything is visible.
    pub(crate) fn check_shutdown_progress(&mut self) {
        if let NodePhase::ShuttingDown { req, .. } = self.phase
            && self.all_visible()
        {
            // A tenant broken by a panic lost what it acknowledged above its visible
            // LSN: not a clean stop.
            let clean = self.broken_tenants().is_empty();
            self.finish_shutdown(req, clean);
        }
    }

    pub(crate) fn check_shutdown_deadline(&mut self) {
        if let NodePhase::ShuttingDown { req, deadline } = self.phase
            && self.now >= deadline
        {
            let clean = self.all_visible() && self.broken_tenants().is_empty();
            self.finish_shutdown(req, clean);
        }
    }

    fn finish_shutdown(&mut self, req: RequestId, clean: bool) {
        self.phase = NodePhase::Stopped;
        self.reply(req, Ok(Response::ShutdownComplete { clean }));
        let broken = self.broken_tenants();
        let reason = if clean {
            "shutdown: everything acknowledged is visible".to_string()
        } else if !broken.is_empty() {
            format!(
                "shutdown: tenants {broken:?} are broken (a handler panicked); what they acknowledged above their visible LSN is lost"
            )
        } else {
            "shutdown: grace period ended before everything was visible".to_string()
        };
        self.effects.push_back(NodeEffect::Stopped { clean, reason });
    }
}

pub(crate) fn attach_mode(mode: &LocationMode) -> AttachMode {
    match mode {
        LocationMode::AttachedSingle { .. } => AttachMode::Single,
        LocationMode::AttachedMulti { .. } => AttachMode::Multi,
        LocationMode::AttachedStale { .. } | LocationMode::Secondary { .. } => AttachMode::Stale,
    }
}

/// What a timeline's background work may do in a mode: (compact and evict, delete).
/// AttachedMulti compacts but deletes nothing (the other node's index may still
/// name the layers); Stale, emergency and Secondary do neither (S-SINGLE-WRITER).
pub(crate) fn background_gates(mode: &LocationMode) -> (bool, bool) {
    match mode {
        LocationMode::AttachedSingle { .. } => (true, true),
        LocationMode::AttachedMulti { .. } => (true, false),
        LocationMode::AttachedStale { .. } | LocationMode::Secondary { .. } => (false, false),
    }
}

pub(crate) fn ingest_error_to_api(e: &IngestError) -> ApiError {
    match e {
        IngestError::Backpressure { retry_after_ms }
        | IngestError::SizeUnknown { retry_after_ms, .. }
        | IngestError::NoSpace { retry_after_ms, .. } => {
            ApiError::Unavailable { reason: e.to_string(), retry_after_ms: *retry_after_ms }
        }
        IngestError::NotIncreasing { .. }
        | IngestError::InvalidRecord { .. }
        | IngestError::ValueTooLarge { .. }
        | IngestError::LsnOutOfRange { .. }
        | IngestError::KeyOutOfRange { .. } => ApiError::BadRequest(e.to_string()),
    }
}

pub(crate) fn read_error_to_api(e: &ReadError) -> ApiError {
    match e {
        ReadError::BelowGcCutoff { .. } | ReadError::KeyOutOfRange { .. } => {
            ApiError::BadRequest(e.to_string())
        }
        // Waiting longer, or a re-download, may help.
        ReadError::WaitTimeout { .. } | ReadError::LayerUnavailable { .. } => {
            ApiError::unavailable(e.to_string())
        }
        // Retrying cannot help: the timeline is Broken with the object named.
        ReadError::LayerCorrupt { .. } => ApiError::Internal(e.to_string()),
        ReadError::Redo(_) | ReadError::DuplicateReadId(_) => ApiError::Internal(e.to_string()),
    }
}

/// The answer for a request to a Broken timeline (500): why, named.
pub(crate) fn broken_timeline_error(timeline: TimelineId, reason: &BrokenReason) -> ApiError {
    ApiError::Internal(format!("timeline {timeline} is broken: {reason}"))
}
