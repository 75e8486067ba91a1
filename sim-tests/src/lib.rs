//! strata-sim-tests: named simulator scenarios and the seed swarm.
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
//! The one-line replay command a failure prints:
//! `STRATA_REPLAY_SEED=N RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test -p strata-sim-tests --test swarm replay -- --nocapture`
