//! What the node holds per timeline of an attached tenant: its slot (a state and
//! the two machines) and why a timeline is Broken; [`Node::break_timeline`] is the one
//! transition into Broken.

use super::Node;
use super::api::{ApiError, RequestId};
use crate::id::{TenantId, TimelineId};
use crate::timeline::Timeline;
use crate::upload_queue::UploadQueue;

/// Why a timeline is Broken: named, so that operators, metrics
/// (`strata_timelines_broken{reason}`) and clients can tell corruption, which no
/// retry can fix, from a failed step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BrokenReason {
    /// A remote object this timeline needs does not parse (its index) or does not
    /// match the size and checksum its index records (a layer): retrying cannot
    /// help; the object must be restored from elsewhere.
    Corrupt { object: crate::remote_path::RemoteKey, reason: String },
    /// Flush writes failed with `NoSpace` (the local disk is full) for longer than
    /// `no_space_budget_ms`, since `since`: nothing more is written locally, ingest
    /// is refused, reads are still served (`timeline/disk_full.rs`).
    NoSpace { since: crate::time::Instant },
    /// Anything else: a permanent remote error, a machine's refusal; the message
    /// says what.
    Failed(String),
}

impl BrokenReason {
    /// The metric label: one of [`api::BrokenTimeline::KINDS`].
    pub(crate) fn label(&self) -> &'static str {
        match self {
            BrokenReason::Corrupt { .. } => "corrupt",
            BrokenReason::NoSpace { .. } => "no_space",
            BrokenReason::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Display for BrokenReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokenReason::Corrupt { object, reason } => {
                write!(f, "corrupt: remote object {object}: {reason}")
            }
            BrokenReason::NoSpace { since } => write!(
                f,
                "no space: flush writes failed with no space left on the local disk since {since}, past the retry budget; reads are served, ingest is refused until the timeline is loaded again"
            ),
            BrokenReason::Failed(why) => f.write_str(why),
        }
    }
}

impl From<String> for BrokenReason {
    fn from(why: String) -> Self {
        BrokenReason::Failed(why)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Created; answered once its first index is durable. `req` is `None` once
    /// the create was answered early: the tenant went to a mode that uploads
    /// nothing (AttachedStale) before the index was durable, and the create got
    /// 503 rather than a wait that could last for good; the timeline becomes
    /// Active if uploads resume and the index lands.
    Creating {
        req: Option<RequestId>,
    },
    Active,
    /// Being deleted (tombstone, objects, tombstone): requests get 404; the slot
    /// goes when the upload queue reports the timeline deleted.
    Deleting,
    Broken(BrokenReason),
}

/// A timeline's two machines.
#[derive(Debug)]
pub(crate) struct TimelineSlot {
    pub(crate) state: SlotState,
    pub(crate) timeline: Timeline,
    pub(crate) upload: UploadQueue,
    /// The upload queue's I/O in flight (`UploadPut`, `UploadList`
    /// routes): an interrupted deletion resumes on a fresh queue only at zero.
    pub(crate) upload_in_flight: usize,
    /// Its deletion was stopped by a mode change (`DeletionAborted`): it resumes on
    /// a fresh upload queue once the tenant is AttachedSingle again and
    /// `upload_in_flight` is zero.
    pub(crate) deletion_aborted: bool,
    /// DeleteTimeline requests waiting for its tombstone index to be durable.
    pub(crate) deletion_waiters: Vec<RequestId>,
    /// Its in-memory layer bytes as the node last counted them (`memory.rs`).
    pub(crate) memory_counted: u64,
}

impl TimelineSlot {
    pub(crate) fn new(state: SlotState, timeline: Timeline, upload: UploadQueue) -> Self {
        TimelineSlot {
            state,
            timeline,
            upload,
            upload_in_flight: 0,
            deletion_aborted: false,
            deletion_waiters: Vec::new(),
            memory_counted: 0,
        }
    }
}

/// The node's upload and deletion queues, summed over attached timelines (what
/// the driver exports as metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Layer uploads and index snapshots waiting to start.
    pub upload_queued: usize,
    /// Remote operations of upload queues in flight.
    pub upload_in_flight: usize,
    /// Operations dropped by the current upload queues (stop, break, deletion);
    /// a queue made again (a re-attach, a reload) starts from 0.
    pub upload_dropped: u64,
    /// Object keys waiting in the deletion queue (validated or not).
    pub deletion_queued_keys: usize,
    /// Deletion lists the deletion queue holds.
    pub deletion_lists: usize,
}

