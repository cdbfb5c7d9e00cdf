#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite.
# Starts the local cluster when it is installed but stopped; installs it from Debian's
# packages when absent and we are root. Fails loudly (exit 1) when none can be had.
set -euo pipefail
HOST=${HYGIE_TEST_PG_HOST:-127.0.0.1}
PORT=${HYGIE_TEST_PG_PORT:-5432}

ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if command -v pg_isready >/dev/null && ready; then
  exit 0
fi
echo "ensure-postgres: no PostgreSQL on $HOST:$PORT; trying to start one" >&2
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure-postgres: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi
for version in $(ls /etc/postgresql 2>/dev/null); do
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || \
    pg_ctlcluster "$version" main start 2>/dev/null || true
done
for _ in $(seq 1 30); do
  if ready; then
    # The suite connects as 'postgres' without a password over TCP (trust auth, as on CI).
    exit 0
  fi
  sleep 1
done
echo "ensure-postgres: FAILED: no PostgreSQL server answers on $HOST:$PORT." >&2
echo "ensure-postgres: the test suite runs on SQLite AND PostgreSQL; start one (trust auth for" >&2
echo "ensure-postgres: user postgres on 127.0.0.1) or set HYGIE_TEST_PG_URL." >&2
exit 1
