//! The reconciler's data: records, phases, calls, effects, inputs, errors, events
//! and bounds (the machine is in `mod.rs`, its steps in `steps.rs`).

use super::super::RequestId;
use crate::generation::Generation;
use crate::id::{NodeId, OpId, TenantId, TimelineId};
use crate::io_error::IoError;
use crate::lsn::Lsn;
use crate::tenant::{LocationRequest, Placement};
use crate::time::Instant;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Migrations running at once; more are refused ([`MigrationError::TooMany`]).
pub const MAX_ACTIVE_MIGRATIONS: usize = 64;

/// Events kept per migration (the oldest are dropped).
pub const MAX_EVENTS_PER_MIGRATION: usize = 64;

/// The reconciler's named bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationConfig {
    /// A call without an answer after this long has failed. Generous: a node's
    /// `location_config` to Secondary waits for its tenant to stop.
    pub call_timeout_ms: u64,
    /// First retry delay; doubles per failure in a row, up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How often catch-up looks at the destination.
    pub catch_up_poll_ms: u64,
    /// Catch-up gives up waiting after this long and goes on (see the module doc).
    pub catch_up_timeout_ms: u64,
    /// An origin failing every call for this long in a phase is skipped.
    pub origin_give_up_ms: u64,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            call_timeout_ms: 60_000,
            backoff_base_ms: 200,
            backoff_max_ms: 5_000,
            catch_up_poll_ms: 250,
            catch_up_timeout_ms: 60_000,
            origin_give_up_ms: 30_000,
        }
    }
}

impl MigrationConfig {
    pub(super) fn backoff_ms(&self, failures: u32) -> u64 {
        let factor = 1u64.checked_shl(failures.saturating_sub(1).min(63)).unwrap_or(u64::MAX);
        self.backoff_base_ms.saturating_mul(factor).min(self.backoff_max_ms).max(1)
    }
}

/// What becomes of the origin once the destination caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginAfter {
    /// `Secondary { warm: true }`: it keeps (downloads) the layers, ready to take
    /// the tenant back quickly.
    SecondaryWarm,
    Detached,
}

/// A migration's durable phase (see the table in the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    AttachDestination,
    StaleOrigin { destination_generation: Generation },
    CatchUp { destination_generation: Generation, target: BTreeMap<TimelineId, Lsn> },
    DemoteOrigin { destination_generation: Generation },
    FinalizeDestination { destination_generation: Generation },
    Done { generation: Generation },
}

impl Phase {
    /// The phase's place in the order; phases only move forward.
    pub fn rank(&self) -> u8 {
        match self {
            Phase::AttachDestination => 0,
            Phase::StaleOrigin { .. } => 1,
            Phase::CatchUp { .. } => 2,
            Phase::DemoteOrigin { .. } => 3,
            Phase::FinalizeDestination { .. } => 4,
            Phase::Done { .. } => 5,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Phase::AttachDestination => "attach_destination",
            Phase::StaleOrigin { .. } => "stale_origin",
            Phase::CatchUp { .. } => "catch_up",
            Phase::DemoteOrigin { .. } => "demote_origin",
            Phase::FinalizeDestination { .. } => "finalize_destination",
            Phase::Done { .. } => "done",
        }
    }

    /// The generation the destination holds, once known.
    pub fn destination_generation(&self) -> Option<Generation> {
        match self {
            Phase::AttachDestination => None,
            Phase::StaleOrigin { destination_generation }
            | Phase::CatchUp { destination_generation, .. }
            | Phase::DemoteOrigin { destination_generation }
            | Phase::FinalizeDestination { destination_generation } => {
                Some(*destination_generation)
            }
            Phase::Done { generation } => Some(*generation),
        }
    }
}

/// One row of the store: a tenant's last migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    pub tenant: TenantId,
    pub origin: NodeId,
    /// The generation the origin held when the migration started.
    pub origin_generation: Generation,
    pub destination: NodeId,
    pub origin_after: OriginAfter,
    pub phase: Phase,
}

/// What a `Start` asks for. The driver fills `origin` and `origin_generation` from
/// the generation table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStart {
    pub tenant: TenantId,
    pub origin: NodeId,
    pub origin_generation: Generation,
    pub destination: NodeId,
    pub origin_after: OriginAfter,
}

/// A call to a node about one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeCall {
    /// The tenant's placement and per-timeline LSNs on the node.
    Status,
    /// `PUT /v1/tenant/{t}/location_config`.
    LocationConfig(LocationRequest),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineLsns {
    pub last_ingested: Lsn,
    pub visible: Lsn,
}

