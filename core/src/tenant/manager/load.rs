//! A start-up load ([`OperationKind::Load`]): the one way a tenant start-up found
//! (on disk, named by re-attach, or in emergency mode by its config alone) gets
//! its machines. Start-up decides which tenants load and in which mode; the
//! manager runs each as an operation of one step, `LoadTenant`, like the last step
//! of an attach, so the tenant's slot says `InProgress` while it loads and no
//! request can change it meanwhile.
//!
//! It ends as any operation does ([`TenantManager::finish`],
//! [`TenantManager::fail`]): loaded, the slot is `Attached { mode }`; failed (its
//! timelines could not be listed for good, a generation conflict, a panic while it
//! loaded), `Attached { mode, broken: Some(reason) }`, which a location_config
//! repairs. A load answers no request: start-up asked, not a caller.

use super::plan::requested_of;
use super::{ManagerInputError, Operation, OperationKind, Placement, Slot, Step, TenantManager};
use crate::id::TenantId;
use crate::location_conf::LocationMode;
use crate::time::Instant;

impl TenantManager {
    /// Start-up loads `tenant` in `mode` (an attached mode, with the generation
    /// re-attach granted or, in emergency mode, the one its config names). A slot
    /// start-up left for it (a previous start's, when the node leaves emergency mode)
    /// is replaced. Refused while an operation runs on it, and for a mode without a
    /// generation: start-up never asks either.
    pub fn handle_load(
        &mut self,
        _now: Instant,
        tenant: TenantId,
        mode: LocationMode,
    ) -> Result<(), ManagerInputError> {
        let (Some(generation), Some(target)) = (mode.generation(), requested_of(mode)) else {
            return Err(ManagerInputError::LoadNotAttached { tenant, mode });
        };
        if let Some(Slot::InProgress(op)) = self.slots.get(&tenant) {
            return Err(ManagerInputError::LoadWhileBusy { tenant, kind: op.kind });
        }
        let op = Operation {
            kind: OperationKind::Load,
            req: None,
            from: Placement::Detached,
            target,
            generation: Some(generation),
            current: None,
            remaining: [Step::LoadTenant { mode }].into(),
            unplaced: None,
        };
        self.start_operation(tenant, op);
        self.loads += 1;
        Ok(())
    }

    /// Start-up loads still running (a count, not a scan: start-up asks after each
    /// of its I/Os).
    pub fn loads_in_progress(&self) -> usize {
        self.loads
    }

    /// A load ended (loaded or failed).
    pub(super) fn load_ended(&mut self, op: &Operation) {
        if op.kind == OperationKind::Load {
            self.loads -= 1;
        }
    }
}
