//! Core's own time types. The driver is the only clock reader; machines take `now`
//! as an argument.
//!
//! - [`Instant`]: monotonic milliseconds since an epoch the driver fixes at start-up
//!   (the process start in production, simulated time zero in the simulator). Used
//!   for timers, backoff and ages within one run. Never persisted.
//! - [`WallTime`]: milliseconds since the Unix epoch, for things that outlive a run
//!   (`deleted_at` in an index). It may jump; machines never use it to order
//!   events, to time anything, or to decide what to keep.
//!
//! **Wall-clock jumps.** The driver reads both clocks at every input and hands the
//! pair to a [`ClockWatch`]: between two readings the wall clock should move as far
//! as the monotonic clock did. When it moves more than
//! [`WALL_CLOCK_JUMP_TOLERANCE_MS`] further (forward) or less (backward), that is a
//! [`WallClockJump`], which the driver feeds to the node as an input of its own
//! (`Node::handle_wall_clock_jump`: a trace line, a warning, the
//! `strata_wall_clock_jumps_total{direction}` counter). The node takes the new wall
//! time as it is, never clamped to the old one: the only wall-clock fact it records
//! is a tombstone's `deleted_at`, which after a backward jump may be earlier than a
//! fact recorded before it, and nothing orders by it. Everything that decides or
//! times anything (timers, backoff, GC retention, layer access times for eviction)
//! runs on [`Instant`], which never goes back.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A monotonic instant: milliseconds since the driver's epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + ms`, saturating at the end of time.
    pub fn plus_millis(self, ms: u64) -> Self {
        Instant(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`; zero if `earlier` is later.
    pub fn millis_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Instant {
    /// `12.345s`: readable in traces, exact to the millisecond.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// Wall-clock time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct WallTime(pub u64);

impl WallTime {
    pub fn from_unix_millis(ms: u64) -> Self {
        WallTime(ms)
    }

    pub fn as_unix_millis(self) -> u64 {
        self.0
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// How far the wall clock may disagree with the monotonic clock between two
/// readings before the driver reports a [`WallClockJump`]. Both clocks run on one
/// oscillator, so the only disagreement in normal operation is the time between the
/// two reads of one reading (microseconds); NTP slews by at most 500 ppm, which over
/// 2,000 s between readings (an idle node) still stays below this.
pub const WALL_CLOCK_JUMP_TOLERANCE_MS: u64 = 1_000;

/// Which way the wall clock jumped relative to the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JumpDirection {
    Forward,
    Backward,
}

impl JumpDirection {
    pub const ALL: [JumpDirection; 2] = [JumpDirection::Forward, JumpDirection::Backward];

    /// The metric label: `forward` or `backward`.
    pub fn label(self) -> &'static str {
        match self {
            JumpDirection::Forward => "forward",
            JumpDirection::Backward => "backward",
        }
    }
}

/// Between two readings the wall clock moved `by_ms` more (forward) or less
/// (backward) than the monotonic clock did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClockJump {
    pub direction: JumpDirection,
    pub by_ms: u64,
    /// The wall time of the previous reading, and of this one.
    pub from: WallTime,
    pub to: WallTime,
}

impl fmt::Display for WallClockJump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}ms ({} -> {})", self.direction.label(), self.by_ms, self.from, self.to)
    }
}

/// Compares each reading of the two clocks with the previous one (pure: the
/// driver reads the clocks and feeds the pairs in).
#[derive(Clone, Debug)]
pub struct ClockWatch {
    last: (Instant, WallTime),
    tolerance_ms: u64,
}

impl ClockWatch {
    pub fn new(now: Instant, wall: WallTime, tolerance_ms: u64) -> Self {
        ClockWatch { last: (now, wall), tolerance_ms }
    }

    /// The jump between the previous reading and `(now, wall)`, if it is beyond the
    /// tolerance. `now` earlier than the previous reading counts as no time passed
    /// (the monotonic clock never goes back; the driver asserts it).
    pub fn observe(&mut self, now: Instant, wall: WallTime) -> Option<WallClockJump> {
        let (last_now, last_wall) = self.last;
        self.last = (now.max(last_now), wall);
        let expected = last_wall.0.saturating_add(now.millis_since(last_now));
        let (direction, by_ms) = if wall.0 >= expected {
            (JumpDirection::Forward, wall.0 - expected)
        } else {
            (JumpDirection::Backward, expected - wall.0)
        };
        (by_ms > self.tolerance_ms).then_some(WallClockJump {
            direction,
            by_ms,
            from: last_wall,
            to: wall,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_jump_beyond_the_tolerance_is_reported_both_ways() {
        let tol = WALL_CLOCK_JUMP_TOLERANCE_MS;
        let hour = 3_600_000;
        let mut w = ClockWatch::new(Instant(1_000), WallTime(10 * hour), tol);
        // Both clocks advance together: nothing, however far.
        assert_eq!(w.observe(Instant(601_000), WallTime(10 * hour + 600_000)), None);
        // Within the tolerance either way: nothing.
        assert_eq!(w.observe(Instant(602_000), WallTime(10 * hour + 601_000 + tol)), None);
        assert_eq!(w.observe(Instant(603_000), WallTime(10 * hour + 602_000)), None);
        // Backward beyond it: reported, with the size of the jump.
        let jump = w.observe(Instant(604_000), WallTime(9 * hour + 603_000)).unwrap();
        assert_eq!((jump.direction, jump.by_ms), (JumpDirection::Backward, hour));
        assert_eq!(
            (jump.from, jump.to),
            (WallTime(10 * hour + 602_000), WallTime(9 * hour + 603_000))
        );
        // The next reading compares with the jumped clock: no second report.
        assert_eq!(w.observe(Instant(605_000), WallTime(9 * hour + 604_000)), None);
        // Forward beyond it.
        let jump = w.observe(Instant(605_000), WallTime(9 * hour + 604_000 + tol + 1)).unwrap();
        assert_eq!((jump.direction, jump.by_ms), (JumpDirection::Forward, tol + 1));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_millis(1_500);
        assert_eq!(t.plus_millis(250), Instant(1_750));
        assert_eq!(Instant(u64::MAX).plus_millis(1), Instant(u64::MAX));
        assert_eq!(t.millis_since(Instant(2_000)), 0);
        assert_eq!(Instant(2_000).millis_since(t), 500);
        assert_eq!(t.to_string(), "1.500s");
    }
}
