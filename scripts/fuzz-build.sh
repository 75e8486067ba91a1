#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ (release, libFuzzer linked by libfuzzer-sys) the
# way `cargo fuzz build -s none -a` (cargo-fuzz 0.13.2) does, without needing
# cargo-fuzz installed: the same RUSTFLAGS (SanitizerCoverage instrumentation,
# --cfg fuzzing, debug assertions, one codegen unit) and an explicit --target, so
# that build scripts and proc macros are not instrumented. CI uses this to skip a
# 1m45s `cargo install cargo-fuzz`; by hand, `cargo fuzz run -s none -a TARGET`
# works as well (it builds into the same directory with the same flags).
#
# Binaries land in fuzz/target/x86_64-unknown-linux-gnu/release/<target>.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

triple="$(rustc -vV | awk '/^host:/ {print $2}')"
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cdebug-assertions
    -Ccodegen-units=1
)
RUSTFLAGS="${RUSTFLAGS:-} ${flags[*]}" cargo build --release --bins \
    --target "$triple" --config 'profile.release.debug="line-tables-only"'
