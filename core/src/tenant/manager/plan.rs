//! The operation plans of the tenant manager: what a location_config request asks
//! for, the steps an operation runs, and the mode table ([`plan`]) that turns
//! (current placement, request) into those steps. Pure functions and data: the slot
//! table that runs the steps is in `manager.rs`.

use super::ManagerError;
use crate::control_plane::{CallFailure, RemoteTenantFound};
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::io_error::IoError;
use crate::location_conf::LocationMode;
use serde::{Deserialize, Serialize};

/// The mode a location_config request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestedMode {
    AttachedSingle,
    AttachedMulti,
    AttachedStale,
    Secondary { warm: bool },
    Detached,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationRequest {
    pub mode: RequestedMode,
    /// For attached modes: the generation the caller expects (older than held:
    /// refused; newer: the tenant restarts on a generation at least this one; `None`:
    /// keep the held one, or acquire one). For Secondary and Detached: the newest
    /// generation the caller means to demote (`None`: any); a node holding a newer
    /// one refuses, so a late demotion never undoes a later attach.
    pub generation: Option<Generation>,
    /// Attach only: a tenant already attached here at the generation asked for (or
    /// a newer one, which is refused as for any request) keeps its mode and the
    /// request is answered `Unchanged`. A migration attaches its destination this
    /// way, so that the call, delivered late after the destination was made
    /// AttachedSingle, cannot turn it back into AttachedMulti.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach_only: bool,
}

impl LocationRequest {
    /// A request for `mode` at `generation` (see the field docs), not attach-only.
    pub fn new(mode: RequestedMode, generation: Option<Generation>) -> Self {
        LocationRequest { mode, generation, attach_only: false }
    }
}

/// What the node does for one step of an operation. One step is in flight at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// List `tenants/{t}/` in remote storage (a create goes on only if it is empty);
    /// answered with [`StepOutput::Found`].
    CheckRemote,
    /// Ask the control plane to attach the tenant here; answered with the generation.
    AcquireGeneration { at_least: Option<Generation> },
    /// Tell the control plane this node no longer holds the tenant.
    ReleaseGeneration,
    /// Flush what was ingested (bounded by the shutdown grace period), then stop
    /// and drop the tenant's machines.
    StopTenant,
    /// Ask the deletion queue to validate and execute what it holds (advisory).
    FlushDeletions,
    /// Write `tenants/{t}/config-v1` durably.
    WriteConfig { mode: LocationMode },
    /// Start the tenant's machines in `mode` from remote storage (remote is the truth).
    LoadTenant { mode: LocationMode },
    /// Same generation, another attached mode: no restart.
    SetMode { mode: LocationMode },
    /// Rename `tenants/{t}` to its `.___detached` name `dir` (durable); the tenant
    /// is gone.
    RenameLocalDir { dir: DetachedDir },
    /// Remove the renamed directory `dir` (background; not awaited by the request).
    RemoveLocalDir { dir: DetachedDir },
    /// Put the tenant's deletion mark in remote storage (`timelines/deleted`): from
    /// now on every start or attach finishes the deletion.
    PutDeletionMark,
    /// Delete every timeline (each through its upload queue: tombstone, objects
    /// validated through the deletion queue, tombstone last); done when none is left.
    DeleteTimelines,
}

/// The number of a directory a detach renamed away (`tenants/{t}.___detached.{n}`),
/// chosen by the manager when it plans the detach: unique among the directories
/// renamed in this node run, so that a detach while an earlier one's directory is
/// still being removed never renames onto it. Start-up removes every leftover, so a
/// restart may number from 1 again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DetachedDir(pub u64);

/// What a finished step tells the manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutput {
    Done,
    Generation(Generation),
    /// What `CheckRemote` found.
    Found(RemoteTenantFound),
}

/// Why a step failed, as the node reports it to
/// [`TenantManager::handle_step_done`](super::TenantManager::handle_step_done). The
/// operation ends with [`ManagerError::StepFailed`] (or `RemoteCheckFailed`) naming it,
/// and a tenant left attached without machines keeps its text as the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A local or remote I/O of the step failed (the error names its path or key).
    #[error("{0}")]
    Io(IoError),
    /// The control plane gave no usable answer (unreachable, timeout, refused).
    #[error("{0}")]
    ControlPlane(CallFailure),
    /// S-GEN-MONO: the tenant's remote storage holds a generation this node's
    /// control plane never granted; the text names both.
    #[error("{0}")]
    GenerationConflict(String),
    /// Loading the tenant failed (its timelines could not be listed for good, a
    /// generation conflict, a handler panicked while it loaded).
    #[error("loading tenant {tenant} failed: {reason}")]
    LoadFailed { tenant: TenantId, reason: String },
    /// A handler of the tenant panicked while it stopped: what it had not flushed
    /// is gone, so the operation must not go on as if it had.
    #[error("the tenant broke while stopping: {reason}")]
    BrokeWhileStopping { reason: String },
    /// A timeline could not be deleted (`DeleteTimelines`).
    #[error("deleting timeline {timeline}: {error}")]
    DeleteTimeline { timeline: TimelineId, error: crate::node::api::ApiError },
    /// `LoadTenant` for a mode that is not attached (a bug in a plan).
    #[error("LoadTenant needs an attached mode, not {0:?}")]
    NotAttached(LocationMode),
    /// A completion of a kind the step never produces (a driver bug), as seen.
    #[error("unexpected completion: {0}")]
    Unexpected(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OperationKind {
    /// A tenant create: an attach in AttachedSingle over empty remote storage.
    Create,
    Attach,
    Restart,
    ChangeMode,
    ToSecondary,
    Detach,
    Delete,
    /// A start-up load (`manager/load.rs`): answers no request.
    Load,
}

/// Where a tenant stands (or will stand) on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    Detached,
    Located(LocationMode),
}

