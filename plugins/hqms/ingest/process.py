"""Process one landed upload end to end; every step is safe to repeat after a crash.

Order, and why:
1. download the landing object and verify its sha256 against the intake record — the bytes we
   validate are the bytes the hospital sent;
2. vault: encrypt the original (SM4-GCM, data key wrapped with SM2), store, verify — before any
   plaintext could be deleted;
3. stage + validate (Great Expectations) in a private staging DuckDB file;
4. de-identify and merge the conforming rows plus the upload's ops rows in ONE warehouse
   transaction (the step serialised by the ``hqms_warehouse`` pool);
5. record the outcome (status, counts, every error) in the registry;
6. delete the plaintext landing object and the staging file.

A kill -9 anywhere leaves the upload ``processing``; the next run reclaims it (stale claim) and
repeats the steps: the vault step is idempotent, the merge replaces the upload's own rows, and
the registry update is a replace. Nothing is deleted before the state that makes it redundant is
durable.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from hqms import config as hqms_config
from hqms import sqlmacros
from hqms.ingest.deidentify import Context, register_udfs
from hqms.ingest.merge import FileResult, merge_file, record_ops
from hqms.ingest.validate import ValidationReport, validate_staged
from hqms.keys import load_keyring
from hqms.objectstore import ObjectStore
from hqms.registry import Registry
from hqms.warehouse import ensure_schema

log = logging.getLogger(__name__)


class IntegrityError(RuntimeError):
    """The stored object is not what the hospital sent (sha256 mismatch)."""


@dataclass(frozen=True)
class Outcome:
    upload_id: str
    stream: str
    status: str
    record_count: int
    conforming_count: int
    error_count: int


def decide_status(report: ValidationReport) -> tuple[str, str, str]:
    """processed / partially_accepted / rejected, with the message a data manager reads."""
    n, ok = report.record_count, report.conforming_count
    errors = sum(1 for e in report.errors if e.severity == "error")
    if n and ok == n and not errors:
        return "processed", f"全部 {n} 条记录符合接口标准", f"all {n} records conform to the interface standard"
    if ok:
        return ("partially_accepted", f"{ok}/{n} 条记录符合接口标准，{errors} 个错误，详见错误明细",
                f"{ok} of {n} records conform; {errors} errors, see the error list")
    return ("rejected", f"没有符合接口标准的记录（{errors} 个错误），请修正后重新上传",
            f"no record conforms ({errors} errors); please correct and upload again")


def open_warehouse(cfg: hqms_config.Config) -> duckdb.DuckDBPyConnection:
    cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(cfg.warehouse_path))
    con.execute(f"SET memory_limit = '{cfg.duckdb_memory_limit}'")
    con.execute(f"SET threads = {cfg.duckdb_threads}")
    con.execute(f"SET temp_directory = '{cfg.work_dir / 'duckdb_tmp'}'")
    ensure_schema(con)
    sqlmacros.install(con)
    return con


def process_upload(upload_id: str, cfg: hqms_config.Config | None = None) -> Outcome:
    """Run steps 1–6 for one upload (already claimed as ``processing`` by the caller)."""
    cfg = cfg or hqms_config.load()
    cfg.ensure_dirs()
    registry = Registry.from_config(cfg)
    store = ObjectStore.from_config(cfg)
    upload = registry.get(upload_id)
    if upload is None:
        raise KeyError(f"unknown upload {upload_id}")
    work = cfg.work_dir / upload_id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    local_zip = work / "upload.zip"
    landing = cfg.buckets["landing"]

    store.get_file(landing, upload["object_key"], local_zip)
    from hqms.intake.zipcheck import sha256_file

    if sha256_file(local_zip) != upload["sha256"]:
        raise IntegrityError(f"upload {upload_id}: stored object does not match the sha256 recorded at intake")

    from hqms import vault

    vault.store_original(store, cfg, upload, local_zip)

    stage_db = work / "stage.duckdb"
    report = validate_staged(local_zip, upload["org_code"], stage_db, work,
                             docs_dir=cfg.gx_docs_dir / upload_id, run_id=upload_id)
    status, msg_zh, msg_en = decide_status(report)

    keyring = load_keyring(cfg)
    ctx = Context(upload_id=upload_id, org_code=upload["org_code"], received_at=upload["received_at"])
    con = open_warehouse(cfg)
    try:
        register_udfs(con, keyring)
        con.execute(f"ATTACH '{stage_db}' AS stage (READ_ONLY)")
        con.execute("BEGIN TRANSACTION")
        results: list[FileResult] = []
        for sf in report.files:
            failing = report.failing_rows_sql(sf)
            if sf.fatal:
                results.append(FileResult(sf, 0, None, None))
            else:
                results.append(merge_file(con, sf, ctx, failing))
        record_ops(con, upload, status, (msg_zh, msg_en), results, report.errors)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()

    conforming = sum(r.conforming for r in results)
    registry.replace_errors(upload_id, report.errors)
    registry.set_status(upload_id, status, message_zh=msg_zh, message_en=msg_en,
                        record_count=report.record_count, conforming_count=conforming)
    store.delete(landing, upload["object_key"])
    shutil.rmtree(work, ignore_errors=True)
    n_err = sum(1 for e in report.errors if e.severity == "error")
    log.info("upload %s: %s, %d records, %d conforming, %d errors",
             upload_id, status, report.record_count, conforming, n_err)
    return Outcome(upload_id, upload["stream"], status, report.record_count, conforming, n_err)
