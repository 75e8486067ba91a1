#!/usr/bin/env bash
# Runs schemathesis (property-based API testing) against a live strata node with
# the node's own OpenAPI document (GET /v1/openapi.json). Fails on a 500, on a
# status the document does not list for the operation, on a body that does not
# match the document's schema, and on a content type it does not name.
#
#   bash scripts/schemathesis.sh            # builds strata if needed
#
# The node runs on its embedded defaults (`strata init`: remote storage in a local
# directory, control plane on SQLite) in a temporary directory, on a free
# 127.0.0.1 port, with auth off (loopback); it is stopped at the end. The first run
# installs schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV (default
# target/schemathesis-venv, ~20 s); later runs reuse it.
#
# Bounds: $SCHEMATHESIS_EXAMPLES test cases per operation and phase (default 25)
# and $SCHEMATHESIS_MAX_SECS for the whole run (default 100): with the install,
# under CI's 3 minutes. A request may take up to 40 s (the node's own deadline,
# limits.http_request_deadline_ms, answers 503 at 30 s; a tenant delete waits for
# the deletion queue, ~10 s on the defaults). scripts/schemathesis.toml allows the
# documented 503 (with Retry-After). A report (JUnit) goes to target/schemathesis/.
# Reads nothing from stdin; safe under CI=true.
set -euo pipefail
exec </dev/null
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
SCHEMATHESIS_VENV="${SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-25}"
MAX_SECS="${SCHEMATHESIS_MAX_SECS:-100}"
STRATA="${STRATA_BIN:-$PWD/target/debug/strata}"
OUT="$PWD/target/schemathesis"

say() { echo "schemathesis.sh: $*" >&2; }
fail() { say "$*"; exit 1; }

started=$(date +%s)
bin="$SCHEMATHESIS_VENV/bin/schemathesis" marker="$SCHEMATHESIS_VENV/.strata-$SCHEMATHESIS_VERSION"
if [[ ! -x "$bin" || ! -f "$marker" ]]; then
  command -v python3 >/dev/null || fail "python3 not found"
  say "installing schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
  rm -rf "$SCHEMATHESIS_VENV"
  mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
  python3 -m venv "$SCHEMATHESIS_VENV" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --no-input --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" || fail "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
  touch "$marker"
fi
say "schemathesis ready after $(( $(date +%s) - started ))s"

[[ -x "$STRATA" ]] || cargo build --quiet --bin strata
dir=$(mktemp -d "${TMPDIR:-/tmp}/strata-schemathesis.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$STRATA" init --dir "$dir/node" >/dev/null
STRATA_LOG=info "$STRATA" pageserver --config "$dir/node/strata.toml" \
  -c "listen_http=127.0.0.1:$port" >"$dir/node.log" 2>&1 &
node_pid=$!
stop_node() {
  if kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  wait "$node_pid" 2>/dev/null || true
}
trap 'stop_node; rm -rf "$dir"' EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  kill -0 "$node_pid" 2>/dev/null || { cat "$dir/node.log" >&2; fail "the node exited before becoming active"; }
  if curl -sf --max-time 2 "$base/v1/status" | grep -q '"phase":"Active"'; then break; fi
  sleep 0.1
done
curl -sf --max-time 2 "$base/v1/status" | grep -q '"phase":"Active"' || fail "the node did not become active"
say "node active on $base (pid $node_pid)"

mkdir -p "$OUT"
status=0
# --max-time bounds the phases; the stateful one may overrun it by a few seconds:
# the hard stop is 60 s later (exit 124, a failure).
timeout --signal=INT --kill-after=10 "$(( MAX_SECS + 60 ))" \
  "$bin" --config-file scripts/schemathesis.toml run "$base/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
  --max-examples "$EXAMPLES" \
  --max-time "$MAX_SECS" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --request-timeout 40 \
  --report junit --report-dir "$OUT" \
  || status=$?
if [[ $status -ne 0 ]]; then
  say "failed (exit $status); the node's log:"
  grep -E " (ERROR|WARN) " "$dir/node.log" | tail -n 50 >&2 || true
fi
say "done in $(( $(date +%s) - started ))s (schemathesis exit $status)"
exit "$status"
