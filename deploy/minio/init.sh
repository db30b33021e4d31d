#!/bin/bash
# One-shot object-store initialisation (compose service minio-init); idempotent.
#  - buckets; versioning on the vault (an overwritten or deleted original stays recoverable)
#  - landing expiry: plaintext uploads must not outlive ingest (minutes); the rule is a safety net
#  - the pipeline's own user (read/write on the three buckets, nothing else)
#  - one user and policy per hospital in the registry CSV, confined to its landing prefix
#    (hqms.intake.policy); new credentials go to $HOSPITAL_CREDENTIALS_DIR/<org_code>.env, mode 0600
set -euo pipefail
umask 077

mc alias set hqms "${MINIO_URL}" "${MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD}" >/dev/null

for bucket in "${HQMS_BUCKET_LANDING}" "${HQMS_BUCKET_VAULT}" "${HQMS_BUCKET_MARTS}"; do
  mc mb --ignore-existing "hqms/${bucket}"
done
mc version enable "hqms/${HQMS_BUCKET_VAULT}"
if ! mc ilm rule ls "hqms/${HQMS_BUCKET_LANDING}" 2>/dev/null | grep -q "${LANDING_EXPIRE_DAYS} day"; then
  mc ilm rule add --expire-days "${LANDING_EXPIRE_DAYS}" "hqms/${HQMS_BUCKET_LANDING}"
fi

policy_dir="$(mktemp -d)"
trap 'rm -rf "${policy_dir}"' EXIT

cat > "${policy_dir}/hqms-pipeline.json" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::${HQMS_BUCKET_LANDING}", "arn:aws:s3:::${HQMS_BUCKET_VAULT}", "arn:aws:s3:::${HQMS_BUCKET_MARTS}"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::${HQMS_BUCKET_LANDING}/*", "arn:aws:s3:::${HQMS_BUCKET_VAULT}/*", "arn:aws:s3:::${HQMS_BUCKET_MARTS}/*"]}
  ]
}
JSON
mc admin policy create hqms hqms-pipeline "${policy_dir}/hqms-pipeline.json"
if ! mc admin user info hqms "${HQMS_S3_ACCESS_KEY}" >/dev/null 2>&1; then
  mc admin user add hqms "${HQMS_S3_ACCESS_KEY}" "${HQMS_S3_SECRET_KEY}"
fi
mc admin policy attach hqms hqms-pipeline --user "${HQMS_S3_ACCESS_KEY}" 2>/dev/null || true

registry_csv=/opt/hqms/config/hospitals.csv
if [ ! -s "${registry_csv}" ]; then
  echo "minio-init: no hospital registry at ${registry_csv}; no hospital users created"
  exit 0
fi

read_back=()
[ "${HOSPITAL_READ_BACK}" = "true" ] && read_back=(--read-back)
mkdir -p "${HOSPITAL_CREDENTIALS_DIR}"
created=0
orgs="$(python - "${registry_csv}" <<'PY'
import sys
from pathlib import Path

from hqms.hospitals import read_registry

for row in read_registry(Path(sys.argv[1])):  # validates every 医疗机构代码 first
    print(row[0])
PY
)"
for org in ${orgs}; do
  policy="hqms-landing-${org}"
  hqms policy --org "${org}" "${read_back[@]}" > "${policy_dir}/${policy}.json"
  mc admin policy create hqms "${policy}" "${policy_dir}/${policy}.json" >/dev/null
  creds="${HOSPITAL_CREDENTIALS_DIR}/${org}.env"
  if [ ! -s "${creds}" ]; then
    read -r access secret < <(python -c 'import secrets, string as s
pick = lambda chars, n: "".join(secrets.choice(chars) for _ in range(n))
print("HQ" + pick(s.ascii_uppercase + s.digits, 18), pick(s.ascii_letters + s.digits, 40))')
    mc admin user add hqms "${access}" "${secret}" >/dev/null
    printf '# S3 credentials of %s (landing prefix only); hand over by a secure channel\nHQMS_S3_ACCESS_KEY=%s\nHQMS_S3_SECRET_KEY=%s\n' \
      "${org}" "${access}" "${secret}" > "${creds}"
    chown "${CREDENTIALS_OWNER}" "${creds}"
    created=$((created + 1))
  fi
  access="$(sed -n 's/^HQMS_S3_ACCESS_KEY=//p' "${creds}")"
  mc admin policy attach hqms "${policy}" --user "${access}" >/dev/null 2>&1 || true
done
echo "minio-init: hospital policies applied; ${created} new hospital credential file(s) in ${HOSPITAL_CREDENTIALS_DIR}"
