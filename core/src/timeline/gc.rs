//! GC: drop layers no read at or above the horizon needs.
//!
//! **Horizon.** `horizon = disk_consistent_lsn − gc_horizon_lsn_distance`
//! (`u64::MAX` disables GC). Let `J` be the newest full image set (image layers of
//! one LSN covering every key, see `images.rs`) at or below the horizon. A read at
//! an LSN `≥ J` finds every key's value at `J` in that set, so no layer whose
//! records all lie at or below `J` (LSN end `≤ J + 1`) is needed by it, except the
//! set itself. Those layers are the victims. A `J` that some delta layer straddles
//! (a compaction merged L0s from both sides of it) is skipped: a read would take
//! that layer, continue below its start, past the image set, into the older layers.
//!
//! **Order.** GC runs while compaction and eviction are allowed and deletions too
//! (`handle_mode(.., true, true)`), only when the flush and the compaction pipeline
//! are idle, and the flush does not start while GC writes metadata (one metadata
//! writer at a time):
//! 1. `WriteMetadata` with `gc_cutoff_lsn = J` (reads below it fail from now on with
//!    `BelowGcCutoff`, also reads already running that finish after the removal).
//! 2. On success, in one transition: `MetadataDurable` (→ upload queue), then the
//!    victims leave the map with `UnlinkLayers` + `EvictLayer`. The upload queue sees
//!    the new cutoff before the unlink, so every index without the victims carries
//!    the cutoff that makes them unnecessary; deletion follows that index
//!    (S-DEL-AFTER-INDEX).
//!
//! **Crash.** Before the metadata is durable: nothing changed. After: the index
//! still names the victims until the upload queue uploads the next one; start-up
//! keeps them (correct, just not yet collected) and GC runs again.
//! **A failed write** retries after `flush_retry_base_ms` (a fresh evaluation).

use super::layer_map::lsn_range;
use super::{OpKind, Timeline, TimelineEffect};
use crate::id::OpId;
use crate::layer_name::LayerName;
use crate::metadata::TimelineMetadata;
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcState {
    Idle,
    WritingMetadata { op: OpId, metadata: TimelineMetadata, victims: Vec<LayerName> },
    Backoff { until: Instant },
}

impl Timeline {
    pub fn gc_state(&self) -> &GcState {
        &self.gc
    }

    /// The layers GC would remove now, and the cutoff it would set.
    pub(crate) fn gc_plan(&self) -> Option<(crate::lsn::Lsn, Vec<LayerName>)> {
        let distance = self.config.gc_horizon_lsn_distance;
        if distance == u64::MAX {
            return None;
        }
        let horizon = self.metadata.disk_consistent_lsn.0.checked_sub(distance)?;
        // A delta layer straddling J (records both at or below J and above it) would
        // lead a read past the image set into older layers: such a J is not used.
        let straddled = |j: crate::lsn::Lsn| {
            self.layers.layers.keys().any(|n| {
                let r = lsn_range(n);
                n.is_delta() && r.start <= j && r.end > j.next()
            })
        };
        let j =
            self.full_image_lsns().into_iter().rev().find(|j| j.0 <= horizon && !straddled(*j))?;
        let victims: Vec<LayerName> = self
            .layers
            .layers
            .keys()
            .filter(|n| !matches!(n, LayerName::Image { lsn, .. } if *lsn == j))
            .filter(|n| lsn_range(n).end <= j.next())
            .cloned()
            .collect();
        (!victims.is_empty()).then_some((j, victims))
    }

    pub(super) fn pump_gc(&mut self, _now: Instant) {
        let idle = self.gc == GcState::Idle
            && self.may_compact
            && self.may_delete
            && self.flush == super::FlushState::Idle
            && self.compaction == super::CompactionState::Idle;
        if !idle {
            return;
        }
        let Some((cutoff, victims)) = self.gc_plan() else { return };
        let metadata = TimelineMetadata {
            gc_cutoff_lsn: self.metadata.gc_cutoff_lsn.max(cutoff),
            ..self.metadata
        };
        let op = self.new_op(OpKind::GcMetadata);
        self.effects.push_back(TimelineEffect::WriteMetadata { op, metadata });
        self.gc = GcState::WritingMetadata { op, metadata, victims };
    }

    pub(super) fn gc_metadata_written(&mut self, now: Instant, op: OpId, r: Result<(), String>) {
        let GcState::WritingMetadata { op: current, metadata, victims } =
            std::mem::replace(&mut self.gc, GcState::Idle)
        else {
            unreachable!("a GcMetadata op exists only while WritingMetadata")
        };
        debug_assert_eq!(op, current);
        if r.is_err() {
            self.gc = GcState::Backoff { until: now.plus_millis(self.backoff_ms(1)) };
            return;
        }
        self.metadata = metadata;
        self.effects.push_back(TimelineEffect::MetadataDurable { metadata });
        let victims: Vec<LayerName> =
            victims.into_iter().filter(|n| self.layers.layers.contains_key(n)).collect();
        if !victims.is_empty() {
            self.remove_layers(&victims);
        }
    }

    pub(super) fn gc_timeout(&mut self, now: Instant) {
        if matches!(self.gc, GcState::Backoff { until } if until <= now) {
            self.gc = GcState::Idle;
        }
    }

    pub(super) fn gc_timer(&self) -> Option<Instant> {
        match self.gc {
            GcState::Backoff { until } => Some(until),
            _ => None,
        }
    }

    /// True while GC's metadata write is in flight (the flush waits).
    pub(super) fn gc_writing(&self) -> bool {
        matches!(self.gc, GcState::WritingMetadata { .. })
    }

    pub(super) fn check_gc_invariants(&self) {
        if let GcState::WritingMetadata { op, metadata, .. } = &self.gc {
            assert_eq!(self.ops.get(op), Some(&OpKind::GcMetadata));
            assert_eq!(metadata.disk_consistent_lsn, self.metadata.disk_consistent_lsn);
            assert_eq!(self.flush.op(), None, "two metadata writers");
        }
        assert!(self.metadata.gc_cutoff_lsn <= self.metadata.disk_consistent_lsn);
    }
}
