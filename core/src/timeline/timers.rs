//! The timeline's timers (`TimelineTimer`): which one is due next, when, and
//! what firing one does.

use super::*;

impl Timeline {
    /// Fires one timer, named by the caller ([`Timeline::next_timer`] says which and
    /// when): only that timer's transition happens, then the scheduling pass every
    /// input runs. A timer that is not set or not yet due at `now` changes nothing.
    pub fn handle_timeout(&mut self, now: Instant, timer: TimelineTimer) {
        self.clock = self.clock.max(now);
        let due = self.timers().any(|(at, t)| t == timer && at <= now);
        if due {
            match timer {
                TimelineTimer::Checkpoint => self.freeze_open(),
                TimelineTimer::FlushRetry => self.flush_timeout(now),
                TimelineTimer::ReadWait => self.expire_waiting_reads(now),
                TimelineTimer::CompactionRetry => self.compaction_timeout(now),
                TimelineTimer::GcRetry => self.gc_timeout(now),
                // Wake-ups: the pass below asks for the job now that it is due.
                TimelineTimer::Eviction | TimelineTimer::GcRetention => {}
            }
        }
        self.pump(now);
    }

    /// The earliest deadline; [`Timeline::next_timer`] says which timer it is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The earliest timer and its reason: call `handle_timeout(at, timer)` then.
    /// Ties go to the first in [`Timeline::timers`] order.
    pub fn next_timer(&self) -> Option<(Instant, TimelineTimer)> {
        self.timers().min_by_key(|(at, _)| *at)
    }

    /// Every timer set, with its reason (at most one of each kind).
    pub fn timers(&self) -> impl Iterator<Item = (Instant, TimelineTimer)> + '_ {
        let checkpoint =
            self.open.opened_at.map(|t| t.plus_millis(self.config.checkpoint_timeout_ms));
        let waits = self.reads.values().filter_map(Read::wait_deadline).min();
        let gc_retry = match self.gc {
            GcState::Backoff { until } => Some(until),
            GcState::Idle | GcState::WritingMetadata { .. } => None,
        };
        let gc_retention = match self.gc {
            GcState::Idle => self.gc_retention_timer(),
            GcState::Backoff { .. } | GcState::WritingMetadata { .. } => None,
        };
        [
            (checkpoint, TimelineTimer::Checkpoint),
            // Out of space: the flush stopped for good (`disk_full.rs`).
            (self.flush.timer().filter(|_| !self.out_of_space()), TimelineTimer::FlushRetry),
            (waits, TimelineTimer::ReadWait),
            (self.compaction.timer(), TimelineTimer::CompactionRetry),
            (gc_retry, TimelineTimer::GcRetry),
            (self.eviction_timer(), TimelineTimer::Eviction),
            (gc_retention, TimelineTimer::GcRetention),
        ]
        .into_iter()
        .filter_map(|(at, timer)| at.map(|at| (at, timer)))
    }
}
