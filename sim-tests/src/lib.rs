//! strata-sim-tests: named simulator scenarios, the seed swarm and `strata-sim`.
//!
//! The tests live in `tests/swarm.rs` (madsim build only):
//! - `swarm`: seeds `STRATA_SEED_START..+STRATA_SEEDS` (default 1..=100) of the
//!   skeleton scenario; prints simulated seconds per wall second, seeds per minute
//!   and how often each fault site fired.
//! - `determinism`: a sample of seeds run twice; the traces must be equal line for line.
//! - `corpus`: every seed in `corpus/` (races found and fixed).
//! - `replay`: `STRATA_REPLAY_SEED=N` runs one seed and prints its whole trace.
//! - `cluster_swarm`: seeds `STRATA_CLUSTER_SEED_START..+STRATA_CLUSTER_SEEDS`
//!   (default 1..=200) of the cluster scenario (`strata_runtime_sim::cluster`);
//!   `cluster_corpus` replays `corpus/cluster/`; `cluster_replay` takes
//!   `STRATA_REPLAY_CLUSTER_SEED=N`.
//!
//! `tests/schedule.rs` checks schedules (a recorded one replays the same run) and
//! shrinking ([`shrink`]).
//!
//! The `strata-sim` binary ([`cli`], madsim build) replays one seed (`--seed S`,
//! following a schedule file with `--schedule FILE`: [`shrink`]), shrinks a
//! failing seed's schedule (`--shrink S`), or runs a swarm with a summary table
//! (`--seeds A..B`, `--seeds-from-commit N`);
//! [`run`] is the code it shares with the tests; [`html`] draws a run's picture
//! (`--html FILE`, and beside each failure of a swarm). The one-line replay command a
//! failure prints:
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo run -p strata-sim-tests --bin strata-sim -- --seed N`

pub mod commit_seed;
pub mod html;

#[cfg(madsim)]
pub mod cli;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod shrink;
