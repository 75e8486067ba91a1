//! The pageserver's simulated clock: one per world (it outlives node restarts, as
//! a host's clock does), read by the driver through its `Clock` seam.
//!
//! Both readings come from one simulated oscillator: the monotonic clock is the
//! simulator's time scaled by a rate (1.0 unless skewed), plus the forward jumps so
//! far; the wall clock is a start instant plus the monotonic clock plus its own
//! steps. So:
//! - **skew** ([`SimClock::set_rate_permille`]): the node's clock runs fast or slow
//!   against the simulator's (and the workload's) time; both of its clocks alike,
//!   as on a real host, so the driver sees no wall-clock jump.
//! - **a monotonic jump** ([`SimClock::jump_monotonic`]): forward only, both clocks
//!   together, as after a paused VM resumes; every timer that fell due fires at once.
//! - **a wall step** ([`SimClock::step_wall`]): the wall clock alone, either way, as
//!   an operator or NTP stepping it; the driver reports it to the node when beyond
//!   `WALL_CLOCK_JUMP_TOLERANCE_MS`.
//!
//! The monotonic reading never goes back: rates are positive and jumps forward.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::time::{Instant, WallTime};
use strata_runtime_tokio::driver::Clock;

/// Slowest and fastest rate a skew picks, in thousandths of true time.
pub const SKEW_MIN_PERMILLE: u64 = 500;
pub const SKEW_MAX_PERMILLE: u64 = 2_000;
/// The wall clock's reading at the simulation's start: 2026-01-01T00:00:00Z.
pub const WALL_START_UNIX_MS: u64 = 1_767_225_600_000;

#[derive(Debug)]
struct State {
    origin: madsim::time::Instant,
    /// Simulator milliseconds since `origin`, and the monotonic reading, at the
    /// last rate change or jump.
    base_sim_ms: u64,
    base_mono_ms: u64,
    rate_permille: u64,
    wall_offset_ms: i64,
}

impl State {
    fn sim_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mono_ms(&self) -> u64 {
        let sim = self.sim_ms().saturating_sub(self.base_sim_ms);
        self.base_mono_ms.saturating_add(sim.saturating_mul(self.rate_permille) / 1_000)
    }

    /// Starts a new segment at the current reading.
    fn rebase(&mut self) {
        self.base_mono_ms = self.mono_ms();
        self.base_sim_ms = self.sim_ms();
    }
}

/// A cloneable handle to one world's pageserver clock.
#[derive(Clone, Debug)]
pub struct SimClock {
    state: Arc<Mutex<State>>,
}

impl SimClock {
    /// A true clock starting now.
    pub fn new() -> Self {
        let state = State {
            origin: madsim::time::Instant::now(),
            base_sim_ms: 0,
            base_mono_ms: 0,
            rate_permille: 1_000,
            wall_offset_ms: 0,
        };
        SimClock { state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on the clock runs at `permille` thousandths of true time.
    pub fn set_rate_permille(&self, permille: u64) {
        assert!(permille > 0, "a clock that stops is not a clock");
        let mut s = self.lock();
        s.rebase();
        s.rate_permille = permille;
    }

    pub fn rate_permille(&self) -> u64 {
        self.lock().rate_permille
    }

    /// Both clocks jump forward by `ms` (a pause).
    pub fn jump_monotonic(&self, ms: u64) {
        let mut s = self.lock();
        s.rebase();
        s.base_mono_ms = s.base_mono_ms.saturating_add(ms);
    }

    /// The wall clock alone steps by `ms` (negative: back).
    pub fn step_wall(&self, ms: i64) {
        self.lock().wall_offset_ms += ms;
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SimClock {
    fn monotonic(&self) -> Instant {
        Instant::from_millis(self.lock().mono_ms())
    }

    fn wall(&self) -> WallTime {
        let s = self.lock();
        let wall = WALL_START_UNIX_MS.saturating_add(s.mono_ms());
        WallTime::from_unix_millis(wall.saturating_add_signed(s.wall_offset_ms))
    }

    fn sleep_for(&self, ms: u64) -> Duration {
        let rate = self.lock().rate_permille;
        Duration::from_millis(ms.saturating_mul(1_000).div_ceil(rate))
    }
}
