"""Submit one zip: check it, record it, land it — the single path for web uploads and HQMSTran.

Order, and why:

1. hash the file (the sha256 follows the upload everywhere: duplicate detection, ingest's
   integrity check, the front-end machine's verification);
2. org code and zip rules — a refusal is recorded (status ``rejected``, stage ``intake``, one
   file-level error) and nothing lands;
3. same bytes already accepted for this org → recorded ``duplicate`` (``duplicate_of``), not
   landed again;
4. put the object at ``<stream>/<org>/<yyyy>/<mm>/<dd>/<upload_id>.zip`` (received date in
   Asia/Shanghai), stat it, and only when the stored size matches record it ``landed``. The
   registry's unique index settles a concurrent double submit: the loser deletes its object and
   is recorded as a duplicate.

An unreachable object store raises :class:`~hqms.objectstore.ObjectStoreUnavailable` and
records nothing, so the caller can simply try again later.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hqms import config
from hqms.intake.zipcheck import ZipRejected, ZipSummary, check_zip, sha256_file
from hqms.objectstore import ObjectStore, ObjectStoreUnavailable
from hqms.registry import AlreadyAccepted, ErrorRecord, Registry, make_upload_id, redact_identifiers
from hqms.validators import canonical_code, medical_org_code_valid


@dataclass(frozen=True)
class Answer:
    """What a sender is told about one upload, in both languages: intake's result, and the web
    service's and API's answer built from it (:class:`hqms.web.service.Outcome`)."""

    status: str  # landed | duplicate | rejected (the web service adds its own refusals)
    message_zh: str
    message_en: str
    upload_id: str | None = None  # None only for the web service's refusals before intake
    rule: str | None = None  # the intake rule of a rejection


@dataclass(frozen=True, kw_only=True)
class SubmitResult(Answer):
    """Intake's answer and what it recorded of the file."""

    file_name: str
    sha256: str
    size_bytes: int
    stream: str | None = None
    object_key: str | None = None
    duplicate_of: str | None = None


class LandingFailed(RuntimeError):
    """The store accepted the PUT but does not hold the bytes we sent (size mismatch)."""


def object_key(stream: str, org_code: str, received_at: datetime, upload_id: str) -> str:
    """``<stream>/<org_code>/<yyyy>/<mm>/<dd>/<upload_id>.zip``, date in China time. A hospital's
    objects sit under ``<stream>/<org_code>/``, which is what its S3 policy grants."""
    day = received_at.astimezone(config.CHINA_TZ)
    return f"{stream}/{org_code}/{day:%Y/%m/%d}/{upload_id}.zip"


def preflight(path: Path, org_code: str, cfg: config.Config, stream: str | None = None,
              upload_name: str | None = None, registry: Registry | None = None) -> ZipSummary:
    """Org code, its account and zip rules (no side effects): the :class:`ZipSummary`, or
    ZipRejected. Only an org with an active hospital account may send (``unknown_org``): an
    unknown org's days would otherwise join every hospital's expected periods."""
    from hqms.accounts import Accounts

    if not medical_org_code_valid(org_code):
        raise ZipRejected("bad_org_code", upload_name or Path(path).name, org_code)
    if not Accounts(cfg, registry).org_accepts_uploads(org_code):
        raise ZipRejected("unknown_org", upload_name or Path(path).name, org_code)
    return check_zip(path, max_zip_bytes=cfg.max_zip_bytes,
                     max_uncompressed_bytes=cfg.max_uncompressed_bytes, max_ratio=cfg.max_ratio,
                     stream=stream, upload_name=upload_name, max_file_bytes=cfg.max_file_bytes)


