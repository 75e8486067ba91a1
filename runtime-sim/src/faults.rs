//! Fault injection: named sites with a probability per run, and a count of how
//! often each fired.
//!
//! A simulated adapter asks [`Faults::fire`] at each place where the world may
//! misbehave. The nemesis (or a test) sets the probabilities, usually from the
//! seed, and can [`heal`](Faults::heal) everything for the liveness phase. The run
//! report prints [`Faults::fired`], which lists every known site, so a site that
//! never fired shows as 0.
//!
//! Randomness comes only from `madsim::rand`; a site with probability 0 (or any
//! site while healed) draws no random number.

use madsim::rand::{Rng, thread_rng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The names of every fault site of the simulated adapters.
pub mod site {
    /// An fsync (file or directory) fails; the data it covered is unknown.
    pub const DISK_FSYNC_FAIL: &str = "disk.fsync_fail";
    /// A write or a directory creation fails with ENOSPC.
    pub const DISK_ENOSPC: &str = "disk.enospc";
    /// An episode starts: the disk is full, every file or directory creation fails
    /// with ENOSPC for seconds (until an operator frees space). Counted once per
    /// episode. Exercises the disk-full policy (`strata_core::timeline` `disk_full.rs`).
    pub const DISK_FULL: &str = "disk.full";
    /// One disk step takes much longer than usual.
    pub const DISK_SLOW_IO: &str = "disk.slow_io";
    /// At a crash, the last unsynced write survives torn at a 512-byte boundary
    /// instead of being lost.
    pub const DISK_TORN_WRITE: &str = "disk.crash.torn_write";

    /// A request fails before reaching the store.
    pub const REMOTE_PUT_TRANSIENT: &str = "remote.put.transient";
    /// The put is applied, the caller sees `Transient`.
    pub const REMOTE_PUT_LOST_RESPONSE: &str = "remote.put.lost_response";
    /// The caller sees `Transient` now; the put is applied later.
    pub const REMOTE_PUT_DELAYED: &str = "remote.put.delayed";
    pub const REMOTE_GET_TRANSIENT: &str = "remote.get.transient";
    pub const REMOTE_LIST_TRANSIENT: &str = "remote.list.transient";
    pub const REMOTE_DELETE_TRANSIENT: &str = "remote.delete.transient";
    pub const REMOTE_DELETE_LOST_RESPONSE: &str = "remote.delete.lost_response";
    pub const REMOTE_DELETE_DELAYED: &str = "remote.delete.delayed";
    /// One request takes seconds instead of milliseconds.
    pub const REMOTE_LATENCY_SPIKE: &str = "remote.latency_spike";
    /// An episode starts: the store refuses every write (PUT, DELETE) with access
    /// denied, as a remote directory made read-only, for seconds; then an operator
    /// fixes it. Counted once per episode.
    pub const REMOTE_ACCESS_DENIED: &str = "remote.access_denied";
    /// A streaming download (`get_to_file`) delivers a body with one byte flipped
    /// (the stored object is intact): the caller's size/CRC check must refuse it.
    pub const REMOTE_GET_TO_FILE_CORRUPT: &str = "remote.get_to_file.corrupt";

    /// An episode starts: calls to the control plane cannot reach it (connection
    /// refused) for seconds; counted once per episode.
    pub const CP_UNREACHABLE: &str = "cp.unreachable";
    /// One call to the control plane arrives after the node's deadline for it
    /// (the node has timed it out; the late delivery is dropped).
    pub const CP_SLOW: &str = "cp.slow";

    /// The pageserver's clock starts running fast or slow (0.5–2x), both its
    /// monotonic and its wall clock (one oscillator). Asked twice a simulated second.
    pub const CLOCK_SKEW: &str = "clock.skew";
    /// The pageserver's clocks jump forward together by 1–30 s (a paused VM resumes):
    /// every timer that fell due fires at once. Asked twice a simulated second.
    pub const CLOCK_MONOTONIC_JUMP: &str = "clock.monotonic_jump";
    /// The pageserver's wall clock alone steps forward or back by 2 s–1 h (an
    /// operator or NTP stepping it): beyond the tolerance, so the driver reports it
    /// to the node. Asked twice a simulated second.
    pub const CLOCK_WALL_JUMP: &str = "clock.wall_jump";

    /// A local file write (`write_atomic`) is held for [`super::DISK_HOLD_WRITE_MS`]
    /// just before it lands (the rename into place). Not in [`ALL`]: off in every
    /// swarm run; the hold scenario (`crate::hold`) switches it on.
    pub const DISK_HOLD_WRITE: &str = "disk.hold_write";
    /// A remote PUT or DELETE is held for [`super::REMOTE_HOLD_CALL_MS`] before it is
    /// applied. Not in [`ALL`]: off in every swarm run; the hold scenario switches it on.
    pub const REMOTE_HOLD_CALL: &str = "remote.hold_call";

    /// Every site above but the two hold sites.
    pub const ALL: &[&str] = &[
        DISK_FSYNC_FAIL,
        DISK_ENOSPC,
        DISK_SLOW_IO,
        DISK_TORN_WRITE,
        REMOTE_PUT_TRANSIENT,
        REMOTE_PUT_LOST_RESPONSE,
        REMOTE_PUT_DELAYED,
        REMOTE_GET_TRANSIENT,
        REMOTE_LIST_TRANSIENT,
        REMOTE_DELETE_TRANSIENT,
        REMOTE_DELETE_LOST_RESPONSE,
        REMOTE_DELETE_DELAYED,
        REMOTE_LATENCY_SPIKE,
        REMOTE_ACCESS_DENIED,
        REMOTE_GET_TO_FILE_CORRUPT,
        CP_UNREACHABLE,
        CP_SLOW,
        CLOCK_SKEW,
        CLOCK_MONOTONIC_JUMP,
        CLOCK_WALL_JUMP,
        DISK_FULL,
    ];

    /// An episode starts (cluster scenario): one pageserver and the control plane
    /// cannot reach each other, both ways, for 1–15 s (`crate::cluster::net`).
    pub const NET_PARTITION_CP: &str = "net.partition.cp";
    /// An episode starts (cluster scenario): one pageserver and the client cannot
    /// reach each other, both ways, for 1–15 s.
    pub const NET_PARTITION_CLIENT: &str = "net.partition.client";
    /// One control-plane call is held 1–12 s in transit (cluster scenario).
    pub const NET_DELAY_CP: &str = "net.delay.cp";
    /// One client request to a pageserver is held 1–8 s in transit (cluster scenario).
    pub const NET_DELAY_CLIENT: &str = "net.delay.client";

    /// The cluster scenario's sites, beyond [`ALL`]: drawn from a mix of the seed
    /// (never from the run's stream), on only in cluster runs.
    pub const CLUSTER: &[&str] =
        &[NET_PARTITION_CP, NET_PARTITION_CLIENT, NET_DELAY_CP, NET_DELAY_CLIENT];

    /// The clock sites: asked by the clock nemesis (`scenario.rs`), which runs only
    /// when one of them is on.
    pub const CLOCK: &[&str] = &[CLOCK_SKEW, CLOCK_MONOTONIC_JUMP, CLOCK_WALL_JUMP];

    /// The sites of [`ALL`] added after the corpus's first seeds: their setting
    /// comes from a separate mix of the seed, not from the run's random stream, so
    /// that adding one did not change the runs of the seeds in the corpus. Every
    /// other site is drawn from that stream, in the order of [`ALL`].
    pub const MIXED: &[&str] = &[
        REMOTE_ACCESS_DENIED,
        REMOTE_GET_TO_FILE_CORRUPT,
        CP_UNREACHABLE,
        CP_SLOW,
        CLOCK_SKEW,
        CLOCK_MONOTONIC_JUMP,
        CLOCK_WALL_JUMP,
        DISK_FULL,
    ];
}

/// How long [`site::DISK_HOLD_WRITE`] holds a write: longer than the simulator's
/// `shutdown_grace_ms` plus `stop_drain_timeout_ms` (10 s + 10 s), so that a stop
/// reaches its drain timeout with the write still out.
pub const DISK_HOLD_WRITE_MS: u64 = 40_000;
/// How long [`site::REMOTE_HOLD_CALL`] holds a call: longer than a disk hold, so a
/// call held just before a write still outlasts it.
pub const REMOTE_HOLD_CALL_MS: u64 = 60_000;

/// One hold: which site, on what (path or key), when it began and when it ended
/// (`None` while it lasts), in simulated time.
#[derive(Clone, Debug)]
pub struct Hold {
    pub site: &'static str,
    pub what: String,
    pub began: madsim::time::Instant,
    pub ended: Option<madsim::time::Instant>,
}

#[derive(Debug, Default)]
struct State {
    probability: BTreeMap<&'static str, f64>,
    fired: BTreeMap<&'static str, u64>,
    healed: bool,
    holds: Vec<Hold>,
}

/// A cloneable handle to one run's fault settings and counters. Share one between
/// the simulated disk and object store of a world so the run has one report.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl Faults {
    /// Every site off.
    pub fn new() -> Faults {
        Faults::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the probability (0.0..=1.0) that `site` fires each time it is reached.
    pub fn set(&self, site: &'static str, probability: f64) {
        assert!((0.0..=1.0).contains(&probability), "{site}: probability {probability}");
        self.lock().probability.insert(site, probability);
    }

    pub fn probability(&self, site: &'static str) -> f64 {
        self.lock().probability.get(site).copied().unwrap_or(0.0)
    }

    /// Stops every fault (probabilities are kept for [`Faults::unheal`]).
    pub fn heal(&self) {
        self.lock().healed = true;
    }

    /// Turns the configured faults back on.
    pub fn unheal(&self) {
        self.lock().healed = false;
    }

    pub fn is_healed(&self) -> bool {
        self.lock().healed
    }

    /// Whether `site` fires now (counted when it does).
    pub fn fire(&self, site: &'static str) -> bool {
        let mut state = self.lock();
        let p = state.probability.get(site).copied().unwrap_or(0.0);
        if state.healed || p <= 0.0 {
            return false;
        }
        let fires = p >= 1.0 || thread_rng().gen_bool(p);
        if fires {
            *state.fired.entry(site).or_insert(0) += 1;
        }
        fires
    }

    /// Holds the caller for `ms` of simulated time if `site` fires now, recording
    /// the hold (see [`Faults::holds`]).
    pub async fn hold(&self, site: &'static str, what: &str, ms: u64) {
        if !self.fire(site) {
            return;
        }
        let began = madsim::time::Instant::now();
        let i = {
            let mut state = self.lock();
            state.holds.push(Hold { site, what: what.to_owned(), began, ended: None });
            state.holds.len() - 1
        };
        madsim::time::sleep(std::time::Duration::from_millis(ms)).await;
        self.lock().holds[i].ended = Some(madsim::time::Instant::now());
    }

    /// Every hold so far, in the order they began.
    pub fn holds(&self) -> Vec<Hold> {
        self.lock().holds.clone()
    }

    /// How often each site fired: every site of [`site::ALL`] and every site given a
    /// probability, with 0 for those that never fired.
    pub fn fired(&self) -> BTreeMap<&'static str, u64> {
        let state = self.lock();
        let mut out: BTreeMap<&'static str, u64> = site::ALL.iter().map(|s| (*s, 0)).collect();
        for s in state.probability.keys() {
            out.entry(s).or_insert(0);
        }
        for (s, n) in &state.fired {
            out.insert(s, *n);
        }
        out
    }
}
