#!/usr/bin/env bash
# A local S3 server (moto) for strata's S3 tests. Everything listens on 127.0.0.1 only.
#
#   scripts/s3-local.sh start PORT [DIR]   start moto_server on 127.0.0.1:PORT; prints the endpoint URL
#   scripts/s3-local.sh stop [DIR]         stop the server started with DIR (only the pid recorded there)
#
# DIR: the argument, else $S3_LOCAL_DIR, else ${TMPDIR:-/tmp}/strata-s3-local. It holds
# moto.pid, moto.port and moto.log. The first start installs moto[server]==$MOTO_VERSION
# (default 5.2.5) into $MOTO_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/strata-moto-venv);
# later starts reuse it. Starting again with the same DIR and PORT prints the URL again;
# a different PORT for a running DIR, or a PORT already taken, is an error.
# Reads nothing from stdin; safe under CI=true.
#
#   S3_ENDPOINT=$(bash scripts/s3-local.sh start 5599)
#   trap 'bash scripts/s3-local.sh stop' EXIT
#   S3_ENDPOINT=$S3_ENDPOINT cargo test -p strata-adapters --test s3_moto
set -euo pipefail
exec </dev/null

MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
MOTO_VENV="${MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-moto-venv}"
READY_WAIT_S=30

say() { echo "s3-local.sh: $*" >&2; }
fail() { say "$*"; exit 1; }

default_dir() { echo "${S3_LOCAL_DIR:-${TMPDIR:-/tmp}/strata-s3-local}"; }

# Prints the moto_server path, installing it first if the venv lacks it. A marker
# file written after a successful install tells a complete venv from one left behind
# by an interrupted install (which is removed and redone).
ensure_moto() {
  local bin="$MOTO_VENV/bin/moto_server" marker="$MOTO_VENV/.strata-moto-$MOTO_VERSION"
  if [[ -x "$bin" && -f "$marker" ]]; then echo "$bin"; return 0; fi
  command -v python3 >/dev/null || fail "python3 not found"
  say "installing moto[server]==$MOTO_VERSION into $MOTO_VENV (first run, ~1 min)"
  rm -rf "$MOTO_VENV"
  mkdir -p "$(dirname "$MOTO_VENV")"
  python3 -m venv "$MOTO_VENV" >&2 || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$MOTO_VENV/bin/pip" install --quiet --no-input --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" >&2 || fail "pip install moto[server]==$MOTO_VERSION failed"
  [[ -x "$bin" ]] || fail "install finished but $bin is missing"
  touch "$marker"
  echo "$bin"
}

running() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
is_our_moto() { running "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q moto_server; }
answers() { curl -s -o /dev/null --max-time 2 "$1/"; }

cmd_start() {
  local port="${1:-}" dir="${2:-$(default_dir)}"
  [[ "$port" =~ ^[0-9]+$ ]] || fail "usage: s3-local.sh start PORT [DIR] (PORT a number, got '$port')"
  command -v curl >/dev/null || fail "curl not found"
  mkdir -p "$dir"
  local pidf="$dir/moto.pid" portf="$dir/moto.port" url="http://127.0.0.1:$port"
  if [[ -f "$pidf" ]] && is_our_moto "$(cat "$pidf")"; then
    local have; have="$(cat "$portf" 2>/dev/null || true)"
    [[ "$have" == "$port" ]] || fail "a server for $dir already runs on port $have (pid $(cat "$pidf"))"
    say "already running (pid $(cat "$pidf"))"
    echo "$url"
    return 0
  fi
  rm -f "$pidf" "$portf"
  answers "$url" && fail "port $port is already in use"
  local bin; bin="$(ensure_moto)"
  # Detach all three standard streams: a child holding stdout would hang $(...).
  nohup "$bin" -H 127.0.0.1 -p "$port" </dev/null >"$dir/moto.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$pidf"
  echo "$port" >"$portf"
  local tries=$((READY_WAIT_S * 4)) i
  for ((i = 1; i <= tries; i++)); do
    if answers "$url"; then
      say "ready (pid $pid, log $dir/moto.log)"
      echo "$url"
      return 0
    fi
    if ! running "$pid"; then
      tail -n 20 "$dir/moto.log" >&2 || true
      rm -f "$pidf" "$portf"
      fail "moto_server exited during start"
    fi
    sleep 0.25
  done
  tail -n 20 "$dir/moto.log" >&2 || true
  kill "$pid" 2>/dev/null || true
  rm -f "$pidf" "$portf"
  fail "moto_server not ready after ${READY_WAIT_S} s"
}

cmd_stop() {
  local dir="${1:-$(default_dir)}"
  local pidf="$dir/moto.pid"
  if [[ ! -f "$pidf" ]]; then say "not running (no $pidf)"; return 0; fi
  local pid; pid="$(cat "$pidf")"
  if is_our_moto "$pid"; then
    kill "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    say "stopped pid $pid"
  else
    say "pid $pid is not a running moto_server; nothing to stop"
  fi
  rm -f "$pidf" "$dir/moto.port"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 start PORT [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
