#!/bin/bash
# Runs once from /docker-entrypoint-initdb.d on an empty data directory (as postgres, against
# the entrypoint's temporary server). Passwords come from the compose secrets.
set -euo pipefail
secrets="${SECRETS_DIR:-/run/secrets}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v monitor_pw="$(cat "$secrets/pg_monitor_password")" \
  -v replication_pw="$(cat "$secrets/pg_replication_password")" \
  -v app_pw="$(cat "$secrets/pg_app_password")" <<'SQL'
-- tierwatch's login: pg_monitor is all it needs (README, "Grants")
CREATE ROLE monitor LOGIN PASSWORD :'monitor_pw' IN ROLE pg_monitor;
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'replication_pw';
CREATE ROLE app LOGIN PASSWORD :'app_pw';
CREATE DATABASE app OWNER app;
-- the replica streams through this slot, so tierwatch shows slot metrics too
SELECT pg_create_physical_replication_slot('replica_1');
SQL

# The image's pg_hba.conf lets every database in over the network, but replication
# connections match only lines for the `replication` pseudo-database.
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
