#!/usr/bin/env bash
# Runs strata's tests: the tokio build (unit, property, adapter conformance and
# end-to-end tests with the real binary), then the madsim build (simulator
# scenarios and a seed swarm). S3 tests run when S3_ENDPOINT is set, the
# PostgreSQL store tests when DATABASE_URL is set (.ci/run starts a local S3
# server and PostgreSQL for them; under CI=true a missing DATABASE_URL fails).
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
# Read here and taken out of the environment: the tests start the strata binary,
# which warns about every STRATA_… variable that is no configuration key, and the
# end-to-end tests fail on an unexpected warning.
commit_seeds="${STRATA_SIM_COMMIT_SEEDS:-0}"
commit_cluster_seeds="${STRATA_SIM_COMMIT_CLUSTER_SEEDS:-0}"
unset STRATA_SIM_COMMIT_SEEDS STRATA_SIM_COMMIT_CLUSTER_SEEDS

echo "== tokio build: tests"
cargo build --workspace --tests --bins
cargo test --workspace

echo "== madsim build: tests (swarm: ${STRATA_SEEDS:-100} seeds from ${STRATA_SEED_START:-1}, cluster swarm: ${STRATA_CLUSTER_SEEDS:-200} seeds; set STRATA_SEEDS, STRATA_CLUSTER_SEEDS for more)"
# #[madsim::test]s run with a fixed seed (MADSIM_TEST_SEED) so CI is reproducible;
# the swarm picks its own seeds (STRATA_SEED_START, STRATA_SEEDS).
# The madsim build is a debug build (debug assertions, overflow checks: every
# check_invariants runs) compiled at opt-level 1, which runs the simulator about
# 7 times faster than opt-level 0 and takes the same steps (docs/PERFORMANCE.md,
# "Simulator speed"); the tokio build keeps opt-level 0.
export CARGO_PROFILE_DEV_OPT_LEVEL=1
MADSIM_TEST_SEED="${MADSIM_TEST_SEED:-1}" RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo test --workspace --lib --bins --tests

# Off by default: STRATA_SIM_COMMIT_SEEDS=N runs N single-node seeds (and
# STRATA_SIM_COMMIT_CLUSTER_SEEDS=N cluster seeds) from a start seed derived from
# the commit (STRATA_COMMIT, else git rev-parse HEAD), printed first, so each commit
# covers new seeds and a rerun replays them (docs/TESTING.md, strata-sim).
for scenario in single cluster; do
  if [ "$scenario" = single ]; then n="$commit_seeds"; flag=""; else n="$commit_cluster_seeds"; flag="--cluster"; fi
  if [ "$n" != 0 ]; then
    echo "== madsim build: strata-sim, $n $scenario seeds from the commit's start seed"
    RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
      cargo run -p strata-sim-tests --bin strata-sim -- --seeds-from-commit "$n" $flag
  fi
done