/// The planned steps of a change, or why none are needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Unchanged(Placement),
    Run { kind: OperationKind, steps: Vec<Step>, keep_generation: Option<Generation> },
}

/// The attached mode `mode` names, on `generation`; `None` for Secondary and Detached.
pub(crate) fn with_generation(mode: RequestedMode, generation: Generation) -> Option<LocationMode> {
    match mode {
        RequestedMode::AttachedSingle => Some(LocationMode::AttachedSingle { generation }),
        RequestedMode::AttachedMulti => Some(LocationMode::AttachedMulti { generation }),
        RequestedMode::AttachedStale => Some(LocationMode::AttachedStale { generation }),
        RequestedMode::Secondary { .. } | RequestedMode::Detached => None,
    }
}

/// The inverse of [`with_generation`]: the request that names attached `mode`;
/// `None` for Secondary.
pub(super) fn requested_of(mode: LocationMode) -> Option<RequestedMode> {
    match mode {
        LocationMode::AttachedSingle { .. } => Some(RequestedMode::AttachedSingle),
        LocationMode::AttachedMulti { .. } => Some(RequestedMode::AttachedMulti),
        LocationMode::AttachedStale { .. } => Some(RequestedMode::AttachedStale),
        LocationMode::Secondary { .. } => None,
    }
}

/// The steps from a `Broken` slot (config unreadable): the request names the mode,
/// so nothing is guessed. Attaching acquires a new generation (the control plane may
/// still hold one for this node: it is superseded); detaching releases it.
pub(super) fn plan_unplaced(
    request: LocationRequest,
    dir: DetachedDir,
) -> (OperationKind, Vec<Step>) {
    match request.mode {
        RequestedMode::AttachedSingle
        | RequestedMode::AttachedMulti
        | RequestedMode::AttachedStale => {
            (OperationKind::Attach, vec![Step::AcquireGeneration { at_least: request.generation }])
        }
        RequestedMode::Secondary { warm } => (
            OperationKind::ToSecondary,
            vec![Step::WriteConfig { mode: LocationMode::Secondary { warm } }],
        ),
        RequestedMode::Detached => (
            OperationKind::Detach,
            vec![
                Step::ReleaseGeneration,
                Step::RenameLocalDir { dir },
                Step::RemoveLocalDir { dir },
            ],
        ),
    }
}

/// The refusal of a request that can only be late or reordered.
fn out_of_order(
    tenant: TenantId,
    request: LocationRequest,
    held: Placement,
    why: &'static str,
) -> ManagerError {
    let held = match held {
        Placement::Located(m) => format!("holding {m:?}"),
        Placement::Detached => "not holding it".to_string(),
    };
    let requested = match request.generation {
        Some(g) => format!("{:?} at {g}", request.mode),
        None => format!("{:?}", request.mode),
    };
    ManagerError::OutOfOrder { tenant, requested, held, why }
}

/// `AttachedStale` marks an attachment that is being replaced: it never takes a
/// new generation. A request for it that would is late (the node no longer holds
/// the generation it names) and would otherwise attach the tenant anew and take
/// it from its new holder.
pub(super) const STALE_NEVER_ACQUIRES: &str =
    "AttachedStale only marks the generation held here; it never takes a new one";

fn acquires(steps: &[Step]) -> bool {
    steps.iter().any(|s| matches!(s, Step::AcquireGeneration { .. }))
}

fn is_attached(mode: RequestedMode) -> bool {
    matches!(
        mode,
        RequestedMode::AttachedSingle | RequestedMode::AttachedMulti | RequestedMode::AttachedStale
    )
}

/// The mode table (see the module doc). `current` is the slot when it is not in
/// progress; `healthy` is false for a Broken attached tenant; `dir` is the number a
/// detach renames the tenant's directory to.
pub fn plan(
    tenant: TenantId,
    current: Placement,
    healthy: bool,
    request: LocationRequest,
    dir: DetachedDir,
) -> Result<Plan, ManagerError> {
    let plan = plan_steps(tenant, current, healthy, request, dir)?;
    if let Plan::Run { steps, .. } = &plan
        && request.mode == RequestedMode::AttachedStale
        && acquires(steps)
    {
        return Err(out_of_order(tenant, request, current, STALE_NEVER_ACQUIRES));
    }
    Ok(plan)
}

