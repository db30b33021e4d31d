"""Registry loss: find what the object store holds that the registry does not know, and register
it again (``hqms registry orphans`` / ``hqms registry recover``).

Why: the registry is the only thing ingest reads to find work. Deleted, or restored from an
older backup, it forgets uploads whose bytes are still in landing (never processed, alerted or
swept) and uploads already processed (their vault copies and warehouse rows stay). Nothing a
hospital sent may be lost that way, so the ingest DAG and ``hqms doctor`` look for *orphans* and
this module rebuilds their records from what each store kept:

- a landing object's S3 metadata (written by :func:`hqms.intake.submit.submit`: org, uploader,
  channel, stream, file name, sha256) → ``landed``: the next run processes it;
- a vault manifest (org, stream, file name, receipt time, sha256, size), plus the upload's
  ``ops.uploads`` and ``ops.upload_errors`` rows when the warehouse has them → the recorded
  outcome, counts and error list; without ops rows and without a landing copy → ``failed``, and
  ``hqms reprocess ID --private-key …`` restores it from the vault.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hqms import config
from hqms.objectstore import ObjectStore
from hqms.registry import AlreadyAccepted, ErrorRecord, Registry

log = logging.getLogger(__name__)

#: Submit lands the object, then records it, milliseconds apart: younger objects are not orphans.
GRACE = timedelta(minutes=5)
_UPLOAD_ID = re.compile(r"u\d{14}[0-9a-f]{8}")
_LANDING_SUFFIX = ".zip"
_MANIFEST_SUFFIX = ".manifest.json"  # hqms.vault.MANIFEST_SUFFIX (not imported: vault pulls gmssl)
RECOVERED_BY = "registry-recover"


@dataclass(frozen=True)
class Orphan:
    upload_id: str
    bucket: str  # "landing" | "vault" (the configured role, not the bucket name)
    key: str


@dataclass(frozen=True)
class Recovered:
    upload_id: str
    status: str
    source: str  # landing | vault | vault+warehouse


def _upload_id(key: str, suffix: str) -> str | None:
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(suffix):
        return None
    uid = name.removesuffix(suffix)
    return uid if _UPLOAD_ID.fullmatch(uid) else None


def find_orphans(cfg: config.Config, store: ObjectStore, known: Callable[[list[str]], set[str]],
                 *, vault: bool, now: datetime | None = None) -> list[Orphan]:
    """Landing objects (older than :data:`GRACE`) and, with ``vault``, vault manifests whose
    upload the registry does not know. ``known(ids)`` answers which ids it does know."""
    cutoff = (now or datetime.now(UTC)) - GRACE
    found: list[Orphan] = []
    for key, modified in store.list_modified(cfg.buckets["landing"]):
        uid = _upload_id(key, _LANDING_SUFFIX)
        if uid and (modified is None or modified <= cutoff):
            found.append(Orphan(uid, "landing", key))
    if vault:
        for key in store.list(cfg.buckets["vault"]):
            if uid := _upload_id(key, _MANIFEST_SUFFIX):
                found.append(Orphan(uid, "vault", key))
    held = known(sorted({o.upload_id for o in found}))
    return [o for o in found if o.upload_id not in held]


def landing_orphans(cfg: config.Config, registry: Registry, store: ObjectStore) -> list[Orphan]:
    """What the ingest DAG checks every run: cheap (landing holds only unfinished uploads)."""
    return find_orphans(cfg, store, registry.known, vault=False)


def _warehouse_rows(cfg: config.Config, ids: list[str]) -> tuple[dict[str, dict], dict[str, list[ErrorRecord]]]:
    """``ops.uploads`` rows and error lists of ``ids`` from the warehouse (read-only)."""
    import duckdb

    from hqms.errors import UserError

    if not ids or not cfg.warehouse_path.exists():
        return {}, {}
    try:
        con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    except duckdb.IOException as exc:
        raise UserError(f"the warehouse {cfg.warehouse_path} is locked by a writer ({type(exc).__name__}); "
                        "pause the hqms_ingest DAG (or wait for `hqms run` to end) and recover again") from None
    try:
        has_ops = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ops' "
                              "AND table_name IN ('uploads', 'upload_errors')").fetchone()[0] == 2
        if not has_ops:
            return {}, {}
        marks = ", ".join("?" * len(ids))
        cur = con.execute(f"SELECT * FROM ops.uploads WHERE upload_id IN ({marks})", ids)
        names = [d[0] for d in cur.description]
        uploads = {row[0]: dict(zip(names, row)) for row in cur.fetchall()}
        errors: dict[str, list[ErrorRecord]] = {}
        for uid, file_name, row, column, rule, check_id, severity, zh, en, masked in con.execute(
                'SELECT upload_id, file_name, "row", column_code, rule, check_id, severity, message_zh, '
                f"message_en, value_masked FROM ops.upload_errors WHERE upload_id IN ({marks}) "
                "ORDER BY upload_id, seq", ids).fetchall():
            errors.setdefault(uid, []).append(ErrorRecord(file_name, row, column, rule, zh, en, severity,
                                                          check_id, masked))
        return uploads, errors
    finally:
        con.close()


def _received(upload_id: str, *candidates: object) -> datetime:
    """The receipt time: the manifest's or the warehouse's, else the one the id encodes."""
    for value in candidates:
        if isinstance(value, datetime):
            return value
        if isinstance(value, str) and value:
            return datetime.fromisoformat(value)
    return datetime.strptime(upload_id[1:15], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def recover(cfg: config.Config | None = None, *, dry_run: bool = False) -> list[Recovered]:
    """Register every orphan of landing and vault again (see the module docstring)."""
    cfg = cfg or config.load()
    registry = Registry.from_config(cfg)
    store = ObjectStore.from_config(cfg)
    orphans = find_orphans(cfg, store, registry.known, vault=True)
    by_id: dict[str, dict[str, str]] = {}
    for orphan in orphans:
        by_id.setdefault(orphan.upload_id, {})[orphan.bucket] = orphan.key
    ops, errors = _warehouse_rows(cfg, sorted(by_id))
    recovered = []
    for uid, keys in sorted(by_id.items()):
        result = _recover_one(cfg, store, registry, uid, keys, ops.get(uid), errors.get(uid, []), dry_run)
        if result is not None:
            recovered.append(result)
    return recovered


def _recover_one(cfg: config.Config, store: ObjectStore, registry: Registry, uid: str, keys: dict[str, str],
                 ops: dict | None, errors: list[ErrorRecord], dry_run: bool) -> Recovered | None:
    landing = store.stat(cfg.buckets["landing"], keys["landing"]) if "landing" in keys else None
    meta = landing.metadata if landing else {}
    manifest = json.loads(store.get_bytes(cfg.buckets["vault"], keys["vault"])) if "vault" in keys else {}
    ops = ops or {}
    org = meta.get("org") or manifest.get("org_code") or ops.get("org_code")
    sha = meta.get("sha256") or manifest.get("plaintext_sha256") or ops.get("sha256")
    if not (org and sha):
        log.error("orphan %s (%s): neither its metadata nor a manifest names the org and sha256; "
                  "left alone", uid, ", ".join(keys.values()))
        return None
    if ops.get("status"):
        status, source = ops["status"], "vault+warehouse"
        zh, en = ops.get("message_zh"), ops.get("message_en")
    elif landing is not None:
        status, source = "landed", "landing"
        zh, en = "登记已从对象存储恢复，等待处理", "record recovered from the object store; waiting to be processed"
    else:
        status, source = "failed", "vault"
        zh, en = ("登记已恢复；原始文件在加密存档中，需运维人员重新处理，无需重新上传",
                  "record recovered; the original is in the vault and needs an operator's `hqms reprocess` "
                  "— there is no need to send it again")
    if dry_run:
        return Recovered(uid, status, source)
    fields = dict(org_code=org, uploader=meta.get("uploader") or RECOVERED_BY,
                  channel=meta.get("channel") or ops.get("channel") or "web",
                  file_name=meta.get("file_name") or manifest.get("file_name") or ops.get("file_name") or uid,
                  sha256=sha, size_bytes=int(landing.size if landing else manifest.get("plaintext_size")
                                             or ops.get("size_bytes") or 0),
                  stream=meta.get("stream") or manifest.get("stream") or ops.get("stream"),
                  received_at=_received(uid, manifest.get("received_at"), ops.get("received_at")),
                  object_key=keys.get("landing") or _landing_key(uid, manifest, ops))
    try:
        registry.new_upload(upload_id=uid, status=status, stage="ingest" if ops or not landing else "intake",
                            message_zh=zh, message_en=en, **fields)
    except AlreadyAccepted as dup:  # the same bytes were recorded again meanwhile (a re-send)
        first = dup.original["upload_id"]
        registry.new_upload(upload_id=uid, status="duplicate", duplicate_of=first,
                            message_zh=f"与已接收的上传 {first} 内容完全相同，不再重复处理",
                            message_en=f"identical to upload {first}, already received; not processed again",
                            **fields)
        return Recovered(uid, "duplicate", source)
    if ops.get("status"):
        registry.replace_errors(uid, errors)
        registry.set_status(uid, status, record_count=ops.get("record_count"),
                            conforming_count=ops.get("conforming_count"))
    log.warning("registry: %s re-registered as %s from %s", uid, status, source)
    return Recovered(uid, status, source)


def _landing_key(uid: str, manifest: dict, ops: dict) -> str | None:
    """Where intake had landed it (``hqms reprocess`` re-lands the vault original there)."""
    from hqms.intake.submit import object_key

    stream = manifest.get("stream") or ops.get("stream")
    org = manifest.get("org_code") or ops.get("org_code")
    if not (stream and org):
        return None
    return object_key(stream, org, _received(uid, manifest.get("received_at"), ops.get("received_at")), uid)


def describe(orphans: Iterable[Orphan], limit: int = 5) -> str:
    """A short list for logs and the doctor: ids and where they sit (no file names)."""
    items = list(orphans)
    shown = ", ".join(f"{o.upload_id} ({o.bucket})" for o in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
