#!/usr/bin/env bash
# Starts one strata node on its embedded defaults: remote storage in a local
# directory, the control plane in-process on SQLite, everything under
# ${STRATA_DIR:-.strata-data}. Writes the configuration on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${STRATA_DIR:-.strata-data}"
cargo build --quiet --bin strata
./target/debug/strata init --dir "$dir"
exec ./target/debug/strata pageserver --config "$dir/strata.toml" "$@"
