//! How an operation ends: placed as its target ([`TenantManager::finish`]), or
//! failed at a step ([`TenantManager::fail`]), and the answer to its request.

use super::{
    LocationOutcome, ManagerEffect, ManagerError, Operation, OperationKind, Placement,
    RequestedMode, Slot, Step, StepError, TenantManager, with_generation,
};
use crate::id::TenantId;
use crate::location_conf::LocationMode;
use crate::node::api::RequestId;

impl TenantManager {
    pub(super) fn finish(&mut self, tenant: TenantId, op: &Operation) {
        self.load_ended(op);
        let placement = match op.target {
            RequestedMode::Detached => Placement::Detached,
            RequestedMode::Secondary { warm } => {
                self.slots.insert(tenant, Slot::secondary(warm));
                Placement::Located(LocationMode::Secondary { warm })
            }
            attached => {
                let g = op.generation.expect("an attached target has its generation by now");
                let mode = with_generation(attached, g).expect("attached");
                self.slots.insert(tenant, Slot::Attached { mode, broken: None });
                Placement::Located(mode)
            }
        };
        let outcome = match op.kind {
            OperationKind::Create => LocationOutcome::Created(placement),
            _ => LocationOutcome::Changed(placement),
        };
        self.answer(op.req, tenant, Ok(outcome));
    }

    /// A step failed: the operation ends and is answered with the error. The node
    /// never leaves machines running behind a failed step (a failed `LoadTenant`
    /// stops what it started), so the slot says only what the tenant is now:
    /// - nothing was changed yet (the generation was not acquired, the mode change's
    ///   config was not written, nothing was stopped): the slot is as before;
    /// - otherwise the tenant is `Broken` in the newest mode it may have on disk; a
    ///   later location_config repairs it (a Broken tenant is reloaded even when the
    ///   request repeats its mode).
    pub(super) fn fail(&mut self, tenant: TenantId, op: Operation, step: &Step, reason: StepError) {
        self.load_ended(&op);
        let untouched_delete = op.kind == OperationKind::Delete && *step == Step::PutDeletionMark;
        let stopped_or_acquired = op.kind != OperationKind::ChangeMode
            && !untouched_delete
            && (op.generation.is_some()
                || matches!(op.from, Placement::Located(m) if m.generation().is_some()));
        let broken = Some(reason.to_string());
        let slot = if stopped_or_acquired {
            let mode = match (op.generation.and_then(|g| with_generation(op.target, g)), op.from) {
                (Some(mode), _) => mode,
                (None, Placement::Located(mode)) => mode,
                (None, Placement::Detached) => unreachable!("checked above"),
            };
            match mode {
                LocationMode::Secondary { warm } => Some(Slot::secondary(warm)),
                mode => Some(Slot::Attached { mode, broken }),
            }
        } else {
            match op.from {
                Placement::Detached => op.unplaced.clone().map(|reason| Slot::Broken { reason }),
                Placement::Located(LocationMode::Secondary { warm }) => Some(Slot::secondary(warm)),
                Placement::Located(mode) => Some(Slot::Attached { mode, broken: None }),
            }
        };
        if let Some(slot) = slot {
            self.slots.insert(tenant, slot);
        }
        let error = match step {
            Step::CheckRemote => ManagerError::RemoteCheckFailed { tenant, reason },
            _ => ManagerError::StepFailed { tenant, step: format!("{step:?}"), reason },
        };
        self.answer(op.req, tenant, Err(error));
    }

    /// Answers the request an operation carries; a start-up load carries none.
    pub(super) fn answer(
        &mut self,
        req: Option<RequestId>,
        tenant: TenantId,
        result: Result<LocationOutcome, ManagerError>,
    ) {
        if let Some(req) = req {
            self.effects.push_back(ManagerEffect::Reply { req, tenant, result });
        }
    }
}