def submit(path: Path, org_code: str, uploader: str, *, stream: str | None = None,
           received_at: datetime | None = None, channel: str = "web",
           upload_name: str | None = None, cfg: config.Config | None = None,
           store: ObjectStore | None = None, registry: Registry | None = None) -> SubmitResult:
    """Check, record and land ``path`` for ``org_code``; see the module docstring.

    ``received_at`` replays a historical upload (operator option); default now.
    ``upload_name`` is the file name the hospital used (default: the path's name).
    """
    uploader = checked_uploader(uploader)
    cfg = cfg or config.load()
    cfg.require_s3()  # no store configured: refuse before anything is recorded
    org_code = canonical_code(org_code)  # one hospital, one key prefix, whatever case it typed
    path = Path(path)
    name = redact_identifiers(upload_name or path.name)
    received = received_at or datetime.now(UTC)
    registry = registry or Registry.from_config(cfg)
    sha = sha256_file(path)
    size = path.stat().st_size
    common = dict(org_code=org_code, uploader=uploader, channel=channel, file_name=name,
                  sha256=sha, size_bytes=size, received_at=received)

    try:
        summary = preflight(path, org_code, cfg, stream, name, registry)
    except ZipRejected as rej:  # its message names the offending entry: stored redacted too
        zh, en = redact_identifiers(rej.message_zh), redact_identifiers(rej.message_en)
        upload_id = registry.new_upload(status="rejected", stream=stream, message_zh=zh, message_en=en, **common)
        registry.replace_errors(upload_id, [ErrorRecord(
            file_name=redact_identifiers(rej.entry), row=None, column=None, rule=rej.rule,
            message_zh=zh, message_en=en)])
        return SubmitResult("rejected", zh, en, upload_id, rej.rule, file_name=name, sha256=sha, size_bytes=size,
                            stream=stream)

    original = registry.find_by_sha(org_code, sha)
    if original is not None:
        return _record_duplicate(registry, original, summary.stream, common)

    store = store or ObjectStore.from_config(cfg)
    upload_id = make_upload_id(received)
    key = object_key(summary.stream, org_code, received, upload_id)
    bucket = cfg.buckets["landing"]
    store.put_file(bucket, key, path, metadata={
        "sha256": sha, "org": org_code, "uploader": uploader, "upload_id": upload_id,
        "stream": summary.stream, "file_name": name, "channel": channel})
    stored = store.stat(bucket, key)
    if stored is None or stored.size != size:
        _delete_quietly(store, bucket, key)
        raise LandingFailed(f"{key}: stored size {stored.size if stored else 'missing'} != {size}")

    msg_zh = f"已接收，等待处理（{len(summary.entries)} 个文件）"
    msg_en = f"received, waiting to be processed ({len(summary.entries)} files)"
    try:
        registry.new_upload(upload_id=upload_id, status="landed", stream=summary.stream,
                            object_key=key, message_zh=msg_zh, message_en=msg_en, **common)
    except AlreadyAccepted as dup:  # a concurrent submit of the same bytes won the race
        _delete_quietly(store, bucket, key)
        return _record_duplicate(registry, dup.original, summary.stream, common)
    except BaseException:
        _delete_quietly(store, bucket, key)  # never leave an object the registry does not know
        raise
    return SubmitResult("landed", msg_zh, msg_en, upload_id, file_name=name, sha256=sha, size_bytes=size,
                        stream=summary.stream, object_key=key)


#: Longest uploader name kept: it travels in the landed object's metadata (S3 allows 2 KB for
#: all of it), and the front-end machine must get a permanent refusal, not an S3 error it retries.
MAX_UPLOADER_CHARS = 64


class InvalidUploader(ValueError):
    """The uploading user's name is blank, too long or holds control characters: refused for
    good (an S3 error here would read as an outage, and the front-end machine retries those)."""


def checked_uploader(uploader: str) -> str:
    """``uploader`` without surrounding blanks, or :class:`InvalidUploader`."""
    uploader = (uploader or "").strip()
    if not uploader:
        raise InvalidUploader("--user: the uploading user is empty / 上传用户不能为空")
    if len(uploader) > MAX_UPLOADER_CHARS:
        raise InvalidUploader(f"--user: longer than {MAX_UPLOADER_CHARS} characters ({len(uploader):,}) "
                              f"/ 上传用户名超过 {MAX_UPLOADER_CHARS} 个字符")
    if any(unicodedata.category(ch)[0] == "C" for ch in uploader):
        raise InvalidUploader("--user: holds control or invisible characters / 上传用户名含有控制字符")
    return uploader


def _record_duplicate(registry: Registry, original: dict, stream: str, common: dict) -> SubmitResult:
    first = original["upload_id"]
    msg_zh = f"与已接收的上传 {first} 内容完全相同，不再重复处理"
    msg_en = f"identical to upload {first}, already received; not processed again"
    upload_id = registry.new_upload(status="duplicate", stream=stream, duplicate_of=first,
                                    message_zh=msg_zh, message_en=msg_en, **common)
    return SubmitResult("duplicate", msg_zh, msg_en, upload_id, file_name=common["file_name"],
                        sha256=common["sha256"], size_bytes=common["size_bytes"], stream=stream, duplicate_of=first)


def _delete_quietly(store: ObjectStore, bucket: str, key: str) -> None:
    try:
        store.delete(bucket, key)
    except ObjectStoreUnavailable:
        pass  # the store is down; an unrecorded object is inert (ingest only reads records)
