#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each, one after the other, for a
# bounded time (and number of inputs), starting from the committed corpus in
# fuzz/seeds/<target>. Fails on the first crash (libFuzzer leaves the input in
# fuzz/artifacts/<target>/). Prints, per target, the inputs run, executions per
# second and libFuzzer's coverage (edges, features) at the end.
#
# CI runs it with the defaults (a smoke test: about 10 s per target). For a longer
# campaign run it by hand, e.g. `FUZZ_SECS=600 scripts/fuzz-smoke.sh`, or one
# target: `FUZZ_TARGETS=layer_file FUZZ_RUNS=1000000 FUZZ_SECS=3600 scripts/fuzz-smoke.sh`.
#
#   FUZZ_SECS     wall-clock bound per target, seconds (default 10)
#   FUZZ_RUNS     bound on inputs per target (default 100000000: time decides)
#   FUZZ_TARGETS  space-separated targets to run (default: every non-mutant target)
#   FUZZ_NICE     nice level for the fuzzing processes (default 0)
#
# The `*_mutant` targets (a copy of core with ordering rules broken on purpose) are
# skipped: scripts/fuzz-mutants.sh runs them and expects them to crash.
#
# Runs on stable Rust without a sanitizer (`-s none`), with debug assertions and
# overflow checks on (`-a`, as in strata's tests). cargo-fuzz 0.13.2 is used
# from PATH if it is there, else installed into target/tools/ of this clone (nothing
# is cached outside the clone); fuzz/ has its own Cargo.lock and target/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

secs="${FUZZ_SECS:-10}"
runs="${FUZZ_RUNS:-100000000}"
niceness="${FUZZ_NICE:-0}"

if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
    tools="$root/target/tools"
    if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q '0\.13\.2'; then
        echo "fuzz-smoke: installing cargo-fuzz 0.13.2 into $tools" >&2
        CARGO_TARGET_DIR="$root/target/tools-build" \
            cargo install cargo-fuzz --version 0.13.2 --locked --root "$tools"
    fi
    export PATH="$tools/bin:$PATH"
fi

echo "fuzz-smoke: building the targets (-s none -a, release)" >&2
cargo fuzz build -s none -a

targets="${FUZZ_TARGETS:-$(cargo fuzz list | grep -v '_mutant$' | tr '\n' ' ')}"
summary=()
for target in $targets; do
    corpus="corpus/$target"
    mkdir -p "$corpus" "seeds/$target"
    log="$(mktemp)"
    echo "fuzz-smoke: $target, at most ${secs}s / $runs inputs" >&2
    # New inputs go to corpus/ (ignored by git); seeds/ is read. -print_final_stats
    # gives the totals parsed below.
    if ! nice -n "$niceness" cargo fuzz run -s none -a "$target" "$corpus" "seeds/$target" -- \
        -max_total_time="$secs" -runs="$runs" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz-smoke: $target FAILED (input kept in fuzz/artifacts/$target/)" >&2
        rm -f "$log"
        exit 1
    fi
    executed=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    per_sec=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
    summary+=("$(printf '%-16s %12s runs %9s exec/s  cov %6s  ft %7s' \
        "$target" "${executed:-?}" "${per_sec:-?}" "${cov:-?}" "${ft:-?}")")
    rm -f "$log"
done

echo "fuzz-smoke: all targets passed" >&2
printf '%s\n' "${summary[@]}"
