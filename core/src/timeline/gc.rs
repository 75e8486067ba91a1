//! GC: drop layers no read at or above the horizon needs.
//!
//! **Horizon.** The lower of `disk_consistent_lsn − gc_horizon_lsn_distance`
//! (`u64::MAX` disables GC) and, when `gc_retention_ms > 0`, the newest LSN known
//! to have been ingested at least `gc_retention_ms` ago (time retention,
//! below). Let `J` be the newest full image set (image layers of
//! one LSN covering every key, see `images.rs`) at or below the horizon. A read at
//! an LSN `≥ J` finds every key's value at `J` in that set, so no layer whose
//! records all lie at or below `J` (LSN end `≤ J + 1`) is needed by it, except the
//! set itself. Those layers are the victims. A `J` that some delta layer straddles
//! (a compaction merged L0s from both sides of it) is skipped: a read would take
//! that layer, continue below its start, past the image set, into the older layers.
//!
//! **Time retention.** All of it runs on the monotonic clock ([`Instant`], the
//! `now` of every input), never on the wall clock: a wall clock stepped forward by a
//! day must not make a minute-old LSN look a day old (the node test
//! `gc_retention_stays_on_monotonic_time_when_the_wall_clock_jumps` checks it). The
//! timeline keeps samples `(t, lsn)` meaning "every
//! LSN up to `lsn` was ingested at or before `t`": one at the first input after
//! creation or start-up, then after each ingest the newest sample is replaced by
//! `(now, last ingested)` while it is less than `interval = gc_retention_ms /
//! (MAX_LSN_TIME_SAMPLES / 2 − 1)` younger than the one before it, else a new one
//! is appended (so samples two apart span at least `interval`). Samples older than
//! the newest one already past the retention are dropped, and if more than
//! [`MAX_LSN_TIME_SAMPLES`] remain the two oldest merge into the older. The retention horizon is the LSN of the newest
//! sample at least `gc_retention_ms` old (no such sample: nothing is old enough).
//! Coarseness only ever makes the horizon *lower* (GC keeps more). A timer wakes GC
//! when the next sample comes of age while the retention is the binding bound.
//! **After a restart** the samples are gone (they are in memory only): the first
//! sample stamps everything recovered with the start-up time, so nothing written
//! before the restart is old enough until `gc_retention_ms` has passed again —
//! GC keeps more, never less.
//!
//! **Scheduling.** A GC pass is a background job: asked of the node's scheduler
//! when there is something to collect, started only with its grant (a granted GC
//! waits for a busy flush or compaction of this timeline), finished when its
//! metadata write ends (`jobs.rs`).
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
use crate::io_error::IoError;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::metadata::TimelineMetadata;
use crate::scheduler::JobKind as BackgroundJob;
use crate::time::Instant;

