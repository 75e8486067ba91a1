#!/usr/bin/env bash
# Throwaway PostgreSQL server for tests (never touches a system cluster); the project's copy
# of the workplace's pg.sh, so that a fresh clone has it (.ci/run starts one with it).
#   pg.sh start PORT [DIR]   start a server on 127.0.0.1:PORT with data in DIR, print its URL:
#                            postgres://strata:strata@127.0.0.1:PORT/strata
#   pg.sh stop [DIR]         stop the server of DIR (only a DIR that this script initialised)
# DIR (the data directory) defaults to $PG_DIR or ${TMPDIR:-/tmp}/strata-pg; it is initialised
# when missing or empty and kept by stop (rm -rf it to throw the data away). The unix socket and
# the server log (DIR/log) live in DIR. Binaries: $PG_BIN, else the newest
# /usr/lib/postgresql/*/bin, else initdb on PATH; `apt-get install postgresql` if none is found.
# As root, the server runs as the `postgres` user (postgres refuses to run as root).
# Usage in scripts:  DATABASE_URL=$(bash scripts/pg-local.sh start 55432); trap 'bash scripts/pg-local.sh stop' EXIT
set -euo pipefail

DB=strata; DB_USER=strata; DB_PASS=strata
MARK=.pg.sh   # marker file in DIR: this script refuses to start/stop data dirs without it
log() { echo "pg.sh: $*" >&2; }
die() { log "$*"; exit 1; }

find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then [[ -x "$PG_BIN/initdb" ]] && echo "$PG_BIN"; return 0; fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
  d="$(command -v initdb 2>/dev/null || true)"
  [[ -n "$d" ]] && dirname "$(readlink -f "$d")"
  return 0
}

install_pg() {
  local sudo=""
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null || die "initdb not found; install postgresql (needs root)"
    sudo="sudo -n"
  fi
  log "initdb not found: installing postgresql via apt-get"
  # No system cluster on 5432: the main cluster is only created (and started) on first install
  # unless create_main_cluster is off; createcluster.conf includes createcluster.d/ (not a conffile).
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    $sudo mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/00-no-main-cluster.conf >/dev/null
  fi
  local apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql)
  "${apt[@]}" >&2 || { $sudo apt-get update -q >&2 && "${apt[@]}" >&2; } || die "apt-get install postgresql failed"
}

BIN=""
bin() {
  [[ -n "$BIN" ]] && return 0
  BIN="$(find_bin)"
  if [[ -z "$BIN" ]]; then install_pg; BIN="$(find_bin)"; fi
  [[ -n "$BIN" ]] || die "initdb still not found after install (set PG_BIN=/usr/lib/postgresql/NN/bin)"
}

# runuser lives in /usr/sbin, which a non-login PATH may lack
RUNUSER="$(command -v runuser 2>/dev/null || echo /usr/sbin/runuser)"
# run a command as the server's owner: `postgres` when we are root, else ourselves; cwd / so that
# an unreadable cwd (e.g. /root) does not bother it
as_owner() {
  if [[ $EUID -eq 0 ]]; then (cd / && "$RUNUSER" -u postgres -- "$@"); else (cd / && "$@"); fi
}

running() { as_owner "$BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }   # 0 only if the postmaster is alive
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

superuser_sql() {   # over the unix socket in DIR, as superuser postgres (trust for local)
  local dir="$1" port="$2"; shift 2
  as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"
}

ensure_db() {
  local dir="$1" port="$2"
  superuser_sql "$dir" "$port" -f - >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS';
  ELSE
    ALTER ROLE $DB_USER LOGIN PASSWORD '$DB_PASS';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $DB OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')\gexec
SQL
  # the same path the tests take: TCP + password
  PGPASSWORD="$DB_PASS" PGCONNECT_TIMEOUT=5 "$BIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U "$DB_USER" -d "$DB" \
    -c 'SELECT 1' >/dev/null || die "cannot connect as $DB_USER over 127.0.0.1:$port (see $dir/log)"
}

default_dir() { echo "${PG_DIR:-${TMPDIR:-/tmp}/strata-pg}"; }

cmd_start() {
  local port="${1:?usage: pg.sh start PORT [DIR]}" dir="${2:-$(default_dir)}"
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number: $port"
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd -P)"
  # the socket path DIR/.s.PGSQL.PORT must fit in sun_path (107 bytes)
  (( ${#dir} + 15 < 108 )) || die "DIR path too long for the unix socket: $dir"
  bin
  local url="postgres://$DB_USER:$DB_PASS@127.0.0.1:$port/$DB"

  if [[ -f "$dir/PG_VERSION" ]]; then
    [[ -f "$dir/$MARK" ]] || die "$dir holds a data directory that pg.sh did not create; refusing"
  elif [[ -n "$(ls -A "$dir")" ]]; then
    die "$dir is neither empty nor a data directory; refusing"
  fi
  if [[ $EUID -eq 0 ]]; then
    chown postgres:postgres "$dir"; chmod 700 "$dir"
    "$RUNUSER" -u postgres -- test -w "$dir" \
      || die "user postgres cannot reach $dir (a parent directory is not searchable; use one under /tmp)"
  fi

  if [[ -f "$dir/PG_VERSION" ]] && running "$dir"; then
    local oldport; oldport="$(sed -n 4p "$dir/postmaster.pid" 2>/dev/null || true)"
    [[ "$oldport" == "$port" ]] || die "already running for $dir on port $oldport (not $port)"
    log "already running (pid $(head -n 1 "$dir/postmaster.pid"), $dir)"
    ensure_db "$dir" "$port"; echo "$url"; return 0
  fi
  port_busy "$port" && die "port $port is already in use on 127.0.0.1"

  if [[ ! -f "$dir/PG_VERSION" ]]; then
    log "initdb $dir ($("$BIN/postgres" --version))"
    local out
    out="$(as_owner "$BIN/initdb" -D "$dir" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 --no-sync 2>&1)" || { echo "$out" >&2; die "initdb failed"; }
    as_owner touch "$dir/$MARK"
  fi
  # -w waits until the server accepts connections. Durability is off: data is throwaway.
  as_owner "$BIN/pg_ctl" -D "$dir" -l "$dir/log" -w -t 60 start \
    -o "-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2 \
    || { tail -n 20 "$dir/log" >&2 || true; die "pg_ctl start failed"; }
  ensure_db "$dir" "$port"
  log "ready (pid $(head -n 1 "$dir/postmaster.pid"), data $dir, log $dir/log)"
  echo "$url"
}

cmd_stop() {
  local dir="${1:-$(default_dir)}"
  [[ -f "$dir/PG_VERSION" ]] || { log "no data directory at $dir; nothing to stop"; return 0; }
  [[ -f "$dir/$MARK" ]] || die "$dir was not initialised by pg.sh; refusing to stop it"
  bin
  if running "$dir"; then
    as_owner "$BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >&2
  else
    log "not running ($dir)"
  fi
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 start PORT [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