impl Node {
    /// A timeline's slot, if its tenant holds it.
    pub(crate) fn slot_mut(
        &mut self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Option<&mut TimelineSlot> {
        self.tenants.get_mut(&tenant)?.timelines.get_mut(&timeline)
    }

    /// The queues' sizes (`strata_upload_queue_*`, `strata_deletion_queue_*`).
    pub fn queue_counts(&self) -> QueueCounts {
        let mut c = QueueCounts::default();
        for slot in self.tenants.values().flat_map(|t| t.timelines.values()) {
            c.upload_queued += slot.upload.queued_count();
            c.upload_in_flight += slot.upload.in_flight_count();
            c.upload_dropped += slot.upload.dropped_count();
        }
        if let Some(dq) = &self.dq {
            c.deletion_queued_keys = dq.queued_keys();
            c.deletion_lists = dq.lists_len();
        }
        c
    }

    /// Timelines in a disk-full episode (refusing ingest, or Broken `no_space`):
    /// `strata_timelines_disk_full`.
    pub fn timelines_disk_full(&self) -> usize {
        self.tenants
            .values()
            .flat_map(|t| t.timelines.values())
            .filter(|s| s.timeline.disk_full().is_some())
            .count()
    }

    pub(crate) fn break_timeline(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        reason: impl Into<super::BrokenReason>,
    ) {
        let reason = reason.into();
        let deleting = self.slot_mut(t, tl).filter(|s| s.state == SlotState::Deleting);
        if let Some(slot) = deleting {
            if !matches!(slot.upload.state(), crate::upload_queue::QueueState::Broken { .. }) {
                // Work of a timeline being deleted (a flush finishing, a compaction) is
                // refused by its deleting upload queue; the deletion decides its fate.
                tracing::info!(tenant = %t, timeline = %tl, %reason, "ignored while the timeline is deleted");
                return;
            }
            // The deletion itself failed for good (a permanent refusal of its
            // tombstone or listing): it answers its waiters, and the timeline is
            // broken, so a tenant deletion waiting for it fails instead of waiting
            // forever.
            slot.state = SlotState::Broken(reason.clone());
            tracing::error!(tenant = %t, timeline = %tl, %reason, "timeline deletion failed");
            let failed = format!("deleting timeline {tl} failed: {reason}");
            self.answer_deletion_waiters(t, tl, Err(ApiError::Internal(failed)));
            self.touch_tenant(t);
            return;
        }
        tracing::error!(tenant = %t, timeline = %tl, %reason, "timeline broken");
        let now = self.now;
        if let Some(slot) = self.slot_mut(t, tl) {
            if let super::BrokenReason::Corrupt { .. } | super::BrokenReason::NoSpace { .. } =
                reason
            {
                // No more compaction, GC or eviction: compaction would download the
                // corrupt object again after every backoff, forever.
                slot.timeline.handle_mode(now, false, false);
            }
            let previous = std::mem::replace(&mut slot.state, SlotState::Broken(reason.clone()));
            if let SlotState::Creating { req: Some(req) } = previous {
                self.reply(
                    req,
                    Err(ApiError::Internal(format!(
                        "timeline {tl} broke while being created: {reason}"
                    ))),
                );
            }
        }
    }
}
