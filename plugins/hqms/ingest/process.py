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
   key winning — the only step that holds the warehouse's write lock
   (:func:`hqms.warehouse_attach.write_lock`): the steps before it run while another batch merges;
5. record the outcome (status, counts, every error) in the registry;
6. delete the plaintext landing object; the staging database goes when the batch is done.

The fetched zips, decoded CSVs and DuckDB spill files are plaintext; they live only in the run's
own folder (:func:`hqms.workdir.run_folder`), locked for the run's whole life. A run that dies
(kill -9, OOM, reboot) cannot clean up after itself, but the kernel drops its lock, so the next
run's :func:`hqms.workdir.sweep_work` sees the folder is nobody's and removes it.

A kill -9 anywhere leaves the unfinished uploads ``processing``, owned by the dead run; the next
run sees the owner's lock is gone and takes them back at once (:meth:`Registry.release_dead`,
:meth:`Registry.acquire`), removes the dead run's work folder and repeats the steps: the vault
step is idempotent, the merge replaces the upload's own rows, and the registry update is a
replace. Nothing is deleted before the state that makes it redundant is durable. Each upload is
marked *in flight* exactly while it is fetched or its round runs, so a death is charged only to
an upload that was alone in flight; uploads in flight together are *suspects* and run in halves
next time (:func:`_rounds`), until an upload that kills the process runs alone. An upload whose
stored bytes fail the checks is left for retry (and alerting) without holding up the rest.
"""
from __future__ import annotations

import logging
import resource
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import duckdb

from hqms import config as hqms_config
from hqms import quality, warehouse_attach
from hqms.ingest.failures import NOT_STORED, Reason, log_failure, lone_failure
from hqms.ingest.merge import FileResult, Part, merge_dataset, prepare, record_ops
from hqms.ingest.upload import Batch, Fetched, Round, Upload, UploadResult
from hqms.ingest.validate import ValidationReport, validate_many
from hqms.keys import load_keyring
from hqms.objectstore import ObjectStore, ObjectStoreUnavailable
from hqms.registry import Registry
from hqms.stagedb import open_stage
from hqms.workdir import owner_alive, run_folder, run_owner, sweep_work

log = logging.getLogger(__name__)

#: Uploads downloaded and vaulted concurrently.
FETCH_THREADS = 4


class IntegrityError(RuntimeError):
    """The stored object is not what the hospital sent (sha256 mismatch)."""


class BatchIncomplete(RuntimeError):
    """Some uploads of a batch could not be processed; they are handed back for a retry."""


@dataclass(frozen=True)
class Outcome:
    upload_id: str
    stream: str
    status: str
    record_count: int
    conforming_count: int
    error_count: int


def decide_status(report: ValidationReport) -> tuple[str, str, str]:
    """processed / partially_accepted / rejected, with the message a data manager reads.

    Files holding their header and no record, without any error, are a zero report (零报告): a
    day without cases is normal for the daily streams, and the hospital did report it, so it is
    ``processed`` (the marts count it as received). With an error (a file without a header or
    missing a required column) nothing was reported and it stays ``rejected``.
    """
    n, ok = report.record_count, report.conforming_count
    errors = sum(1 for e in report.errors if e.severity == "error")
    if not n and not errors:
        return ("processed", "零报告：文件只有表头，没有记录",
                "zero report: the files hold a header and no records")
    if n and ok == n and not errors:
        return "processed", f"全部 {n} 条记录符合接口标准", f"all {n} records conform to the interface standard"
    if ok:
        return ("partially_accepted", f"{ok}/{n} 条记录符合接口标准，{errors} 个错误，详见错误明细",
                f"{ok} of {n} records conform; {errors} errors, see the error list")
    return ("rejected", f"没有符合接口标准的记录（{errors} 个错误），请修正后重新上传",
            f"no record conforms ({errors} errors); please correct and upload again")


def open_warehouse(cfg: hqms_config.Config) -> duckdb.DuckDBPyConnection:
    con = warehouse_attach.connect(cfg)
    con.execute("SET enable_progress_bar = false")  # see hqms.stagedb.open_stage
    con.execute(f"SET memory_limit = '{cfg.duckdb_memory_limit}'")
    con.execute(f"SET threads = {cfg.duckdb_threads}")
    con.execute(f"SET temp_directory = '{cfg.work_dir / 'duckdb_tmp'}'")
    return con


def _fetch(upload: Upload, batch: Batch, work: Path) -> Path:
    """Steps 1–2: the verified original, vaulted."""
    from hqms import vault
    from hqms.intake.zipcheck import sha256_file

    local = work / f"{upload.upload_id}.zip"
    batch.store.get_file(batch.cfg.buckets["landing"], upload.object_key, local)
    if sha256_file(local) != upload.sha256:
        raise IntegrityError(f"upload {upload.upload_id}: stored object does not match the sha256 "
                             "recorded at intake")
    vault.store_original(batch.store, batch.cfg, upload.as_row(), local, batch.keyring)
    return local


def _fetch_all(uploads: list[Upload], batch: Batch, work: Path) -> tuple[list[Fetched], dict[str, Reason]]:
    """Steps 1–2 for every upload, a few at a time: each is a handful of S3 round trips and
    OpenSSL work that releases the GIL. Suspects (:func:`_rounds`) are fetched one at a time, so
    one that kills the process in this step dies alone. Each upload is in flight while fetched.
    Returns (fetched in claim order, ids handed back with their :data:`Reason`)."""
    def fetch(upload: Upload) -> Path:
        batch.registry.set_in_flight([upload.upload_id], True)
        try:
            return _fetch(upload, batch, work)
        finally:
            batch.registry.set_in_flight([upload.upload_id], False)

    fetched: list[Fetched] = []
    left: dict[str, Reason] = {}
    with (ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="hqms-fetch") as pool,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="hqms-fetch-suspect") as alone):
        futures = [(u, (alone if u.suspect else pool).submit(fetch, u)) for u in uploads]
        for upload, future in futures:
            try:
                fetched.append(Fetched(upload, future.result()))
            except ObjectStoreUnavailable:
                log.warning("upload %s: S3 unavailable while fetching; left for retry", upload.upload_id)
                left[upload.upload_id] = None
            except Exception:
                log.exception("upload %s could not be fetched and vaulted; left for retry", upload.upload_id)
                left[upload.upload_id] = NOT_STORED
    return fetched, left


def _parts(results: list[UploadResult]) -> dict[str, list[Part]]:
    """The round's non-fatal files per dataset, with what the merge records about them."""
    parts: dict[str, list[Part]] = {}
    for r in results:
        for sf in r.report.files:
            if not sf.fatal:
                parts.setdefault(sf.dataset.id, []).append(Part(
                    sf, r.upload.upload_id, r.upload.received_at, r.report.conforming(sf)))
    return parts


