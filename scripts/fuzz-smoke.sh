#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a bounded number of
# inputs, starting from the committed seeds. A smoke test, not a fuzzing campaign:
# it proves the targets build and that the seeds and their near neighbours do not
# crash. Runs on stable Rust without a sanitizer (`-s none`).
#
#   FUZZ_RUNS   inputs per target (default 20000)
#   FUZZ_SECS   wall-clock cap per target in seconds (default 120)
set -euo pipefail

cd "$(dirname "$0")/../fuzz"

runs="${FUZZ_RUNS:-20000}"
secs="${FUZZ_SECS:-120}"

if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
    echo "fuzz-smoke: installing cargo-fuzz 0.13.2" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

for target in $(cargo fuzz list); do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    dirs=("$corpus")
    if [ -d "seeds/$target" ]; then
        dirs+=("seeds/$target")
    fi
    echo "fuzz-smoke: $target, $runs runs (at most ${secs}s)" >&2
    cargo fuzz run -s none "$target" "${dirs[@]}" -- -runs="$runs" -max_total_time="$secs"
done
echo "fuzz-smoke: all targets passed" >&2
