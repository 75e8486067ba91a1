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
//! site while healed) draws no random number. A run that records or follows a
//! schedule (`crate::schedule`) counts each call per site; its decision is then
//! the schedule's.

use madsim::rand::{Rng, thread_rng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The names of every fault site: the simulated adapters' (this module) and the
/// driver's failpoints, in one registry that both builds compile.
pub use strata_adapters::fault_sites as site;

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
        if state.healed {
            return false;
        }
        let p = state.probability.get(site).copied().unwrap_or(0.0);
        let drawn = p > 0.0 && (p >= 1.0 || thread_rng().gen_bool(p));
        // A run that follows a schedule fires exactly what it names; the draw
        // above is made all the same, so later draws stay where they were.
        let fires = crate::schedule::decide(crate::schedule::Kind::Fault, site, drawn);
        if fires {
            *state.fired.entry(site).or_insert(0) += 1;
            drop(state);
            // On the lane of the machine that reached the site.
            crate::sim_trace::record(
                crate::sim_trace::Lane::Here,
                "fault",
                "-",
                "effect",
                format_args!("{site} fired"),
            );
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

    /// Delays the caller by `min_ms..=max_ms` (drawn) of simulated time if `site`
    /// fires now: an answer held after its effect (`disk.complete.late`,
    /// `remote.complete.late`).
    pub async fn late(&self, site: &'static str, (min_ms, max_ms): (u64, u64)) {
        if self.fire(site) {
            let ms = thread_rng().gen_range(min_ms..=max_ms.max(min_ms));
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
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
