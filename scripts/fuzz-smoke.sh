#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each, FUZZ_JOBS at a time, for a
# bounded time (and number of inputs), starting from the committed corpus in
# fuzz/seeds/<target>. Fails if any target crashed (libFuzzer leaves the input in
# fuzz/artifacts/<target>/; the end of its log is printed). Prints, per target, the inputs run, executions per
# second and libFuzzer's coverage (edges, features) at the end.
#
# CI runs it with FUZZ_SECS=10 FUZZ_JOBS=3 (a smoke test: about 10 s per target,
# three at a time on its 2 cores: 21 targets in 70 s instead of 110 s). For a longer
# campaign run it by hand, e.g. `FUZZ_SECS=600 scripts/fuzz-smoke.sh`, or one
# target: `FUZZ_TARGETS=layer_file FUZZ_RUNS=1000000 FUZZ_SECS=3600 scripts/fuzz-smoke.sh`.
#
#   FUZZ_SECS     wall-clock bound per target, seconds (default 10)
#   FUZZ_RUNS     bound on inputs per target (default 100000000: time decides)
#   FUZZ_TARGETS  space-separated targets to run (default: every non-mutant target)
#   FUZZ_NICE     nice level for the fuzzing processes (default 0)
#   FUZZ_JOBS     targets run at once (default 2: CI's machine has 2 cores)
#   FUZZ_SEED     libFuzzer's -seed (default 0: a random seed per run). CI sets 1, so
#                 that a crash it finds is found again by the same command; a longer
#                 campaign leaves it random.
#
# The `*_mutant` targets (a copy of core with ordering rules broken on purpose) are
# skipped: scripts/fuzz-mutants.sh runs them and expects them to crash.
#
# Runs on stable Rust without a sanitizer, with debug assertions and overflow
# checks on, built by scripts/fuzz-build.sh with the flags of `cargo fuzz build -s
# none -a` (so cargo-fuzz need not be installed); fuzz/ has its own Cargo.lock and
# target/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

secs="${FUZZ_SECS:-10}"
runs="${FUZZ_RUNS:-100000000}"
niceness="${FUZZ_NICE:-0}"

echo "fuzz-smoke: building the targets (scripts/fuzz-build.sh: cargo-fuzz's -s none -a flags, release)" >&2
bash "$root/scripts/fuzz-build.sh"

targets="${FUZZ_TARGETS:-$(awk -F'"' '/^\[\[bin\]\]/ {b = 1} b && /^name = / {print $2; b = 0}' Cargo.toml | grep -v '_mutant$' | tr '\n' ' ')}"
jobs="${FUZZ_JOBS:-2}"
bin="target/x86_64-unknown-linux-gnu/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Runs one target (already built) on its corpus; its log and summary line go to
# $work. New inputs go to corpus/ (ignored by git); seeds/ is read.
# -print_final_stats gives the totals parsed below.
run_one() {
    local target="$1" log="$work/$1.log"
    mkdir -p "corpus/$target" "seeds/$target" "artifacts/$target"
    if ! nice -n "$niceness" "$bin/$target" "corpus/$target" "seeds/$target" \
        -artifact_prefix="artifacts/$target/" -max_total_time="$secs" -runs="$runs" \
        -seed="${FUZZ_SEED:-0}" -print_final_stats=1 >"$log" 2>&1; then
        return 1
    fi
    local executed per_sec cov ft
    executed=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    per_sec=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
    printf '%-16s %12s runs %9s exec/s  cov %6s  ft %7s\n' \
        "$target" "${executed:-?}" "${per_sec:-?}" "${cov:-?}" "${ft:-?}" >"$work/$target.sum"
}

running=0
for target in $targets; do
    echo "fuzz-smoke: $target, at most ${secs}s / $runs inputs" >&2
    run_one "$target" || echo "$target" >>"$work/failed" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
if [ -s "$work/failed" ]; then
    for target in $(cat "$work/failed"); do
        tail -n 60 "$work/$target.log" >&2
        echo "fuzz-smoke: $target FAILED (input kept in fuzz/artifacts/$target/)" >&2
    done
    exit 1
fi

echo "fuzz-smoke: all targets passed" >&2
for target in $targets; do
    cat "$work/$target.sum"
done
