//! Inputs as data: every input of the tenant manager as one [`ManagerInput`]
//! value, and one entry point, [`TenantManager::handle`], that dispatches to the
//! `handle_*` methods (they stay: the node calls them by name). A fuzz target or a
//! property test drives the manager through `handle` alone.

use super::{
    LocationRequest, ManagerError, ManagerInputError, Slot, StepError, StepOutput, TenantManager,
};
use crate::id::TenantId;
use crate::location_conf::LocationMode;
use crate::node::api::RequestId;
use crate::time::Instant;

/// One input of the tenant manager; each variant names the `handle_*` method it
/// stands for. No `Arbitrary` derive: `TenantId`, `Slot` and `LocationRequest` do
/// not implement it. The manager has no timers, so no timer input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagerInput {
    /// `handle_settled`: a settled slot from start-up or a create.
    Settled { tenant: TenantId, slot: Slot },
    /// `handle_location_config`; `broken` is the tenant machine's word (see there).
    LocationConfig {
        req: RequestId,
        tenant: TenantId,
        request: LocationRequest,
        broken: Option<String>,
    },
    /// `handle_create_tenant`.
    CreateTenant { req: RequestId, tenant: TenantId },
    /// `handle_delete_tenant`; `broken` as for `LocationConfig`.
    DeleteTenant { req: RequestId, tenant: TenantId, broken: Option<String> },
    /// `handle_load`: start-up loads `tenant` in `mode`.
    Load { tenant: TenantId, mode: LocationMode },
    /// `handle_step_done`: the step in flight for `tenant` finished.
    StepDone { tenant: TenantId, result: Result<StepOutput, StepError> },
}

/// An illegal input to [`TenantManager::handle`]: the error of the `handle_*`
/// method it stands for. A request refused to its caller (busy, stale, …) is not
/// one: it is answered with a `Reply` effect, as the `handle_*` method does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagerHandleError {
    /// A settled slot offered while an operation runs (`handle_settled`).
    #[error(transparent)]
    Refused(#[from] ManagerError),
    /// A completion that fits nothing (`handle_step_done`).
    #[error(transparent)]
    Input(#[from] ManagerInputError),
}

impl TenantManager {
    /// Feeds one input; an illegal one is an `Err`, exactly as the `handle_*`
    /// method it stands for answers it.
    pub fn handle(&mut self, now: Instant, input: ManagerInput) -> Result<(), ManagerHandleError> {
        match input {
            ManagerInput::Settled { tenant, slot } => self.handle_settled(now, tenant, slot)?,
            ManagerInput::LocationConfig { req, tenant, request, broken } => {
                self.handle_location_config(now, req, tenant, request, broken)
            }
            ManagerInput::CreateTenant { req, tenant } => {
                self.handle_create_tenant(now, req, tenant)
            }
            ManagerInput::DeleteTenant { req, tenant, broken } => {
                self.handle_delete_tenant(now, req, tenant, broken)
            }
            ManagerInput::Load { tenant, mode } => self.handle_load(now, tenant, mode)?,
            ManagerInput::StepDone { tenant, result } => {
                self.handle_step_done(now, tenant, result)?
            }
        }
        Ok(())
    }
}
