//! Deleting timelines and tenants on a running node.
//!
//! - A timeline is deleted by its upload queue (tombstone, every object through the
//!   validated deletion queue, tombstone kept); the request is answered once the
//!   tombstone is durable. A deletion stopped by a mode change resumes when the
//!   tenant is AttachedSingle again; one interrupted by a crash resumes at start-up.
//! - A tenant is deleted by the tenant manager's `Delete` operation; its
//!   `DeleteTimelines` step is driven from here, and a tenant found with a deletion
//!   mark has its deletion started again once it is settled.
//!
//! See `docs/TENANTS.md`.

use super::api::{ApiError, RequestId, Response};
use super::tenant_machine::DeletePhase;
use super::{Lifecycle, Machine, Node, SlotState};
use crate::id::{TenantId, TimelineId};
use crate::location_conf::LocationMode;
use crate::tenant::{Slot, StepError, StepOutput, TenantState};

impl Node {
    /// Starts (or finds) the deletion of a timeline; `Ok(true)` when its tombstone is
    /// already durable.
    pub(crate) fn delete_timeline(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<bool, ApiError> {
        use crate::upload_queue::{DeletionPhase, QueueState};
        let (now, wall) = (self.now, self.wall);
        if let Some(reason) = self.tenants.get(&tenant).and_then(|t| t.unloadable.get(&timeline)) {
            // No machines to delete it with: restore the object, then reload the tenant.
            return Err(super::requests::broken_timeline_error(timeline, reason));
        }
        let slot = self
            .slot_mut(tenant, timeline)
            .ok_or_else(|| ApiError::NotFound(format!("timeline {tenant}/{timeline}")))?;
        match slot.state {
            SlotState::Deleting => {
                return match slot.upload.state() {
                    QueueState::Deleting(DeletionPhase::Tombstone) => Ok(false),
                    QueueState::Deleting(_) | QueueState::Deleted => Ok(true),
                    other => Err(ApiError::unavailable(format!(
                        "timeline {timeline}: its deletion is interrupted ({other:?}); it resumes in AttachedSingle"
                    ))),
                };
            }
            SlotState::Creating { .. } => {
                return Err(ApiError::unavailable(format!(
                    "timeline {timeline} is still being created"
                )));
            }
            SlotState::Active | SlotState::Broken(_) => {}
        }
        let started = self.with_machines(tenant, timeline, |slot| {
            slot.upload.handle_delete_timeline(now, wall)?;
            slot.state = SlotState::Deleting;
            // No more compaction, GC or eviction for a timeline being deleted.
            slot.timeline.handle_mode(now, false, false);
            Ok(())
        });
        let Some(started) = started else {
            // A handler panicked: the tenant is broken (`isolation.rs`).
            let broken = ApiError::Internal(format!("tenant {tenant} is broken"));
            return Err(self.tenant_busy(tenant).unwrap_or(broken));
        };
        started.map_err(|e| match e {
            crate::upload_queue::UploadQueueError::NotSingle(mode) => ApiError::Conflict(format!(
                "timeline {timeline} cannot be deleted in {mode:?} mode: only the single attached node deletes"
            )),
            other => ApiError::Internal(format!("deleting timeline {timeline}: {other}")),
        })?;
        self.dirty.insert(Machine::Upload(tenant, timeline));
        self.dirty.insert(Machine::Timeline(tenant, timeline));
        Ok(false)
    }

    /// Answers the DeleteTimeline requests waiting on this timeline.
    pub(crate) fn answer_deletion_waiters(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
        result: Result<Response, ApiError>,
    ) {
        let waiters =
            self.slot_mut(tenant, timeline).map(|s| std::mem::take(&mut s.deletion_waiters));
        for req in waiters.unwrap_or_default() {
            self.reply(req, result.clone());
        }
    }

    /// A timeline deletion stopped by a mode change resumes once its tenant is
    /// AttachedSingle again: a fresh upload queue recovers from the newest durable
    /// index (the tombstone, or the index before it if the tombstone never landed)
    /// and deletes again. It waits until no I/O of the stopped queue is in flight
    /// (the slot's `upload_in_flight`), so no completion of the old queue can reach
    /// the new one.
    pub(crate) fn resume_aborted_deletions(&mut self, t: TenantId) {
        let Some(tenant) = self.tenants.get(&t) else { return };
        let single = matches!(tenant.mode, LocationMode::AttachedSingle { .. });
        let pending: Vec<TimelineId> = tenant
            .timelines
            .iter()
            .filter(|(_, s)| s.deletion_aborted)
            .map(|(tl, _)| *tl)
            .collect();
        for tl in pending {
            let (now, wall, config) = (self.now, self.wall, self.config.upload.clone());
            let Some(slot) = self.slot_mut(t, tl) else { continue };
            let stopped = slot.state == SlotState::Deleting
                && *slot.upload.state() == crate::upload_queue::QueueState::Stopped;
            if !stopped {
                slot.deletion_aborted = false;
                continue;
            }
            if !single || slot.upload_in_flight > 0 {
                continue;
            }
            slot.deletion_aborted = false;
            let Some((version, index)) = slot.upload.durable_index().map(|(v, i)| (v, i.clone()))
            else {
                continue;
            };
            let generation = slot.upload.generation();
            let mut upload = crate::upload_queue::UploadQueue::recover(
                t,
                tl,
                generation,
                crate::upload_queue::AttachMode::Single,
                index,
                version,
                config,
            );
            let refused = upload.handle_delete_timeline(now, wall).err();
            slot.upload = upload;
            if let Some(e) = refused {
                let what = format!("resuming the deletion of {t}/{tl}");
                self.refused(super::RefusingMachine::UploadQueue, &what, &e);
            }
            tracing::info!(tenant = %t, timeline = %tl, "timeline deletion resumed");
            self.dirty.insert(Machine::Upload(t, tl));
        }
    }

    /// A tenant whose `DeleteTimelines` step runs: every timeline not yet being
    /// deleted starts its deletion (a timeline still being created waits for its
    /// first index); the step is done when none is left.
    pub(crate) fn advance_tenant_deletion(&mut self, tenant: TenantId) {
        let timelines: Vec<(TimelineId, bool)> = match self.tenants.get(&tenant) {
            Some(t) => t
                .timelines
                .iter()
                .map(|(tl, s)| (*tl, matches!(s.state, SlotState::Active | SlotState::Broken(_))))
                .collect(),
            None => Vec::new(),
        };
        if timelines.is_empty() {
            self.end_tenant_deletion_step(tenant, Ok(StepOutput::Done));
            return;
        }
        for (tl, startable) in timelines {
            if !startable {
                continue;
            }
            if let Err(e) = self.delete_timeline(tenant, tl) {
                let error = StepError::DeleteTimeline { timeline: tl, error: e };
                self.end_tenant_deletion_step(tenant, Err(error));
                break;
            }
        }
    }

    fn end_tenant_deletion_step(
        &mut self,
        tenant: TenantId,
        result: Result<StepOutput, StepError>,
    ) {
        if let Some(t) = self.tenants.get_mut(&tenant)
            && t.lifecycle == Lifecycle::Deleting(DeletePhase::Timelines)
        {
            t.lifecycle = Lifecycle::Active;
        }
        self.step_done(tenant, result);
    }

    /// Resumes the deletion of a tenant found with a deletion mark, once it is
    /// settled (start-up over, or its attach done).
    pub(crate) fn resume_marked_deletion(&mut self, tenant: TenantId) {
        if self.phase != super::NodePhase::Active || self.emergency.is_some() {
            return;
        }
        if !self.tenants.get(&tenant).is_some_and(|t| t.deletion_marked) {
            return;
        }
        match self.manager.slot(tenant) {
            Some(Slot::InProgress(_)) => return,
            Some(Slot::Attached { mode: LocationMode::AttachedSingle { .. }, broken: None })
                if self.tenant_state(tenant) == Some(TenantState::Active) =>
            {
                self.internal_requests += 1;
                let req = RequestId(u64::MAX - self.internal_requests);
                tracing::info!(%tenant, "resuming an interrupted tenant deletion");
                self.manager.handle_delete_tenant(self.now, req, tenant, None);
                self.dirty.insert(Machine::Manager);
            }
            _ => {
                tracing::warn!(%tenant, "tenant has a deletion mark but is not attached here in AttachedSingle; left as it is")
            }
        }
        if let Some(t) = self.tenants.get_mut(&tenant) {
            t.deletion_marked = false;
        }
    }
}
