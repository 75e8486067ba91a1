//! Tenants on a node: the lifecycle of one attached tenant ([`lifecycle`]) and the
//! tenant manager over the node's map of tenant slots ([`manager`]). See
//! `docs/TENANTS.md` for the state diagram and the location_config mode table.

pub mod lifecycle;
pub mod manager;
#[cfg(any(test, feature = "fuzzing"))]
pub mod manager_world;

pub use lifecycle::{IllegalTransition, TenantEvent, TenantState};
pub use manager::{
    DetachedDir, LocationOutcome, LocationRequest, ManagerEffect, ManagerError, ManagerHandleError,
    ManagerInput, ManagerInputError, OperationKind, Placement, RequestedMode, Slot, Step,
    StepError, StepOutput, TenantManager, plan,
};

#[cfg(test)]
mod tests;
