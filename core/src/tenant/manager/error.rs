//! The manager's errors: what a request is answered with when it cannot be carried
//! out ([`ManagerError`]), and what an input the manager cannot accept is
//! ([`ManagerInputError`]: the node routed something the manager did not ask for).

use super::{OperationKind, StepError};
use crate::control_plane::RemoteTenantFound;
use crate::generation::Generation;
use crate::id::TenantId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    #[error("tenant {tenant} is busy ({kind:?} in progress); retry")]
    Busy { tenant: TenantId, kind: OperationKind },
    #[error("tenant {tenant}: generation {requested} is older than the held {held}")]
    StaleGeneration { tenant: TenantId, requested: Generation, held: Generation },
    /// Conflict: a request that can only be late or reordered (see the mode table
    /// in `manager.rs`): an `AttachedStale` that would take a new generation.
    #[error("tenant {tenant}: {requested} refused while {held}: {why}")]
    OutOfOrder { tenant: TenantId, requested: String, held: String, why: &'static str },
    /// Retryable: the node holds its bound of tenants (`limits.max_tenants`).
    #[error(
        "tenant {tenant}: this node holds {held} tenants, its limit is {limit}; place it elsewhere or retry"
    )]
    TooManyTenants { tenant: TenantId, held: usize, limit: usize },
    #[error("tenant {tenant}: step {step} failed: {reason}")]
    StepFailed { tenant: TenantId, step: String, reason: StepError },
    #[error("tenant {tenant}: node is not accepting changes: {reason}")]
    NotAccepting { tenant: TenantId, reason: String },
    #[error("tenant {0} is not attached to this node")]
    NotFound(TenantId),
    #[error("tenant {tenant} can only be deleted by its single attached node (it is {mode})")]
    NotSingle { tenant: TenantId, mode: String },
    #[error("tenant {tenant} is broken: {reason}; place it with a location_config naming its mode")]
    Broken { tenant: TenantId, reason: String },
    /// Conflict: a create of a tenant this node already has.
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantId),
    /// Conflict: a create found the tenant in remote storage; creating it would hide
    /// what is there. Attaching it loads it.
    #[error(
        "tenant {tenant} exists in remote storage ({found}); a create would hide it: attach it with PUT /v1/tenant/{tenant}/location_config {{\"mode\":\"AttachedSingle\"}}"
    )]
    ExistsRemotely { tenant: TenantId, found: RemoteTenantFound },
    /// Retryable: a create could not list the tenant's remote storage.
    #[error("tenant {tenant}: looking in remote storage failed ({reason}); retry")]
    RemoteCheckFailed { tenant: TenantId, reason: StepError },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagerInputError {
    #[error("no operation in progress for tenant {0}")]
    NoOperation(TenantId),
    #[error("tenant {0}: a step completion arrived with no step in flight")]
    NoStepInFlight(TenantId),
    #[error("tenant {0}: AcquireGeneration finished without a generation")]
    MissingGeneration(TenantId),
    #[error("tenant {0}: CheckRemote finished without saying what it found")]
    MissingFound(TenantId),
    /// Start-up asked to load a tenant in a mode that runs no machines.
    #[error("tenant {tenant}: a start-up load in {mode:?}, which is not attached")]
    LoadNotAttached { tenant: TenantId, mode: crate::location_conf::LocationMode },
    /// Start-up asked to load a tenant an operation is running on.
    #[error("tenant {tenant}: a start-up load while {kind:?} is in progress")]
    LoadWhileBusy { tenant: TenantId, kind: OperationKind },
}
