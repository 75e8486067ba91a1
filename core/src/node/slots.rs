//! What the node holds per attached tenant: its timelines' slots (a state and the
//! two machines) and why a timeline is Broken; [`Node::break_timeline`] is the one
//! transition into Broken.

use super::Node;
use super::api::{ApiError, RequestId};
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::location_conf::LocationMode;
use crate::timeline::Timeline;
use crate::upload_queue::UploadQueue;
use std::collections::{BTreeMap, BTreeSet};

/// One attached tenant.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) generation: Generation,
    pub(crate) mode: LocationMode,
    /// Its lifecycle state (`crate::tenant::lifecycle`). `Broken` here means a
    /// handler of one of its machines panicked: `timelines` is empty and stays so
    /// (see `isolation.rs`).
    pub(crate) state: crate::tenant::TenantState,
    pub(crate) timelines: BTreeMap<TimelineId, TimelineSlot>,
    /// Timelines found in remote storage that could not be loaded (their index is
    /// corrupt or unreadable for good): no machines run for them, they are listed
    /// as broken with the reason and every request for them answers it (500), until
    /// the tenant is loaded again (a restart or a `location_config`) after an
    /// operator restored the object. Never both here and in `timelines`.
    pub(crate) unloadable: BTreeMap<TimelineId, BrokenReason>,
    /// This tenant's I/O in flight: every route whose [`Route::tenant`] is this
    /// tenant, counted where the node inserts and removes routes (`emit_io`,
    /// `handle_io`). A stop ends, and emergency mode is left, only at zero, so no
    /// completion of the old machines can reach new ones.
    ///
    /// [`Route::tenant`]: super::Route::tenant
    pub(crate) in_flight: usize,
    /// Timeline creates whose remote check is in flight (`create.rs`): another
    /// create of the same timeline meanwhile answers 503.
    pub(crate) create_checks: BTreeSet<TimelineId>,
}

impl Tenant {
    pub(crate) fn new(
        generation: Generation,
        mode: LocationMode,
        state: crate::tenant::TenantState,
    ) -> Self {
        Tenant {
            generation,
            mode,
            state,
            timelines: BTreeMap::new(),
            unloadable: BTreeMap::new(),
            in_flight: 0,
            create_checks: BTreeSet::new(),
        }
    }
}

/// Why a timeline is Broken: named, so that operators, metrics
/// (`strata_timelines_broken{reason}`) and clients can tell corruption, which no
/// retry can fix, from a failed step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BrokenReason {
    /// A remote object this timeline needs does not parse (its index) or does not
    /// match the size and checksum its index records (a layer): retrying cannot
    /// help; the object must be restored from elsewhere.
    Corrupt { object: crate::remote_path::RemoteKey, reason: String },
    /// Anything else: a permanent remote error, a machine's refusal; the message
    /// says what.
    Failed(String),
}

impl BrokenReason {
    /// The metric label: one of [`api::BrokenTimeline::KINDS`].
    pub(crate) fn label(&self) -> &'static str {
        match self {
            BrokenReason::Corrupt { .. } => "corrupt",
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
    /// Created; answered once its first index is durable.
    Creating {
        req: RequestId,
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
    /// The upload queue's I/O in flight (`UploadRead`, `UploadPut`, `UploadList`
    /// routes): an interrupted deletion resumes on a fresh queue only at zero.
    pub(crate) upload_in_flight: usize,
}

impl TimelineSlot {
    pub(crate) fn new(state: SlotState, timeline: Timeline, upload: UploadQueue) -> Self {
        TimelineSlot { state, timeline, upload, upload_in_flight: 0 }
    }
}

impl Node {
    /// Counts a route in (`started`) or out against its tenant's and timeline's
    /// in-flight counters. Called only by `emit_io` and `handle_io`, so the counts
    /// are those of `routes` (checked by `check_invariants`).
    pub(crate) fn count_in_flight(&mut self, route: &super::Route, started: bool) {
        use super::Route;
        let step = |n: &mut usize| {
            if started {
                *n += 1;
            } else {
                debug_assert!(*n > 0, "in-flight count below zero for {route:?}");
                *n = n.saturating_sub(1);
            }
        };
        if let Route::CreateTimelineCheck { tenant, timeline, generation, .. } = route {
            if let Some(t) = self.tenants.get_mut(tenant)
                && t.generation == *generation
            {
                if started {
                    t.create_checks.insert(*timeline);
                } else {
                    t.create_checks.remove(timeline);
                }
            }
            return;
        }
        let Some(tenant) = route.tenant() else { return };
        let Some(t) = self.tenants.get_mut(&tenant) else {
            debug_assert!(false, "a route of tenant {tenant}, which the node does not hold");
            return;
        };
        step(&mut t.in_flight);
        if let Route::UploadRead { timeline, .. }
        | Route::UploadPut { timeline, .. }
        | Route::UploadList { timeline, .. } = route
            && let Some(slot) = t.timelines.get_mut(timeline)
        {
            step(&mut slot.upload_in_flight);
        }
    }

    pub(crate) fn break_timeline(
        &mut self,
        t: TenantId,
        tl: TimelineId,
        reason: impl Into<super::BrokenReason>,
    ) {
        let reason = reason.into();
        if self.slot_mut(t, tl).is_some_and(|s| s.state == SlotState::Deleting) {
            // Work of a timeline being deleted (a flush finishing, a compaction) is
            // refused by its deleting upload queue; the deletion decides its fate.
            tracing::info!(tenant = %t, timeline = %tl, %reason, "ignored while the timeline is deleted");
            return;
        }
        tracing::error!(tenant = %t, timeline = %tl, %reason, "timeline broken");
        let now = self.now;
        if let Some(slot) = self.slot_mut(t, tl) {
            if let super::BrokenReason::Corrupt { .. } = reason {
                // No more compaction, GC or eviction: compaction would download the
                // corrupt object again after every backoff, forever.
                slot.timeline.handle_mode(now, false, false);
            }
            let previous = std::mem::replace(&mut slot.state, SlotState::Broken(reason.clone()));
            if let SlotState::Creating { req } = previous {
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
