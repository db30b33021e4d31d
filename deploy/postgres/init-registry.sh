#!/bin/bash
# Runs once, when the Postgres volume is first initialised (docker-entrypoint-initdb.d).
# The upload registry gets its own database and role: hospitals' upload records must not share
# credentials with Airflow's metadata, and the registry can move to another server on its own.
set -euo pipefail
: "${REGISTRY_DB_PASSWORD:?REGISTRY_DB_PASSWORD is required}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pw="$REGISTRY_DB_PASSWORD" <<'SQL'
CREATE ROLE hqms LOGIN PASSWORD :'pw';
CREATE DATABASE hqms_registry OWNER hqms;
REVOKE ALL ON DATABASE hqms_registry FROM PUBLIC;
SQL