def _merge_round(con: duckdb.DuckDBPyConnection, results: list[UploadResult], parts: dict[str, list[Part]]) -> None:
    """Step 4 for the whole round, in one transaction: one merge statement per dataset. Fills
    each result's ``files``."""
    by_id = {r.upload.upload_id: r for r in results}
    for r in results:
        r.files = [FileResult(sf, 0, None, None) for sf in r.report.files if sf.fatal]
    con.execute("BEGIN TRANSACTION")
    try:
        for dataset_parts in parts.values():
            for part, merged in zip(dataset_parts, merge_dataset(con, dataset_parts[0].staged.dataset,
                                                                 dataset_parts)):
                by_id[part.upload_id].files.append(merged)
        record_ops(con, results)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _csv_bytes(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(info.file_size for info in zf.infolist())


def _rounds(fetched: list[Fetched], max_bytes: int) -> list[list[Fetched]]:
    """Consecutive groups of uploads whose CSVs total at most ``max_bytes`` (an upload larger
    than that is a group of its own): one staging database at a time, so memory is bounded by
    the budget, not by how much a batch happens to hold.

    Suspects (uploads in flight when a run died with ``suspect`` of them in flight) come last,
    in groups of at most half that many: a death is bisected down to the one upload that causes
    it, which is then alone in flight and charged; the innocent half finishes meanwhile."""
    normal = [item for item in fetched if not item.upload.suspect]
    suspects = sorted((item for item in fetched if item.upload.suspect), key=lambda item: item.upload.suspect)
    rounds = _pack(normal, max_bytes, len(normal))
    for level, group in groupby(suspects, key=lambda item: item.upload.suspect):
        rounds += _pack(list(group), max_bytes, max(1, level // 2))
    return rounds


def _pack(items: list[Fetched], max_bytes: int, max_count: int) -> list[list[Fetched]]:
    rounds: list[list[Fetched]] = []
    size = 0
    for item in items:
        n = _csv_bytes(item.path)
        if not rounds or size + n > max_bytes or len(rounds[-1]) >= max_count:
            rounds.append([])
            size = 0
        rounds[-1].append(item)
        size += n
    return rounds


def _clock() -> tuple[float, float]:
    """(wall, process CPU) seconds: a round's log line shows both, so the data team can see how
    much of each step ran on more than one core."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime


def _process_round(round_: Round, batch: Batch) -> list[Outcome]:
    """Steps 3–6 for fetched and vaulted uploads: one staging database, one GX checkpoint, one
    warehouse transaction."""
    cfg, work = batch.cfg, round_.work
    started = _clock()
    with open_stage(work / "duckdb_tmp", memory_limit=cfg.duckdb_memory_limit,
                    threads=cfg.duckdb_threads) as stage:
        reports = validate_many(stage, [(f.upload.upload_id, f.path, f.upload.org_code) for f in round_.items],
                                work, docs_dir=cfg.gx_docs_dir / round_.round_id, run_id=round_.round_id,
                                received={f.upload.upload_id: f.upload.received_day for f in round_.items})
        validated = _clock()
        # staging numbers rows by insertion order; from here on no step depends on row order,
        # and without it DuckDB builds and writes tables in parallel (merge ≈ 2× faster)
        stage.con.execute("SET preserve_insertion_order = false")
        results: list[UploadResult] = []
        for f in round_.items:
            report = reports[f.upload.upload_id]
            status, msg_zh, msg_en = decide_status(report)
            results.append(UploadResult(f.upload, report, status, (msg_zh, msg_en)))
        parts = _parts(results)
        prepare(stage.con, batch.keyring, parts)
        prepared = _clock()
        warehouse_attach.open_for_merge(stage.con, cfg, f"ingest round {round_.round_id}")
        try:
            _merge_round(stage.con, results, parts)
        finally:
            warehouse_attach.close_for_merge(stage.con)
    merged = _clock()
    outcomes: list[Outcome] = []
    for r in results:
        uid = r.upload.upload_id
        batch.registry.replace_errors(uid, r.report.errors)
        batch.registry.set_status(uid, r.status, message_zh=r.message[0], message_en=r.message[1],
                                  record_count=r.report.record_count,
                                  conforming_count=r.report.conforming_count)
        _delete_landing(batch.store, cfg, r.upload)
        outcomes.append(Outcome(uid, r.upload.stream, r.status, r.report.record_count,
                                r.report.conforming_count, r.error_count))
    done = _clock()
    steps = zip(("stage+validate", "keyed crypto", "de-identify+merge", "record"),
                (started, validated, prepared, merged), (validated, prepared, merged, done))
    log.info("round %s: %d uploads, %d records; %s (wall s / CPU s)", round_.round_id, len(outcomes),
             sum(o.record_count for o in outcomes),
             ", ".join(f"{name} {b[0] - a[0]:.1f}/{b[1] - a[1]:.1f}" for name, a, b in steps))
    return outcomes


def _delete_landing(store: ObjectStore, cfg: hqms_config.Config, upload: Upload) -> None:
    """Step 6. The outcome is recorded already: a store that fails now (an outage) must not make
    a processed upload look unfinished; :func:`hqms.ingest.run.sweep_landing` removes it later."""
    try:
        store.delete(cfg.buckets["landing"], upload.object_key)
    except ObjectStoreUnavailable:
        log.warning("upload %s is recorded; its landing object stays until the next sweep (S3 unavailable)",
                    upload.upload_id)


def _process_isolated(round_: Round, batch: Batch, left: dict[str, Reason]) -> list[Outcome]:
    """A round, and if it fails, each of its uploads as a round of its own: one upload that
    breaks the ingest must not hold back the others. The round's files (decoded CSVs, spill)
    are removed first, whatever happened — a round that filled the disk must not leave the
    uploads run alone without room. An upload that fails alone is handed back charged with its
    reason (``left``); :meth:`Registry.release` marks it ``failed`` after ``HQMS_MAX_ATTEMPTS``."""
    ids = round_.upload_ids
    work = round_.work
    batch.registry.set_in_flight(ids, True)
    try:
        return _process_round(round_, batch)
    except Exception as exc:  # noqa: BLE001 — isolate whatever broke, report it, go on
        batch.registry.set_in_flight(ids, False)
        if len(ids) == 1:
            uid = ids[0]
            left[uid] = lone_failure(uid, work, exc, csv_bytes=_csv_bytes(work.parent / f"{uid}.zip"))
            return []
        log_failure(f"round {round_.round_id} failed; processing its {len(ids)} uploads one at a time", exc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outcomes: list[Outcome] = []
    for n, item in enumerate(round_.items):
        outcomes += _process_isolated(Round(f"{round_.round_id}.u{n + 1}", [item],
                                            work.with_name(f"{work.name}.u{n + 1}")), batch, left)
    return outcomes


def _process_in(work: Path, uploads: list[Upload], batch: Batch) -> tuple[list[Outcome], dict[str, Reason]]:
    """Steps 1–6 for a batch, its plaintext in ``work``: (outcomes, ids handed back)."""
    quality.preload()
    started = time.perf_counter()
    fetched, left = _fetch_all(uploads, batch, work)
    log.info("batch %s: %d uploads fetched and vaulted in %.1f s", batch.run_id, len(fetched),
             time.perf_counter() - started)
    rounds = _rounds(fetched, batch.cfg.batch_max_bytes)
    outcomes: list[Outcome] = []
    for n, items in enumerate(rounds):
        round_id = batch.run_id if len(rounds) == 1 else f"{batch.run_id}.{n + 1}"
        outcomes += _process_isolated(Round(round_id, items, work / f"round{n + 1}"), batch, left)
    return outcomes, left


@contextmanager
def _heartbeat(registry: Registry, owner: str, lease_seconds: int) -> Iterator[None]:
    """Refresh the claims' heartbeat every quarter lease while the run lives: how runs on other
    hosts tell this one is alive (same-host runs look at its folder lock)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(max(1.0, lease_seconds / 4)):
            try:
                registry.heartbeat(owner)
            except Exception:  # a missed beat is retried; the lease allows three
                log.warning("heartbeat of %s failed; trying again", owner, exc_info=True)

    thread = threading.Thread(target=beat, name="hqms-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def process_batch(upload_ids: list[str], cfg: hqms_config.Config | None = None) -> list[Outcome]:
    """Acquire these uploads (landed ones, and claims of dead runs) and run steps 1–6: fetch and
    vault them all, then stage, validate and merge them in rounds of at most
    ``cfg.batch_max_bytes`` of CSV. Uploads a live run holds are skipped. Sweeps dead runs'
    work folders first: this is the one step every worker runs on its own local ``work_dir``
    (``hqms ingest ID`` included). Raises :class:`BatchIncomplete` naming the uploads handed
    back for a retry — only those: an upload whose outcome is recorded is never among them."""
    cfg = cfg or hqms_config.load()
    cfg.ensure_dirs()
    sweep_work(cfg)
    if not upload_ids:
        return []
    registry = Registry.from_config(cfg)
    store = ObjectStore.from_config(cfg)
    run_id = f"{upload_ids[0]}+{len(upload_ids) - 1}"
    with run_folder(cfg, run_id) as work:
        owner = run_owner(work)
        uploads = [Upload.from_row(row) for row in registry.acquire(upload_ids, owner, owner_alive,
                                                                     cfg.max_attempts)]
        if not uploads:
            return []
        with _heartbeat(registry, owner, cfg.claim_lease_seconds):
            batch = Batch(cfg, registry, store, load_keyring(cfg), run_id)
            outcomes, left = _process_in(work, uploads, batch)
            handed_back = registry.release(left, cfg.max_attempts) if left else []
    if handed_back:
        failed = [u["upload_id"] for u in handed_back if u["status"] == "failed"]
        raise BatchIncomplete(
            f"{len(outcomes)} of {len(uploads)} uploads processed; {len(handed_back)} handed back for "
            f"retry: {', '.join(u['upload_id'] for u in handed_back)}"
            + (f" ({len(failed)} now failed: {', '.join(failed)})" if failed else ""))
    return outcomes


def process_upload(upload_id: str, cfg: hqms_config.Config | None = None) -> Outcome | None:
    """One upload (operators' ``hqms ingest``); None when it is not landed or a live run holds it."""
    outcomes = process_batch([upload_id], cfg)
    return outcomes[0] if outcomes else None

