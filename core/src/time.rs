//! Core's own time types. The driver is the only clock reader; machines take `now`
//! as an argument.
//!
//! - [`Instant`]: monotonic milliseconds since an epoch the driver fixes at start-up
//!   (the process start in production, simulated time zero in the simulator). Used
//!   for timers, backoff and ages within one run. Never persisted.
//! - [`WallTime`]: milliseconds since the Unix epoch, for things that outlive a run
//!   (`deleted_at` in an index, age-based retention). It may jump; machines never use
//!   it to order events.

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

#[cfg(test)]
mod tests {
    use super::*;

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
