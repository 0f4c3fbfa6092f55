# Sourced by .ci/run: a throw-away PostgreSQL 15 server on 127.0.0.1 for tests/search (goaldriven-search's multi-host
# store). Installs postgresql-15 from Debian's packages only when initdb is missing, runs the server as the
# unprivileged `postgres` user when CI runs as root (initdb refuses root), on a free port in a temporary folder, and
# stops it on exit (trap), even when the tests fail. Exports GOALDRIVEN_TEST_POSTGRES_URL for the tests and
# GOALDRIVEN_REQUIRE_POSTGRES=1 so that they fail rather than skip if the server is not usable.

pg_bin_dir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

if ! PG_BIN=$(pg_bin_dir); then
  echo "ci: installing postgresql-15 (initdb not found)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-15 >/dev/null
  PG_BIN=$(pg_bin_dir)
fi
PG_DIR=$(mktemp -d /tmp/goaldriven_ci_pg.XXXXXX)
chmod 755 "$PG_DIR"
PG_AS=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  chown postgres "$PG_DIR"
  PG_AS=(runuser -u postgres --)
fi
PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop_postgres() {
  ${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_postgres EXIT

${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN/initdb" -D "$PG_DIR/data" -U search --auth=trust -E UTF8 --no-sync >/dev/null
${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
export GOALDRIVEN_TEST_POSTGRES_URL="postgresql+psycopg2://search@127.0.0.1:$PG_PORT/postgres"
export GOALDRIVEN_REQUIRE_POSTGRES=1
echo "ci: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (stopped on exit)"