/// A node's answer to [`NodeCall::Status`]. A node that does not know the tenant
/// answers `Detached` with no timelines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTenantStatus {
    pub placement: Placement,
    pub timelines: BTreeMap<TimelineId, TimelineLsns>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeAnswer {
    /// To [`NodeCall::Status`].
    Status(NodeTenantStatus),
    /// To [`NodeCall::LocationConfig`]: where the tenant now stands.
    Placed(Placement),
}

/// Why a call to a node gave no usable answer. All are retried (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeCallError {
    /// The request never reached the node, or its answer was lost.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The node asked to retry (503: busy, starting, shutting down).
    #[error("node busy: {0}")]
    Busy(String),
    /// The node refused (4xx, 500): the message says why.
    #[error("node refused: {0}")]
    Refused(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrationEffect {
    /// Upsert the tenant's migration row; answer with `handle_persisted`.
    Persist { op: OpId, record: MigrationRecord },
    /// Carry one call; answer with `handle_node_answer`.
    Call { op: OpId, node: NodeId, tenant: TenantId, call: NodeCall },
    /// The answer to a `Start`: the durable record, or why it was refused.
    Reply { req: RequestId, result: Result<MigrationRecord, MigrationError> },
}

/// The closed set of the reconciler's timers; at most one per migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MigrationTimer {
    /// The call in flight of this tenant's migration had `call_timeout_ms`.
    CallDeadline(TenantId),
    /// A backoff ended: the failed step (or persist) runs again.
    Retry(TenantId),
    /// Catch-up looks at the destination again.
    Poll(TenantId),
}

/// Why a `Start` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    /// Conflict: one migration per tenant at a time.
    #[error("tenant {tenant} is already migrating (phase {phase})")]
    AlreadyMigrating { tenant: TenantId, phase: &'static str },
    /// Bad request: origin and destination are the same node.
    #[error("tenant {tenant} is already on {node}")]
    SameNode { tenant: TenantId, node: NodeId },
    /// Retryable: [`MAX_ACTIVE_MIGRATIONS`] are running.
    #[error("{active} migrations are running; retry when one finishes")]
    TooMany { active: usize },
}

/// An input that does not fit: a bug in the driver.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MigrationInputError {
    #[error("op {0} was never issued")]
    UnknownOp(OpId),
    #[error("op {op} is a persist, answered as a call (or the other way round)")]
    WrongCompletion { op: OpId },
}

/// One input; each variant names the `handle_*` method it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrationInput {
    Start { req: RequestId, start: MigrationStart },
    Persisted { op: OpId, result: Result<(), IoError> },
    NodeAnswered { op: OpId, result: Result<NodeAnswer, NodeCallError> },
    Timeout(MigrationTimer),
}

/// What happened, for `strata ctl migrate` and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationEvent {
    /// Increases by one per event of the machine (across migrations).
    pub seq: u64,
    pub at: Instant,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The phase is durable; its calls start.
    Phase(Phase),
    Calling {
        node: NodeId,
        call: NodeCall,
    },
    Answered {
        node: NodeId,
        answer: NodeAnswer,
    },
    CallFailed {
        node: NodeId,
        reason: String,
    },
    PersistFailed {
        reason: String,
    },
    /// A step was skipped; the reason says why.
    Skipped {
        reason: String,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Phase(p) => match p {
                Phase::CatchUp { target, .. } => {
                    write!(f, "phase {} (target {target:?})", p.name())
                }
                _ => match p.destination_generation() {
                    Some(g) => write!(f, "phase {} (destination generation {g})", p.name()),
                    None => write!(f, "phase {}", p.name()),
                },
            },
            EventKind::Calling { node, call } => write!(f, "calling {node}: {call:?}"),
            EventKind::Answered { node, answer } => match answer {
                NodeAnswer::Placed(p) => write!(f, "{node} answered {p:?}"),
                NodeAnswer::Status(s) => {
                    write!(f, "{node} holds {:?}, timelines {:?}", s.placement, s.timelines)
                }
            },
            EventKind::CallFailed { node, reason } => write!(f, "call to {node} failed: {reason}"),
            EventKind::PersistFailed { reason } => write!(f, "store write failed: {reason}"),
            EventKind::Skipped { reason } => write!(f, "skipped: {reason}"),
        }
    }
}

/// Counters exported as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationStats {
    pub started_total: u64,
    pub finished_total: u64,
    pub calls_total: u64,
    pub call_failures_total: u64,
    pub call_timeouts_total: u64,
    pub late_answers_total: u64,
    pub persist_failures_total: u64,
    pub origin_skipped_total: u64,
    pub catch_up_timeouts_total: u64,
}
