#!/bin/bash
# Entrypoint of the replica container: on first start (empty data directory) clone the
# primary with pg_basebackup -R, which writes standby.signal and primary_conninfo; then hand
# over to the image's own entrypoint, which finds an existing cluster and starts it.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=primary}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_SLOT:=replica_1}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA"
  PGPASSWORD="$(cat "${SECRETS_DIR:-/run/secrets}/pg_replication_password")"
  export PGPASSWORD
  until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U replicator -d postgres; do
    echo "replica: waiting for $PRIMARY_HOST:$PRIMARY_PORT"
    sleep 1
  done
  echo "replica: cloning $PRIMARY_HOST:$PRIMARY_PORT through slot $REPLICATION_SLOT"
  gosu postgres pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U replicator \
    -D "$PGDATA" -R -X stream -S "$REPLICATION_SLOT" -c fast
  unset PGPASSWORD
fi

exec docker-entrypoint.sh "$@"
