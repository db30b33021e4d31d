"""Process landed uploads end to end, in batches; every step is safe to repeat after a crash.

Per upload, in this order, and why:
1. download the landing object and verify its sha256 against the intake record — the bytes we
   validate are the bytes the hospital sent;
2. vault: encrypt the original (SM4-GCM, data key wrapped with SM2), store, verify — before any
   plaintext could be deleted;
3. stage + validate: the uploads of one *round* (up to ``HQMS_BATCH_MAX_BYTES`` of CSV, so memory
   stays bounded however large the batch) share one private in-memory staging database (one
   table per dataset) and one Great Expectations checkpoint (GX costs per expectation and table,
   not per row, so a round of small daily uploads validates in about the time of one);
4. compute the round's pseudonyms and ciphertext (once per distinct identifier), attach the
   warehouse and de-identify and merge the conforming rows of the whole round plus the uploads'
   ops rows in ONE warehouse transaction, one statement per dataset, newest version per natural
   key winning (the ``hqms_warehouse`` pool serialises ingest tasks; the warehouse file is
   locked only for this step);
5. record the outcome (status, counts, every error) in the registry;
6. delete the plaintext landing object; the round's staging database goes with its merge.

Steps 4 (from the warehouse transaction on) to 6 of one round run on a merge thread while the
next round is staged and validated: the two halves load different cores (Python vs DuckDB),
warehouse transactions still run one at a time and in order (:func:`_rounds_overlapped`).

A kill -9 anywhere leaves the unfinished uploads ``processing``; the next run reclaims them
(stale claim) and repeats the steps: the vault step is idempotent, the merge replaces the
upload's own rows, and the registry update is a replace. Nothing is deleted before the state that
makes it redundant is durable. An upload whose stored bytes fail the checks is left for retry
(and alerting) without holding up the rest of the batch.
"""
from __future__ import annotations

import logging
import resource
import shutil
import time
import traceback
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from hqms import config as hqms_config
from hqms import quality, sqlmacros
from hqms.ingest.merge import FileResult, Part, UploadRecord, merge_dataset, prepare, record_ops
from hqms.ingest.validate import ValidationReport, validate_many
from hqms.keys import Keyring, load_keyring
from hqms.objectstore import ObjectStore
from hqms.registry import Registry
from hqms.stagedb import StageDB, open_stage
from hqms.warehouse import ensure_schema

log = logging.getLogger(__name__)

#: Uploads downloaded and vaulted concurrently.
FETCH_THREADS = 4


class IntegrityError(RuntimeError):
    """The stored object is not what the hospital sent (sha256 mismatch)."""


class BatchIncomplete(RuntimeError):
    """Some uploads of a batch could not be processed; they stay ``processing`` for a retry."""


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


def attach_warehouse(con: duckdb.DuckDBPyConnection, cfg: hqms_config.Config) -> None:
    """Make the warehouse file the default catalog of ``con`` (a staging connection), schema
    and macros in place; :data:`hqms.ingest.merge.STAGE` still names the staged tables."""
    cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"ATTACH '{cfg.warehouse_path}' AS warehouse")
    con.execute("USE warehouse")
    ensure_schema(con)
    sqlmacros.install(con)


def detach_warehouse(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("USE memory")
    con.execute("DETACH warehouse")


def _fetch(upload: dict, store: ObjectStore, cfg: hqms_config.Config, keyring: Keyring, work: Path) -> Path:
    """Steps 1–2: the verified original, vaulted."""
    from hqms import vault
    from hqms.intake.zipcheck import sha256_file

    local = work / f"{upload['upload_id']}.zip"
    store.get_file(cfg.buckets["landing"], upload["object_key"], local)
    if sha256_file(local) != upload["sha256"]:
        raise IntegrityError(f"upload {upload['upload_id']}: stored object does not match the sha256 "
                             "recorded at intake")
    vault.store_original(store, cfg, upload, local, keyring)
    return local


def _fetch_all(uploads: list[dict], store: ObjectStore, cfg: hqms_config.Config, keyring: Keyring,
               work: Path) -> tuple[list[tuple[dict, Path]], list[str]]:
    """Steps 1–2 for every upload, a few at a time: each is a handful of S3 round trips and
    OpenSSL work that releases the GIL. Returns (fetched in claim order, failed upload ids)."""
    fetched: list[tuple[dict, Path]] = []
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="hqms-fetch") as pool:
        futures = [(u, pool.submit(_fetch, u, store, cfg, keyring, work)) for u in uploads]
        for upload, future in futures:
            try:
                fetched.append((upload, future.result()))
            except Exception:
                log.exception("upload %s could not be fetched and vaulted; left for retry", upload["upload_id"])
                failed.append(upload["upload_id"])
    return fetched, failed