fn plan_steps(
    tenant: TenantId,
    current: Placement,
    healthy: bool,
    request: LocationRequest,
    dir: DetachedDir,
) -> Result<Plan, ManagerError> {
    use LocationMode as L;
    use RequestedMode as R;
    let held = match current {
        Placement::Located(m) => m.generation(),
        Placement::Detached => None,
    };
    // WriteConfig and LoadTenant follow once the generation is known.
    let load = |at_least: Option<Generation>| vec![Step::AcquireGeneration { at_least }];
    let leave = vec![Step::StopTenant, Step::FlushDeletions, Step::ReleaseGeneration];
    if let (Some(held), Some(requested)) = (held, request.generation)
        && !is_attached(request.mode)
        && requested < held
    {
        // A demotion meant for an older attachment than the one held here.
        return Err(ManagerError::StaleGeneration { tenant, requested, held });
    }
    Ok(match (current, request.mode) {
        // Attached → attached.
        (
            Placement::Located(
                m @ (L::AttachedSingle { .. } | L::AttachedMulti { .. } | L::AttachedStale { .. }),
            ),
            r,
        ) if is_attached(r) => {
            let held = held.expect("attached modes carry a generation");
            plan_attached(tenant, m, held, healthy, request)?
        }
        // Not attached → attached.
        (Placement::Detached | Placement::Located(L::Secondary { .. }), r) if is_attached(r) => {
            Plan::Run {
                kind: OperationKind::Attach,
                steps: load(request.generation),
                keep_generation: None,
            }
        }
        (Placement::Located(L::Secondary { warm }), R::Secondary { warm: w }) => {
            if warm == w {
                Plan::Unchanged(current)
            } else {
                let steps = vec![Step::WriteConfig { mode: L::Secondary { warm: w } }];
                Plan::Run { kind: OperationKind::ToSecondary, steps, keep_generation: None }
            }
        }
        (Placement::Detached, R::Secondary { warm }) => {
            let steps = vec![Step::WriteConfig { mode: L::Secondary { warm } }];
            Plan::Run { kind: OperationKind::ToSecondary, steps, keep_generation: None }
        }
        (Placement::Located(_), R::Secondary { warm }) => {
            let mut steps = leave;
            steps.push(Step::WriteConfig { mode: L::Secondary { warm } });
            Plan::Run { kind: OperationKind::ToSecondary, steps, keep_generation: None }
        }
        (Placement::Detached, R::Detached) => Plan::Unchanged(current),
        (Placement::Located(L::Secondary { .. }), R::Detached) => {
            let steps = vec![Step::RenameLocalDir { dir }, Step::RemoveLocalDir { dir }];
            Plan::Run { kind: OperationKind::Detach, steps, keep_generation: None }
        }
        (Placement::Located(_), R::Detached) => {
            let mut steps = leave;
            steps.extend([Step::RenameLocalDir { dir }, Step::RemoveLocalDir { dir }]);
            Plan::Run { kind: OperationKind::Detach, steps, keep_generation: None }
        }
        (_, R::AttachedSingle | R::AttachedMulti | R::AttachedStale) => {
            unreachable!("attached requests are matched above")
        }
    })
}

/// Attached (mode `m` at generation `held`) → an attached mode: refused when the
/// request names an older generation, a restart when it names a newer one (or the
/// tenant is Broken), otherwise a mode change within the generation.
fn plan_attached(
    tenant: TenantId,
    m: LocationMode,
    held: Generation,
    healthy: bool,
    request: LocationRequest,
) -> Result<Plan, ManagerError> {
    let current = Placement::Located(m);
    // WriteConfig and LoadTenant follow once the generation is known.
    let restart = |at_least: Option<Generation>| Plan::Run {
        kind: OperationKind::Restart,
        steps: vec![Step::StopTenant, Step::AcquireGeneration { at_least }],
        keep_generation: None,
    };
    Ok(match request.generation {
        Some(g) if g < held => {
            return Err(ManagerError::StaleGeneration { tenant, requested: g, held });
        }
        Some(g) if g > held => restart(Some(g)),
        // A Broken tenant restarts on a new generation: whatever step broke it,
        // the control plane may no longer hold the old one.
        _ if !healthy => restart(None),
        _ => {
            let target = with_generation(request.mode, held).expect("attached");
            if target == m || request.attach_only {
                // `attach_only`: already attached at the generation asked for; an
                // attach that arrives after a later mode change must not undo it.
                Plan::Unchanged(current)
            } else {
                let steps =
                    vec![Step::WriteConfig { mode: target }, Step::SetMode { mode: target }];
                Plan::Run { kind: OperationKind::ChangeMode, steps, keep_generation: Some(held) }
            }
        }
    })
}