/// Most `(ingest time, LSN)` samples a timeline keeps for time retention.
pub const MAX_LSN_TIME_SAMPLES: usize = 64;

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
        let mut horizon = self.metadata.disk_consistent_lsn.0.checked_sub(distance)?;
        if let Some(retained) = self.gc_retention_horizon() {
            horizon = horizon.min(retained.0);
        }
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
        if self.gc != GcState::Idle {
            return;
        }
        if !(self.may_compact && self.may_delete) {
            self.decline_grant(BackgroundJob::Gc);
            return;
        }
        let Some((cutoff, victims)) = self.gc_plan() else {
            self.decline_grant(BackgroundJob::Gc);
            return;
        };
        // One metadata writer at a time, and no GC under a running compaction: a
        // granted GC waits for them, an ungranted one asks later.
        if self.flush != super::FlushState::Idle
            || self.compaction != super::CompactionState::Idle
            || !self.take_grant(BackgroundJob::Gc)
        {
            return;
        }
        let metadata = TimelineMetadata {
            gc_cutoff_lsn: self.metadata.gc_cutoff_lsn.max(cutoff),
            ..self.metadata
        };
        let op = self.new_op(OpKind::GcMetadata);
        self.effects.push_back(TimelineEffect::WriteMetadata { op, metadata });
        self.gc = GcState::WritingMetadata { op, metadata, victims };
    }

    pub(super) fn gc_metadata_written(&mut self, now: Instant, op: OpId, r: Result<(), IoError>) {
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

    /// Records an `(ingest time, LSN)` sample when due (see the module doc).
    pub(super) fn record_lsn_time(&mut self, now: Instant) {
        let retention = self.config.gc_retention_ms;
        if retention == 0 {
            self.lsn_times.clear();
            return;
        }
        let interval = retention.div_ceil(MAX_LSN_TIME_SAMPLES as u64 / 2 - 1).max(1);
        let sample = (now, self.last_ingested);
        let n = self.lsn_times.len();
        match self.lsn_times.back() {
            None => self.lsn_times.push_back(sample),
            Some((_, lsn)) if *lsn == self.last_ingested => {}
            // The newest sample rolls forward (a later claim replaces it) until it
            // is `interval` past the one before: samples two apart span at least
            // `interval`.
            Some((t, _))
                if *t == now
                    || (n >= 2 && now.millis_since(self.lsn_times[n - 2].0) < interval) =>
            {
                self.lsn_times[n - 1] = sample;
            }
            Some(_) => self.lsn_times.push_back(sample),
        }
        // Keep one sample past the retention: the newest such one.
        while self.lsn_times.len() >= 2 && self.lsn_times[1].0.plus_millis(retention) <= now {
            self.lsn_times.pop_front();
        }
        if self.lsn_times.len() > MAX_LSN_TIME_SAMPLES {
            // Merge the two oldest into the older: a lower horizon, never a higher one.
            self.lsn_times.remove(1);
        }
    }

    /// The newest LSN ingested at least `gc_retention_ms` before the latest `now`
    /// (`None`: no time retention configured; `Some(ZERO)`: nothing old enough).
    pub(crate) fn gc_retention_horizon(&self) -> Option<Lsn> {
        let retention = self.config.gc_retention_ms;
        if retention == 0 {
            return None;
        }
        let old_enough = |(t, _): &&(Instant, Lsn)| t.plus_millis(retention) <= self.clock;
        Some(self.lsn_times.iter().rev().find(old_enough).map_or(Lsn::ZERO, |(_, lsn)| *lsn))
    }

    /// When the retention holds GC below the distance horizon: the time the next
    /// sample comes of age.
    pub(super) fn gc_retention_timer(&self) -> Option<Instant> {
        let distance = self.config.gc_horizon_lsn_distance;
        if distance == u64::MAX || !(self.may_compact && self.may_delete) {
            return None;
        }
        let by_distance = self.metadata.disk_consistent_lsn.0.checked_sub(distance)?;
        let retained = self.gc_retention_horizon()?;
        if retained.0 >= by_distance {
            return None;
        }
        let retention = self.config.gc_retention_ms;
        self.lsn_times
            .iter()
            .find(|(t, lsn)| t.plus_millis(retention) > self.clock && *lsn > retained)
            .map(|(t, _)| t.plus_millis(retention))
    }

    /// The `(ingest time, LSN)` samples held now, oldest first.
    pub fn lsn_time_samples(&self) -> impl Iterator<Item = &(Instant, Lsn)> {
        self.lsn_times.iter()
    }

    /// True while GC's metadata write is in flight (the flush waits).
    pub(super) fn gc_writing(&self) -> bool {
        matches!(self.gc, GcState::WritingMetadata { .. })
    }

    pub(super) fn check_gc_invariants(&self) {
        if let GcState::WritingMetadata { op, metadata, .. } = &self.gc {
            assert_eq!(self.ops.get(op), Some(&OpKind::GcMetadata), "GC metadata op untracked");
            let dc = metadata.disk_consistent_lsn;
            assert_eq!(dc, self.metadata.disk_consistent_lsn, "GC moves disk_consistent");
            assert_eq!(self.flush.op(), None, "two metadata writers");
        }
        let cutoff = self.metadata.gc_cutoff_lsn;
        assert!(cutoff <= self.metadata.disk_consistent_lsn, "GC cutoff {cutoff} above durable");
        assert!(self.lsn_times.len() <= MAX_LSN_TIME_SAMPLES, "too many LSN time samples");
        for w in self.lsn_times.iter().collect::<Vec<_>>().windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1, "LSN time samples out of order");
        }
        if let Some((_, lsn)) = self.lsn_times.back() {
            assert!(*lsn <= self.last_ingested, "an LSN time sample above last ingested");
        }
    }
}
