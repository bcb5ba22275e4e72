#!/usr/bin/env bash
# Start a PostgreSQL server on loopback for the OMOP CDM test and print the URL the test
# reads from MEDISTILL_TEST_PG_URL. Idempotent; run as root on Debian. Prints nothing and
# exits non-zero when no server can be had (the test is then skipped with its reason).
set -euo pipefail
ROLE=medistill
DB=medistill_test
PASSWORD=medistill-ci   # a throw-away test role on a loopback-only server

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
  pg_createcluster "$VERSION" main >&2
fi
STATUS=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}')
if [ "$STATUS" != "online" ]; then
  pg_ctlcluster "$VERSION" main start >&2
fi
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')
psql_admin() { runuser -u postgres -- psql -p "$PORT" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 1 30); do psql_admin -c "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
  psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
  psql_admin -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
