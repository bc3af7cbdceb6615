#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL 15 cluster.
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
# The command sees EVENTSOURCING_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/eventsourcing_test,
# and, for tests that stop and restart the server (tests/postgres_restart.rs):
#   EVENTSOURCING_TEST_POSTGRES_DATA  the server's data directory
#   EVENTSOURCING_TEST_POSTGRES_CTL   a pg_ctl for this server: it runs as the server's user (postgres,
#                                     when we are root) with -D, the log and the port filled in, so
#                                     `$EVENTSOURCING_TEST_POSTGRES_CTL restart -m immediate` and
#                                     `... stop -m immediate` / `... start` just work.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
DB=eventsourcing_test

if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]  (runs COMMAND with EVENTSOURCING_TEST_POSTGRES_URL set)" >&2
  exit 2
fi

die() { echo "with-postgres: $*" >&2; exit 1; }

if [ ! -x "$PGBIN/postgres" ]; then
  [ "$(id -u)" -eq 0 ] || die "$PGBIN/postgres not found; install postgresql-15"
  echo "with-postgres: installing postgresql-15" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update && apt-get install -y postgresql-15; } >&2 || die "failed to install postgresql-15"
fi

# PostgreSQL refuses to run as root, so as root run the server tools as `postgres`.
AS=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --user-group postgres
  AS=(runuser -u postgres --)
fi

# Under /tmp (not $TMPDIR) so the postgres user can always reach it.
DIR=$(mktemp -d /tmp/with-postgres.XXXXXX)
DATA=$DIR/data LOG=$DIR/server.log STARTED=
[ ${#AS[@]} -eq 0 ] || chown postgres: "$DIR"

cleanup() {
  local rc=$?
  [ -z "$STARTED" ] || pg pg_ctl stop -s -D "$DATA" -m fast >/dev/null 2>&1 || true
  rm -rf "$DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Server tools run from $DIR: the postgres user may not be able to read the caller's cwd.
pg() { (cd "$DIR" && "${AS[@]}" "$PGBIN/$1" "${@:2}"); }

fail() { echo "with-postgres: $1; ${2:-$LOG}:" >&2; cat "${2:-$LOG}" >&2 2>/dev/null || true; exit 1; }

pg initdb -D "$DATA" --auth=trust --username=postgres --encoding=UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
  || fail "initdb failed" "$DIR/initdb.log"
# Test settings; fsync stays on (default) because we measure real durability.
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = 200
shared_buffers = 128MB
EOF

# Pick a port by trying to bind: avoids races with concurrent runs (a loser just moves on).
PORT=54329
for _ in $(seq 50); do
  STARTED=1
  if pg pg_ctl start -s -w -t 30 -D "$DATA" -l "$LOG" -o "-p $PORT" >/dev/null 2>&1; then
    break
  fi
  pg pg_ctl stop -s -D "$DATA" -m immediate >/dev/null 2>&1 || true
  STARTED=
  grep -q 'Address already in use' "$LOG" 2>/dev/null || fail "server failed to start"
  : >"$LOG"
  PORT=$((PORT + 1))
done
[ -n "$STARTED" ] || fail "no free port found"

# pg_ctl -w already waited; double-check over TCP (up to ~30s) before creating the DB.
for _ in $(seq 60); do
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
  sleep 0.5
done
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" || fail "server not accepting connections"
"$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" || fail "createdb failed"

CTL=$DIR/pg_ctl
cat >"$CTL" <<EOF
#!/usr/bin/env bash
# pg_ctl for the server of scripts/with-postgres.sh on port $PORT.
cd "$DIR" && exec ${AS[*]} "$PGBIN/pg_ctl" -s -D "$DATA" -l "$LOG" -o "-p $PORT" "\$@"
EOF
chmod 755 "$CTL"

echo "with-postgres: PostgreSQL 15 on 127.0.0.1:$PORT (data in $DIR)" >&2
export EVENTSOURCING_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PORT/$DB"
export EVENTSOURCING_TEST_POSTGRES_DATA="$DATA"
export EVENTSOURCING_TEST_POSTGRES_CTL="$CTL"
set +e
"$@"
exit $?
