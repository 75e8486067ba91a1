//! The upload queue's public vocabulary: configuration, modes, effects, errors.

use crate::generation::Generation;
use crate::id::OpId;
use crate::index_part::{IndexPart, IndexVersion, LayerMeta};
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::remote_path::RemoteKey;

/// Default bound on parallel layer uploads of one timeline.
pub const DEFAULT_LAYER_UPLOAD_CONCURRENCY: usize = 4;
/// Default delay before the first retry; doubles per failure.
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 100;
/// Default cap on the retry delay.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 3_000;
/// Default bound on layer bytes a stale attachment holds un-uploaded before it asks
/// the timeline to refuse ingest.
pub const DEFAULT_STALE_HOLD_MAX_BYTES: u64 = 1 << 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadQueueConfig {
    /// At most this many layer uploads in flight (at least one is always allowed).
    pub layer_upload_concurrency: usize,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// In `Stale`/`Emergency`, backpressure turns on above this many held bytes.
    pub stale_hold_max_bytes: u64,
}

impl Default for UploadQueueConfig {
    fn default() -> Self {
        UploadQueueConfig {
            layer_upload_concurrency: DEFAULT_LAYER_UPLOAD_CONCURRENCY,
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            stale_hold_max_bytes: DEFAULT_STALE_HOLD_MAX_BYTES,
        }
    }
}

impl UploadQueueConfig {
    /// `backoff_base_ms · 2^(failures-1)`, capped at `backoff_max_ms`.
    pub fn backoff_ms(&self, failures: u32) -> u64 {
        let factor = 1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(u64::MAX);
        self.backoff_base_ms.saturating_mul(factor).min(self.backoff_max_ms)
    }
}

/// The attachment modes that keep a queue alive. Secondary and Detached stop it
/// (`handle_stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum AttachMode {
    /// The one current attachment: uploads and deletions.
    Single,
    /// A newer attachment exists alongside: uploads, keeps its deletions.
    Multi,
    /// A newer attachment took over: uploads nothing, deletes nothing.
    Stale,
    /// The control plane is unreachable: like `Stale` for remote writes.
    Emergency,
}

impl AttachMode {
    pub fn may_upload(self) -> bool {
        match self {
            AttachMode::Single | AttachMode::Multi => true,
            AttachMode::Stale | AttachMode::Emergency => false,
        }
    }

    pub fn may_delete(self) -> bool {
        match self {
            AttachMode::Single => true,
            AttachMode::Multi | AttachMode::Stale | AttachMode::Emergency => false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BarrierId(pub u64);

/// Why a timer is set: every timer is a retry after a transient failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerReason {
    LayerRetry(LayerName),
    IndexRetry(IndexVersion),
    ListingRetry,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    #[error("the upload queue was stopped before the barrier was reached")]
    Stopped,
    #[error("the upload queue is broken: {0}")]
    Broken(String),
    #[error("the timeline is being deleted")]
    Deleting,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadEffect {
    /// Upload the local file to `layer_key(.., &name, meta.generation)`.
    UploadLayer {
        op: OpId,
        name: LayerName,
        meta: LayerMeta,
    },
    /// PUT `index.to_json_bytes()` at `index_key(.., version)`.
    UploadIndex {
        op: OpId,
        version: IndexVersion,
        index: IndexPart,
    },
    /// To `DeletionQueue::handle_push(tenant, timeline, generation, keys)`.
    HandDeletions {
        generation: Generation,
        keys: Vec<RemoteKey>,
    },
    /// To `DeletionQueue::handle_cancel`; a `DeletionReport` for the key follows.
    CancelDeletion {
        key: RemoteKey,
    },
    /// To `DeletionQueue::handle_push_lsn_update`.
    ValidateLsn {
        generation: Generation,
        lsn: Lsn,
    },
    BarrierReached {
        id: BarrierId,
        result: Result<(), BarrierError>,
    },
    LsnAdvanced {
        projected: Lsn,
        visible: Lsn,
    },
    /// In `Stale`/`Emergency`: held bytes passed (`on`) or fell below the bound.
    Backpressure {
        on: bool,
    },
    Broken {
        reason: String,
    },
    /// Timeline deletion: list every key under `prefix` (the timeline's) and answer
    /// with `handle_listing`.
    ListTimeline {
        op: OpId,
        prefix: String,
    },
    /// The mode changed during a timeline deletion; the queue stopped.
    DeletionAborted {
        error: UploadQueueError,
    },
    /// Timeline deletion: the tombstone index is durable; from now on the deletion
    /// survives a crash (start-up resumes it).
    TombstoneDurable,
    TimelineDeleted,
    /// Remove the layer's local file: no upload of it reads it any more (asked for
    /// by `handle_remove_local`; `local_files.rs`).
    RemoveLocal {
        name: LayerName,
    },
}

/// Where timeline deletion stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionPhase {
    /// The tombstone index is queued or uploading.
    Tombstone,
    /// Layers and older indexes are handed on, then every other key a listing of
    /// the prefix finds; waiting for their reports. When all are in, the timeline
    /// is deleted: only the tombstone is left, for good (see `deletion_progress`).
    Objects,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueState {
    Active,
    Deleting(DeletionPhase),
    Stopped,
    Broken { reason: String },
    Tombstoned,
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UploadQueueError {
    #[error("conflict: layer {0} is already in the remote layer set")]
    LayerAlreadyPresent(LayerName),
    #[error(
        "conflict: layer {0} was re-added with other size or checksum while its old content is still named or uploading"
    )]
    ContentChanged(LayerName),
    #[error("not found: layer {0} is not in the remote layer set")]
    UnknownLayer(LayerName),
    #[error("bug in the caller: {0} is not in flight")]
    NotInFlight(OpId),
    #[error("bug in the caller: disk_consistent_lsn would go back from {current} to {new}")]
    LsnWentBack { current: Lsn, new: Lsn },
    #[error("conflict: timeline deletion needs mode Single, the queue is {0:?}")]
    NotSingle(AttachMode),
    #[error("conflict: the mode changed to {0:?} during timeline deletion")]
    ModeChangedDuringDeletion(AttachMode),
    #[error("conflict: the upload queue is stopped")]
    Stopped,
    #[error("the upload queue is broken: {0}")]
    Broken(String),
    #[error("conflict: the timeline is being deleted or is deleted")]
    Deleted,
}
