#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests and local tuning studies (Debian's `postgresql`).
#
#   scripts/postgres_server.sh install          # apt-get install postgresql unless its binaries are there
#   scripts/postgres_server.sh start DIR [PORT] # install if needed, initdb in DIR, start; prints the URL
#   scripts/postgres_server.sh stop DIR         # stop the server and delete DIR
#
# The server listens on 127.0.0.1 only (PORT: a free one by default), trusts local connections (it is a
# test server: never expose it), keeps its socket in DIR and runs as the `postgres` user when started by
# root (PostgreSQL refuses to run as root). `start` prints one line: postgresql://postgres@127.0.0.1:PORT/optuna
set -euo pipefail

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

install() {
  if [ -n "$(pg_bin)" ]; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed and installing it needs root: apt-get install -y postgresql" >&2
    return 1
  fi
  echo "installing postgresql from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  # the package's own cluster is not needed: tests start their own server in a folder of their own
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/sepo-no-main.conf
  apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
    apt-get install -y -q postgresql >/dev/null 2>&1; } || {
    echo "apt-get install postgresql failed (no package mirror reachable?)" >&2; return 1; }
  [ -n "$(pg_bin)" ] || { echo "postgresql installed but initdb not found under /usr/lib/postgresql" >&2; return 1; }
}

as_owner() {  # run a command as the server's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir=$1 port=${2:-}
  install
  local bin; bin=$(pg_bin)
  if [ -z "$port" ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; chmod 700 "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; echo "initdb failed" >&2; return 1; }
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; echo "the server did not start" >&2; return 1; }
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres optuna
  echo "postgresql://postgres@127.0.0.1:$port/optuna"
}

stop() {
  local dir=$1
  local bin; bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  case "$dir" in /tmp/*) rm -rf "$dir" ;; *) echo "left $dir in place (not under /tmp)" >&2 ;; esac
}

case "${1:-}" in
  install) install ;;
  start) [ $# -ge 2 ] || { echo "usage: $0 start DIR [PORT]" >&2; exit 2; }; start "$2" "${3:-}" ;;
  stop) [ $# -ge 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 install | start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac
