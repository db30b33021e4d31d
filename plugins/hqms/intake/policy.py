"""S3 (MinIO / AWS IAM syntax) policy confining one hospital's credentials to its own space.

A hospital — or its front-end machine — that holds S3 credentials may only *put* objects under
``<landing bucket>/<stream>/<org_code>/``: no listing, no reading other hospitals' uploads, no
deleting, no other bucket. Multipart actions are included because SDKs switch to multipart for
large objects. ``read_back`` adds GetObject on the same prefix for front-end machines that verify
what they sent (size and sha256 re-read) before deleting originals.

The compose init renders one policy per hospital with ``hqms policy --org <code>`` and attaches
it with ``mc admin policy create`` / ``mc admin policy attach``; see docs/object-store.md.
"""
from __future__ import annotations

import json

from hqms import config, spec
from hqms.validators import canonical_code, medical_org_code_valid

PUT_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


def landing_policy(org_code: str, bucket: str | None = None,
                   streams: tuple[str, ...] = spec.STREAMS, read_back: bool = False) -> dict:
    """The policy document for ``org_code``.

    The code is validated first: it becomes part of an ARN, and a value like ``*`` would open
    every hospital's space.
    """
    if not medical_org_code_valid(org_code):
        raise ValueError(f"not a valid 医疗机构代码: {org_code!r}")
    org_code = canonical_code(org_code)  # the landing prefix submit() writes under
    bucket = bucket or config.load().buckets["landing"]
    resources = [f"arn:aws:s3:::{bucket}/{stream}/{org_code}/*" for stream in streams]
    statements = [{"Sid": "PutOwnUploads", "Effect": "Allow", "Action": list(PUT_ACTIONS),
                   "Resource": resources}]
    if read_back:
        statements.append({"Sid": "ReadBackOwnUploads", "Effect": "Allow",
                           "Action": ["s3:GetObject"], "Resource": resources})
    return {"Version": "2012-10-17", "Statement": statements}


def render(org_code: str, bucket: str | None = None, read_back: bool = False) -> str:
    """The policy as JSON text, ready for ``mc admin policy create``."""
    return json.dumps(landing_policy(org_code, bucket, read_back=read_back), indent=2)
