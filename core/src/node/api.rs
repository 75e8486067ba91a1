//! The transport-independent request layer: typed requests a node answers and typed
//! responses. HTTP (axum, tokio build) and the simulated workload (madsim network)
//! are thin mappings onto these.

use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::key::Key;
use crate::lsn::Lsn;
use crate::redo::IngestRecord;
use serde::{Deserialize, Serialize};

/// Assigned by the driver to every request it feeds; the reply carries it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create (and attach to this node) a new tenant.
    CreateTenant {
        tenant: TenantId,
    },
    /// Create a timeline. Answered only once its first index is durable remotely
    /// (S-ACTIVE-UPLOADED).
    CreateTimeline {
        tenant: TenantId,
        timeline: TimelineId,
    },
    /// Ingest records; LSNs strictly increasing. Re-sent records at or below the last
    /// ingested LSN are acknowledged and skipped.
    Ingest {
        tenant: TenantId,
        timeline: TimelineId,
        records: Vec<IngestRecord>,
    },
    /// The value of `key` as of `lsn`.
    Read {
        tenant: TenantId,
        timeline: TimelineId,
        key: Key,
        lsn: Lsn,
    },
    TimelineInfo {
        tenant: TenantId,
        timeline: TimelineId,
    },
    ListTenants,
    /// Where the tenant stands on this node and the LSNs of its timelines (what the
    /// control plane's migration reconciler observes). A tenant the node does not
    /// know is `Detached`; one whose slot is changing is `Unavailable` (retry).
    TenantLocation {
        tenant: TenantId,
    },
    /// Delete a timeline: a tombstone index first, then every object of it (through
    /// the deletion queue, validated), then the tombstone. Answered once the
    /// tombstone is queued; `TimelineInfo` shows `Deleting` until it is gone (404).
    /// Only in AttachedSingle. Resumed after a crash.
    DeleteTimeline {
        tenant: TenantId,
        timeline: TimelineId,
    },
    /// Delete a tenant attached here in AttachedSingle: its deletion mark in remote
    /// storage first, then every timeline (validated deletions), then it is
    /// detached. Answered when it is gone; a restart finishes an interrupted one.
    DeleteTenant {
        tenant: TenantId,
    },
    /// Place the tenant on this node: an attached mode, secondary, or detached (see
    /// `crate::tenant::manager` for the mode table). Answered at once with
    /// `Unavailable` while another change of the tenant runs.
    LocationConfig {
        tenant: TenantId,
        request: crate::tenant::LocationRequest,
    },
    /// Freeze and flush everything, upload it, wait until the visible LSN covers all
    /// that was acknowledged (bounded by the shutdown grace period), then stop.
    Shutdown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    TenantCreated { tenant: TenantId, generation: Generation },
    TimelineCreated(TimelineInfo),
    Ingested { last_ingested_lsn: Lsn, applied: usize, skipped: usize },
    Value { key: Key, lsn: Lsn, value: Option<Vec<u8>> },
    TimelineInfo(TimelineInfo),
    Tenants(Vec<TenantInfo>),
    TenantLocation(TenantLocation),
    LocationConfigured(crate::tenant::LocationOutcome),
    TimelineDeleting,
    ShutdownComplete { clean: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineInfo {
    pub tenant: TenantId,
    pub timeline: TimelineId,
    pub state: String,
    pub generation: Generation,
    pub last_ingested_lsn: Lsn,
    pub disk_consistent_lsn: Lsn,
    /// Durable remotely: the index that covers it finished uploading.
    pub remote_consistent_lsn_projected: Lsn,
    /// Projected and validated: safe for WAL producers to discard below.
    pub remote_consistent_lsn_visible: Lsn,
    pub layers: usize,
}

/// The answer to [`Request::TenantLocation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLocation {
    pub tenant: TenantId,
    pub placement: crate::tenant::Placement,
    /// Every timeline whose machines run (none unless attached), with its LSNs.
    pub timelines: Vec<TimelineInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub tenant: TenantId,
    /// `None` for a tenant broken before it was placed (its config unreadable).
    pub generation: Option<Generation>,
    pub state: String,
    /// Why it is `Broken`; `None` otherwise.
    pub reason: Option<String>,
    pub timelines: Vec<TimelineId>,
    /// The timelines of `timelines` that are Broken, with why.
    pub broken_timelines: Vec<BrokenTimeline>,
}

/// A Broken timeline as listed: requests for it answer 500 with `reason`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenTimeline {
    pub timeline: TimelineId,
    /// `corrupt`: a remote object (its index, or a layer) does not parse or does
    /// not match its index, and no retry can fix it; `failed`: anything else.
    pub kind: String,
    pub reason: String,
}

impl BrokenTimeline {
    /// Every `kind`, in a fixed order (the labels of `strata_timelines_broken`).
    pub const KINDS: [&'static str; 3] = ["corrupt", "no_space", "failed"];
}

/// Typed errors, grouped by what the caller should do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// Retry after `retry_after_ms`: the thing exists but is not ready, or the node
    /// holds back (backpressure, busy slot).
    #[error("unavailable, retry in {retry_after_ms} ms: {reason}")]
    Unavailable { reason: String, retry_after_ms: u64 },
    #[error("node is shutting down")]
    ShuttingDown,
    /// A bug or a broken timeline; the message says which.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn unavailable(reason: impl Into<String>) -> Self {
        ApiError::Unavailable { reason: reason.into(), retry_after_ms: DEFAULT_RETRY_AFTER_MS }
    }
}

/// What a 503 tells the client to wait before retrying.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;
