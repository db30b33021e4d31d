#!/bin/bash
# One-shot Airflow initialisation (compose service airflow-init). Every step is idempotent, so
# `docker compose up` may run it on every start.
set -euo pipefail

echo "airflow-init: migrating the metadata database"
airflow db migrate

echo "airflow-init: admin user ${AIRFLOW_ADMIN_USER}"
if ! airflow users list --output plain | awk '{print $2}' | grep -qx "${AIRFLOW_ADMIN_USER}"; then
  airflow users create --role Admin --username "${AIRFLOW_ADMIN_USER}" \
    --password "${AIRFLOW_ADMIN_PASSWORD}" --email "${AIRFLOW_ADMIN_EMAIL}" \
    --firstname HQMS --lastname Admin
fi

# The marts builds and publishing run one at a time; ingest batches HQMS_INGEST_WORKERS at a time,
# holding the warehouse only for their merges (its write lock). Names and sizes must equal
# hqms.airflow_env.WAREHOUSE_POOL and ingest_pool (tests/test_compose.py checks it).
airflow pools set hqms_warehouse 1 "marts builds and publishing: one at a time"
airflow pools set hqms_ingest "${HQMS_INGEST_WORKERS:-2}" "ingest batches at once (HQMS_INGEST_WORKERS); their merges take turns on the warehouse write lock"

# Connections for operators and providers (the pipeline itself reads HQMS_* variables).
# Deleted and re-added so a changed password in .env takes effect on the next start.
airflow connections delete hqms_s3 >/dev/null 2>&1 || true
airflow connections add hqms_s3 --conn-type aws \
  --conn-login "${HQMS_S3_ACCESS_KEY}" --conn-password "${HQMS_S3_SECRET_KEY}" \
  --conn-extra "{\"endpoint_url\": \"${HQMS_S3_ENDPOINT}\", \"region_name\": \"${HQMS_S3_REGION}\"}"
airflow connections delete hqms_registry >/dev/null 2>&1 || true
airflow connections add hqms_registry --conn-uri "${HQMS_REGISTRY_URL/postgresql+psycopg2/postgresql}"

if [ -s /opt/hqms/config/hospitals.csv ]; then
  echo "airflow-init: loading the hospital registry into ref.hospitals"
  hqms hospitals load /opt/hqms/config/hospitals.csv
fi

# Report, do not repair: a failing check stops the stack here with the reason and the fix.
hqms doctor
