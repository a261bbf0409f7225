#!/usr/bin/env bash
# Make sure the local Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379) the integration tests use are up,
# and that the tests can connect as tests/integration/conftest.py does: as postgres, without a password, to
# the database "test". On a fresh Debian machine (run as root, as CI does) it installs what is missing,
# starts it, and lets postgres in from the loopback without a password. Idempotent: a machine that is ready
# is only checked.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
PG=(-h 127.0.0.1 -p 5432)
TEST_DATABASE=test
PG_ETC=${PG_ETC:-/etc/postgresql} PG_LIB=${PG_LIB:-/usr/lib/postgresql}  # Debian's; overridable for a dry run

missing=()
for binary in pg_ctlcluster pg_isready psql; do
  command -v "$binary" >/dev/null || { missing+=(postgresql); break; }
done
for binary in redis-server redis-cli; do
  command -v "$binary" >/dev/null || { missing+=(redis-server); break; }
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi

if ! pg_isready -q "${PG[@]}"; then
  # the newest cluster "main" (Debian's package creates one; if none is there, one of the newest Postgres)
  version=$(find "$PG_ETC" -mindepth 2 -maxdepth 2 -name main -printf '%P\n' 2>/dev/null \
    | cut -d/ -f1 | sort -V | tail -n 1 || true)
  if [ -z "$version" ]; then
    version=$(ls "$PG_LIB" | sort -V | tail -n 1)
    pg_createcluster "$version" main
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 30); do pg_isready -q "${PG[@]}" && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
pg_isready "${PG[@]}"
redis-cli -h 127.0.0.1 -p 6379 ping

# as the tests connect: TCP, user postgres, no password (-w: fail rather than prompt)
as_tests() { PGCONNECT_TIMEOUT=5 psql -w "${PG[@]}" -U postgres -d postgres -Atq "$@"; }
if ! as_tests -c 'select 1' >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: cannot connect to Postgres as postgres@127.0.0.1:5432 without a password; run this as root" \
      "to allow it in pg_hba.conf" >&2
    exit 1
  fi
  # the role postgres may connect from the loopback without a password (a test machine's database);
  # prepended, because pg_hba.conf's first matching line decides
  hba=$(runuser -u postgres -- psql -Atqc 'show hba_file')
  if ! grep -q "backdoor-audit tests" "$hba"; then
    echo "letting postgres connect from 127.0.0.1 and ::1 without a password ($hba)"
    {
      echo "# backdoor-audit tests: postgres from the loopback without a password (scripts/services.sh)"
      echo "host all postgres 127.0.0.1/32 trust"
      echo "host all postgres ::1/128 trust"
      cat "$hba"
    } >"$hba.new"
    chown --reference="$hba" "$hba.new"
    chmod --reference="$hba" "$hba.new"
    mv "$hba.new" "$hba"
  fi
  runuser -u postgres -- psql -Atqc 'select pg_reload_conf()' >/dev/null
  for _ in $(seq 10); do as_tests -c 'select 1' >/dev/null 2>&1 && break; sleep 1; done
  as_tests -c 'select 1' >/dev/null || {
    echo "error: cannot connect to Postgres as postgres@127.0.0.1:5432 without a password" >&2
    exit 1
  }
fi
if [ "$(as_tests -c "select 1 from pg_database where datname = '$TEST_DATABASE'")" != 1 ]; then
  echo "creating the database $TEST_DATABASE"
  as_tests -c "create database \"$TEST_DATABASE\""
fi
