#!/usr/bin/env bash
# Brings up the PostgreSQL that orderflow needs and prints its URL on stdout.
#
# If DATABASE_URL is set and answers, it is used as it is. Otherwise this
# installs Debian's PostgreSQL when it is absent, and starts a cluster that
# belongs to this checkout: data in .dev/postgres (git-ignored), listening on
# 127.0.0.1:${ORDERFLOW_PG_PORT:-54329} only, with a database and role named
# orderflow. Running it again reuses what is there. `postgres.sh stop` stops
# the project's cluster. Durability settings stay at
# PostgreSQL's defaults (fsync and synchronous_commit on).
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

if [ -n "${DATABASE_URL:-}" ] && [ "${1:-}" != stop ]; then
  if psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; then
    log "using DATABASE_URL from the environment"
    printf '%s\n' "$DATABASE_URL"
    exit 0
  fi
  log "DATABASE_URL is set but does not answer; starting a local cluster instead"
fi

root=$(cd "$(dirname "$0")/.." && pwd)
port=${ORDERFLOW_PG_PORT:-54329}
data="$root/.dev/postgres"
url="postgres://orderflow:orderflow@127.0.0.1:$port/orderflow?sslmode=disable"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# The server runs as postgres when this runs as root: a checkout it cannot
# reach (under a home directory only root may enter, say) keeps its cluster
# in postgres's home instead, named after the checkout.
away_from_checkout() {
  [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$root"
}
away="/var/lib/postgresql/orderflow-$(printf '%s' "$root" | sha256sum | cut -c1-12)"
if away_from_checkout; then
  data=$away
fi

if [ "${1:-}" = stop ]; then
  if bin=$(find_bin) && [ -f "$data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$data" stop -m fast >&2
  fi
  exit 0
fi

if ! bin=$(find_bin); then
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql postgresql-contrib >&2
  bin=$(find_bin)
fi

# PostgreSQL refuses to run as root: the server runs as the postgres user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
if away_from_checkout; then # the user may be new: decided again
  data=$away
  mkdir -p /var/lib/postgresql
  log "the postgres user cannot reach $root: the cluster lives in $data"
fi

mkdir -p "$root/.dev"
# One run at a time per checkout (make run and make test may race).
exec 9>"$root/.dev/postgres.lock"
flock 9
if [ ! -s "$data/PG_VERSION" ]; then
  log "initialising a cluster in $data"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres: "$data"
  chmod 700 "$data"
  pwfile=$(mktemp)
  echo orderflow >"$pwfile"
  [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
  as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 >&2
  rm -f "$pwfile"
  cat >>"$data/postgresql.conf" <<CONF
# orderflow development cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 512MB
idle_in_transaction_session_timeout = '60s'
max_wal_size = 4GB
CONF
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  if port_open "$port"; then
    log "port $port on 127.0.0.1 is taken by another process; set ORDERFLOW_PG_PORT to a free one"
    exit 1
  fi
  log "starting PostgreSQL on 127.0.0.1:$port"
  # The port given here wins over the one initdb wrote, so a changed
  # ORDERFLOW_PG_PORT is the port the printed URL names.
  # 9>&-: the server must not inherit, and so hold for good, the lock.
  if ! as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -o "-p $port" -w -t 60 start >&2 9>&-; then
    log "PostgreSQL did not start; the end of $data/server.log:"
    tail -n 20 "$data/server.log" >&2
    exit 1
  fi
fi

psql_admin() { as_pg "$bin/psql" -h "$data" -p "$port" -U postgres -v ON_ERROR_STOP=1 -Atq "$@"; }
if [ "$(psql_admin -d postgres -c "select 1 from pg_roles where rolname = 'orderflow'")" != 1 ]; then
  psql_admin -d postgres -c "create role orderflow login createdb password 'orderflow'"
fi
# Tests drop their databases WITH (FORCE), which must be allowed to end
# connections still open in them.
PGOPTIONS="-c client_min_messages=warning" psql_admin -d postgres -c "grant pg_signal_backend to orderflow" >/dev/null
if [ "$(psql_admin -d postgres -c "select 1 from pg_database where datname = 'orderflow'")" != 1 ]; then
  psql_admin -d postgres -c "create database orderflow owner orderflow"
fi

printf '%s\n' "$url"