def _parts(uploads: list[dict], reports: dict[str, ValidationReport]) -> dict[str, list[Part]]:
    """The batch's non-fatal files per dataset, with what the merge records about them."""
    parts: dict[str, list[Part]] = {}
    for upload in uploads:
        report = reports[upload["upload_id"]]
        for sf in report.files:
            if not sf.fatal:
                parts.setdefault(sf.dataset.id, []).append(Part(
                    sf, upload["upload_id"], upload["received_at"], report.conforming(sf)))
    return parts


def _merge_batch(con: duckdb.DuckDBPyConnection, uploads: list[dict], reports: dict[str, ValidationReport],
                 decisions: dict[str, tuple[str, str, str]], parts: dict[str, list[Part]]) -> None:
    """Step 4 for the whole batch, in one transaction: one merge statement per dataset."""
    results: dict[str, list[FileResult]] = {u["upload_id"]: [] for u in uploads}
    for upload in uploads:
        for sf in reports[upload["upload_id"]].files:
            if sf.fatal:
                results[upload["upload_id"]].append(FileResult(sf, 0, 0, None, None))
    con.execute("BEGIN TRANSACTION")
    try:
        for dataset_parts in parts.values():
            for part, result in zip(dataset_parts, merge_dataset(con, dataset_parts[0].staged.dataset,
                                                                 dataset_parts)):
                results[part.upload_id].append(result)
        record_ops(con, [UploadRecord(u, decisions[u["upload_id"]][0], decisions[u["upload_id"]][1:],
                                      results[u["upload_id"]], reports[u["upload_id"]].errors) for u in uploads])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _csv_bytes(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(info.file_size for info in zf.infolist())


def _rounds(fetched: list[tuple[dict, Path]], max_bytes: int) -> list[list[tuple[dict, Path]]]:
    """Consecutive groups of uploads whose CSVs total at most ``max_bytes`` (an upload larger
    than that is a group of its own): one staging database at a time, so memory is bounded by
    the budget, not by how much a batch happens to hold."""
    rounds: list[list[tuple[dict, Path]]] = []
    size = 0
    for item in fetched:
        n = _csv_bytes(item[1])
        if not rounds or (rounds[-1] and size + n > max_bytes):
            rounds.append([])
            size = 0
        rounds[-1].append(item)
        size += n
    return rounds


#: Staging databases alive at once: the round merging and the round staged next
#: (:func:`_rounds_overlapped`); they share ``HQMS_DUCKDB_MEMORY_LIMIT``.
STAGES_AT_ONCE = 2


def stage_memory_limit(cfg: hqms_config.Config, at_once: int) -> str:
    """One staging database's share of the ingest task's DuckDB memory budget when ``at_once``
    of them may be alive together (beyond it, DuckDB spills to the work directory): two halves
    cost the same as one database with the whole budget, where two whole ones raised peak memory
    by ≈ 300 MB; a round that never overlaps another keeps the whole budget (halved, a batch of
    one round spilled and took a third longer)."""
    return f"{hqms_config.size_bytes(cfg.duckdb_memory_limit) // max(1, at_once)}B"


@dataclass
class _Staged:
    """A round staged, validated and prepared (steps 3–4 before the warehouse), waiting for its
    warehouse transaction; owns its staging database until :func:`_commit_round` closes it."""

    fetched: list[tuple[dict, Path]]
    run_id: str
    stage: StageDB
    reports: dict[str, ValidationReport]
    decisions: dict[str, tuple[str, str, str]]
    parts: dict[str, list[Part]]
    seconds: tuple[float, float]   # stage+validate, keyed crypto (wall)

    @property
    def uploads(self) -> list[dict]:
        return [u for u, _ in self.fetched]


def _stage_round(fetched: list[tuple[dict, Path]], cfg: hqms_config.Config, keyring: Keyring, run_id: str,
                 work: Path, at_once: int = 1) -> _Staged:
    """Steps 3–4 up to the warehouse: one staging database, one GX checkpoint, the round's
    pseudonyms and ciphertext. Touches neither the warehouse nor the registry."""
    started = time.perf_counter()
    uploads = [u for u, _ in fetched]
    stage = open_stage(work / "duckdb_tmp", memory_limit=stage_memory_limit(cfg, at_once),
                       threads=cfg.duckdb_threads)
    try:
        reports = validate_many(stage, [(u["upload_id"], path, u["org_code"]) for u, path in fetched], work,
                                docs_dir=cfg.gx_docs_dir / run_id, run_id=run_id)
        validated = time.perf_counter()
        # staging numbers rows by insertion order; from here on no step depends on row order,
        # and without it DuckDB builds and writes tables in parallel (merge ≈ 2× faster)
        stage.con.execute("SET preserve_insertion_order = false")
        decisions = {u["upload_id"]: decide_status(reports[u["upload_id"]]) for u in uploads}
        parts = _parts(uploads, reports)
        prepare(stage.con, keyring, parts)
    except BaseException:
        stage.close()
        raise
    return _Staged(fetched, run_id, stage, reports, decisions, parts,
                   (validated - started, time.perf_counter() - validated))


def _commit_round(staged: _Staged, cfg: hqms_config.Config, registry: Registry, store: ObjectStore) -> list[Outcome]:
    """Steps 4–6 of a staged round: the warehouse transaction, the registry, the landing
    deletion; the staging database is closed whatever happens."""
    started = time.perf_counter()
    uploads = staged.uploads
    try:
        attach_warehouse(staged.stage.con, cfg)
        try:
            _merge_batch(staged.stage.con, uploads, staged.reports, staged.decisions, staged.parts)
        finally:
            detach_warehouse(staged.stage.con)
    finally:
        staged.stage.close()
    merged = time.perf_counter()
    outcomes: list[Outcome] = []
    for upload in uploads:
        uid = upload["upload_id"]
        report = staged.reports[uid]
        status, msg_zh, msg_en = staged.decisions[uid]
        registry.replace_errors(uid, report.errors)
        registry.set_status(uid, status, message_zh=msg_zh, message_en=msg_en,
                            record_count=report.record_count, conforming_count=report.conforming_count)
        store.delete(cfg.buckets["landing"], upload["object_key"])
        n_err = sum(1 for e in report.errors if e.severity == "error")
        outcomes.append(Outcome(uid, upload["stream"], status, report.record_count, report.conforming_count, n_err))
    log.info("round %s: %d uploads, %d records; stage+validate %.1f s, keyed crypto %.1f s, "
             "de-identify+merge %.1f s, record %.1f s; peak RSS so far %.0f MB", staged.run_id, len(outcomes),
             sum(o.record_count for o in outcomes), *staged.seconds, merged - started,
             time.perf_counter() - merged, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return outcomes


def _process_round(fetched: list[tuple[dict, Path]], cfg: hqms_config.Config, registry: Registry,
                   store: ObjectStore, keyring: Keyring, run_id: str, work: Path) -> list[Outcome]:
    """Steps 3–6 for fetched and vaulted uploads, one after the other."""
    return _commit_round(_stage_round(fetched, cfg, keyring, run_id, work), cfg, registry, store)


def _log_failure(what: str, exc: BaseException) -> None:
    """Log where processing failed, without the exception's message: DuckDB and the csv module
    quote the offending line of the upload there, and logs must never hold personal data."""
    log.error("%s: %s (message withheld: it may quote uploaded data)\n%s", what, type(exc).__name__,
              "".join(traceback.format_tb(exc.__traceback__)).rstrip())


def _one_at_a_time(round_: list[tuple[dict, Path]], cfg: hqms_config.Config, registry: Registry,
                   store: ObjectStore, keyring: Keyring, round_id: str, work: Path, failed: list[str],
                   exc: BaseException) -> list[Outcome]:
    """After ``round_`` failed with ``exc``: each of its uploads as a round of its own (one
    upload that breaks the ingest must not hold back the others). An upload that fails alone
    stays ``processing`` (added to ``failed``) for the next claim, which gives up after
    ``HQMS_MAX_ATTEMPTS`` (:meth:`Registry.fail_exhausted`)."""
    if len(round_) == 1:
        _log_failure(f"upload {round_[0][0]['upload_id']} could not be processed; left for retry", exc)
        failed.append(round_[0][0]["upload_id"])
        return []
    _log_failure(f"round {round_id} failed; processing its {len(round_)} uploads one at a time", exc)
    outcomes: list[Outcome] = []
    for n, item in enumerate(round_):
        outcomes += _process_isolated([item], cfg, registry, store, keyring, f"{round_id}.u{n + 1}",
                                      work.with_name(f"{work.name}.u{n + 1}"), failed)
    return outcomes


def _process_isolated(round_: list[tuple[dict, Path]], cfg: hqms_config.Config, registry: Registry,
                      store: ObjectStore, keyring: Keyring, round_id: str, work: Path,
                      failed: list[str]) -> list[Outcome]:
    """A round, and if it fails, each of its uploads on its own (:func:`_one_at_a_time`)."""
    try:
        return _process_round(round_, cfg, registry, store, keyring, round_id, work)
    except Exception as exc:  # noqa: BLE001 — isolate whatever broke, report it, go on
        return _one_at_a_time(round_, cfg, registry, store, keyring, round_id, work, failed, exc)


@dataclass
class _Committing:
    """A round whose warehouse transaction runs on the merge thread."""

    round_: list[tuple[dict, Path]]
    round_id: str
    work: Path
    future: Future


def _rounds_overlapped(rounds: list[list[tuple[dict, Path]]], cfg: hqms_config.Config, registry: Registry,
                       store: ObjectStore, keyring: Keyring, run_id: str, work: Path,
                       failed: list[str]) -> list[Outcome]:
    """Every round, the next one staged and validated while the previous one merges.

    Why: staging, GX and the keyed crypto are mostly Python (one core), the merge is DuckDB
    work that releases the GIL; one after the other the machine's two cores were 1.3–1.5 busy.
    At most two staging databases live at once (the one merging, the one staged next), and
    warehouse transactions never overlap: one merge thread runs them in order, and a failed
    round is retried upload by upload only once no merge is running.
    """
    outcomes: list[Outcome] = []

    def settle(committing: _Committing) -> None:
        try:
            outcomes.extend(committing.future.result())
        except Exception as exc:  # noqa: BLE001 — as _process_isolated
            outcomes.extend(_one_at_a_time(committing.round_, cfg, registry, store, keyring, committing.round_id,
                                           committing.work, failed, exc))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hqms-merge") as merger:
        committing: _Committing | None = None
        for n, round_ in enumerate(rounds):
            round_id = run_id if len(rounds) == 1 else f"{run_id}.{n + 1}"
            round_work = work / f"round{n + 1}"
            try:
                staged: _Staged | BaseException = _stage_round(round_, cfg, keyring, round_id, round_work,
                                                               at_once=min(len(rounds), STAGES_AT_ONCE))
            except Exception as exc:  # noqa: BLE001 — handled once the running merge is done
                staged = exc
            if committing is not None:
                settle(committing)
                committing = None
            if isinstance(staged, BaseException):
                outcomes += _one_at_a_time(round_, cfg, registry, store, keyring, round_id, round_work, failed,
                                           staged)
            else:
                committing = _Committing(round_, round_id, round_work,
                                         merger.submit(_commit_round, staged, cfg, registry, store))
        if committing is not None:
            settle(committing)
    return outcomes


def process_batch(upload_ids: list[str], cfg: hqms_config.Config | None = None) -> list[Outcome]:
    """Run steps 1–6 for uploads already claimed as ``processing`` by the caller: fetch and
    vault them all, then stage, validate and merge them in rounds of at most
    ``cfg.batch_max_bytes`` of CSV."""
    cfg = cfg or hqms_config.load()
    cfg.ensure_dirs()
    registry = Registry.from_config(cfg)
    store = ObjectStore.from_config(cfg)
    uploads = [u for u in (registry.get(i) for i in upload_ids) if u and u["status"] == "processing"]
    if not uploads:
        return []
    run_id = f"{uploads[0]['upload_id']}+{len(uploads) - 1}"
    work = cfg.work_dir / run_id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    quality.preload()
    started = time.perf_counter()
    cpu_started = time.process_time()
    keyring = load_keyring(cfg)
    fetched, failed = _fetch_all(uploads, store, cfg, keyring, work)
    log.info("batch %s: %d uploads fetched and vaulted in %.1f s", run_id, len(fetched),
             time.perf_counter() - started)
    outcomes = _rounds_overlapped(_rounds(fetched, cfg.batch_max_bytes), cfg, registry, store, keyring, run_id,
                                  work, failed)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    log.info("batch %s: %d uploads, %d records in %.1f s, %.1f CPU s (%.2f cores busy)", run_id, len(outcomes),
             sum(o.record_count for o in outcomes), wall, cpu, cpu / wall if wall else 0.0)
    shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise BatchIncomplete(f"{len(failed)} uploads left for retry: {', '.join(failed)}")
    return outcomes


def process_upload(upload_id: str, cfg: hqms_config.Config | None = None) -> Outcome:
    """One claimed upload (operators' ``hqms ingest``)."""
    (outcome,) = process_batch([upload_id], cfg)
    return outcome

