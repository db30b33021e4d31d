"""Entry points the ingest DAG calls (kept here so the DAG file stays a thin, fast import)."""
from __future__ import annotations

import logging
from datetime import timedelta

from hqms import config as hqms_config
from hqms.objectstore import ObjectStore
from hqms.registry import TERMINAL, Registry
from hqms.workdir import owner_alive, sweep_work

log = logging.getLogger(__name__)


def sweep_landing(cfg: hqms_config.Config, registry: Registry, store: ObjectStore) -> int:
    """Delete plaintext landing objects whose upload already reached a terminal state.

    They exist only when a run died between recording the outcome and deleting the object; the
    vault copy was verified before the outcome was recorded, so nothing is lost.
    """
    removed = 0
    bucket = cfg.buckets["landing"]
    for key in list(store.list(bucket)):
        upload_id = key.rsplit("/", 1)[-1].removesuffix(".zip")
        upload = registry.get(upload_id)
        if upload and upload["status"] in TERMINAL:
            store.delete(bucket, key)
            removed += 1
    if removed:
        log.info("removed %d landing objects of finished uploads", removed)
    return removed


def report_orphans(cfg: hqms_config.Config, registry: Registry, store: ObjectStore) -> int:
    """Alert on landing objects the registry does not know (it was lost, or restored from an
    older backup): nothing would ever process, alert on or sweep them. Not fatal — the uploads
    the registry knows are processed as usual; ``hqms registry recover`` brings the rest back."""
    from hqms.alerts import Alert, send
    from hqms.recover import describe, landing_orphans

    orphans = landing_orphans(cfg, registry, store)
    if orphans:
        log.error("%d landing objects are unknown to the registry (lost or restored from an older backup?): "
                  "%s; run `hqms registry recover`", len(orphans), describe(orphans))
        send(Alert("registry_orphans", f"{len(orphans)} landed upload(s) unknown to the registry; "
                   "run `hqms registry recover`", {"count": len(orphans)},
                   tuple({"upload_id": o.upload_id, "bucket": o.bucket} for o in orphans[:100])))
    return len(orphans)


def claim() -> list[list[str]]:
    """Plan the run: hand dead runs' claims back, then every landed upload, oldest first, in
    batches of at most ``HQMS_BATCH_MAX_UPLOADS``; each batch is one mapped DAG task, which
    acquires its uploads itself (:func:`hqms.ingest.process.process_batch`) — so no claim is ever
    without a live owner, and a run killed at any moment is recognised by the next at once."""
    from hqms.keys import load_keyring

    cfg = hqms_config.load()
    # missing keys are a configuration fault, not the uploads': fail before planning any, so
    # nothing is claimed (or charged) while the keys are fixed
    load_keyring(cfg)
    registry = Registry.from_config(cfg)
    store = ObjectStore.from_config(cfg)
    sweep_landing(cfg, registry, store)
    report_orphans(cfg, registry, store)
    # also when nothing is claimed: a dead run's plaintext must not wait for the next upload
    sweep_work(cfg)
    released = registry.release_dead(owner_alive, cfg.max_attempts,
                                     lease=timedelta(seconds=cfg.claim_lease_seconds),
                                     stale_after=timedelta(seconds=cfg.stale_claim_seconds))
    for upload in released:
        if upload["status"] == "failed":
            log.error("upload %s of %s broke %d runs on its own and is marked failed; see `hqms reprocess`",
                      upload["upload_id"], upload["org_code"], upload["failures"])
    if released:
        log.warning("%d uploads of dead runs handed back (%d suspects, run in halves)", len(released),
                    sum(1 for u in released if u["suspect"] and u["status"] == "landed"))
    ids = registry.pending()
    size = cfg.batch_max_uploads
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def process(upload_ids: list[str]) -> list[dict]:
    """Process one claimed batch; returns counts only (XCom never carries personal data)."""
    from hqms.ingest.process import process_batch

    return [
        {"upload_id": o.upload_id, "stream": o.stream, "status": o.status, "record_count": o.record_count,
         "conforming_count": o.conforming_count, "error_count": o.error_count}
        for o in process_batch(upload_ids)
    ]
