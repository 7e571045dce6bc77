#!/usr/bin/env bash
# A throw-away PostgreSQL server for the group tests and benchmarks: Debian's package, its own
# data directory, loopback only, run as a non-root user (initdb refuses root).
#   bash scripts/pg.sh start DIR   -> prints postgresql://z2v@127.0.0.1:PORT/postgres
#   bash scripts/pg.sh stop DIR
set -euo pipefail
cmd=${1:?usage: scripts/pg.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: scripts/pg.sh start|stop DIR}" && cd "$2" && pwd)

bindir() {
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir; return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}
BIN=$(bindir)
if [ -z "$BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's postgresql for the group tests..." >&2
    (apt-get install -y -q postgresql || (apt-get update -q && apt-get install -y -q postgresql)) >/dev/null 2>&1 \
        || { echo "error: could not install postgresql" >&2; exit 1; }
    # Debian's package starts a cluster of its own; we use our own directory, so stop it.
    (service postgresql stop || true) >/dev/null 2>&1
    BIN=$(bindir)
fi
[ -n "$BIN" ] || { echo "error: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        id z2vpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin z2vpg
        chown -R z2vpg "$dir"
        runuser -u z2vpg -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$BIN/initdb" -D "$dir/data" -U z2v -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # fsync off: a test server's data is thrown away; crash safety of *our* code is tested by
    # killing our processes, not the machine.
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://z2v@127.0.0.1:$port/postgres"
    ;;
stop)
    [ -f "$dir/data/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: scripts/pg.sh start|stop DIR" >&2; exit 2 ;;
esac
