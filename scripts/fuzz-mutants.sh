#!/usr/bin/env bash
# Checks that the machine fuzz targets can fail: each `*_mutant` target fuzzes a
# copy of strata-core with one ordering rule broken on purpose (fuzz/mutant/build.rs:
# the upload queue hands an unlinked layer to the deletion queue before an index
# without it is durable; the deletion queue executes a list before validating it).
# Each must crash within MUTANT_SECS (default 60), starting from an empty corpus;
# the script prints how long each took and fails if one survives.
#
#   MUTANT_SECS   time allowed per mutant, seconds (default 60)
#   MUTANT_TRIES  independent runs per mutant (libFuzzer seeds 1..N, default 1)
#
# Builds with scripts/fuzz-build.sh (a no-op after scripts/fuzz-smoke.sh).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

secs="${MUTANT_SECS:-60}"
tries="${MUTANT_TRIES:-1}"

bash "$root/scripts/fuzz-build.sh"
bin="target/x86_64-unknown-linux-gnu/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for target in $(awk -F'"' '/^\[\[bin\]\]/ {b = 1} b && /^name = / {print $2; b = 0}' Cargo.toml | grep '_mutant$'); do
    for seed in $(seq 1 "$tries"); do
        mkdir -p "$work/$target-$seed"
        start=$(date +%s%N)
        set +e
        "$bin/$target" -seed="$seed" -max_total_time="$secs" \
            -artifact_prefix="$work/$target-$seed/" "$work/$target-$seed" >"$work/log" 2>&1
        rc=$?
        set -e
        ms=$(( ($(date +%s%N) - start) / 1000000 ))
        if [ "$rc" -eq 0 ] || ! grep -q 'panicked' "$work/log"; then
            tail -n 20 "$work/log" >&2
            echo "fuzz-mutants: $target (seed $seed) survived ${secs}s: its target misses the broken rule" >&2
            exit 1
        fi
        why=$(grep -m1 -A1 'panicked at' "$work/log" | tail -n 1)
        printf 'fuzz-mutants: %-22s seed %-3s found in %6d ms: %s\n' "$target" "$seed" "$ms" "$why"
    done
done
