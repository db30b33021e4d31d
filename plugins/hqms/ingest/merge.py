"""Merge a round of uploads' de-identified rows into the warehouse, exactly once.

Hospitals re-send the last 7 days every day, so a record arrives many times. Within ONE DuckDB
transaction per round of uploads, per dataset: the conforming rows of all the round's files go
through one de-identifying SELECT; per natural key the newest version wins (latest receive time,
then latest upload, then last file and row); it replaces the stored version unless that came from a *later*
upload (replaying an old upload never regresses data). The uploads' ``ops`` rows are replaced in
the same transaction. Re-running a round (task retry, crash before the registry heard about the
commit) deletes and re-inserts the same rows: no duplicates.

The merge runs on the staging database's connection with the warehouse attached (see
:mod:`hqms.ingest.process`): staged rows go from one to the other inside DuckDB.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from hqms.ingest.deidentify import KeyedMemo, build_keyed, install_redaction, install_regions, select_sql
from hqms.ingest.stage import StagedFile
from hqms.ingest.upload import UploadResult
from hqms.ingest.validate import failing_table
from hqms.keys import Keyring
from hqms.spec import Dataset

#: Catalog of the batch's in-memory staging database, as seen from the merge connection.
STAGE = "memory.main"


@dataclass(frozen=True)
class Part:
    """One staged file of one upload, and what the merge needs to know about it."""

    staged: StagedFile
    upload_id: str
    received_at: str   # ISO 8601 with offset
    conforming: int    # rows that passed every rule (接口标准达标数)


@dataclass(frozen=True)
class FileResult:
    staged: StagedFile
    conforming: int            # rows that passed every rule
    period_start: str | None
    period_end: str | None


def conforming_table(ds: Dataset) -> str:
    """Temporary table of the batch's conforming rows of ``ds``, with their lineage (read once
    per keyed column and once by the merge, so materialised rather than a view)."""
    return f"hqms_conforming_{ds.id}"


def prepare(con: duckdb.DuckDBPyConnection, keyring: Keyring, parts: dict[str, list[Part]]) -> None:
    """Everything the merge needs that does not touch the warehouse, so the warehouse is
    attached only for the merge statements: lineage per file, one table per dataset of its
    conforming rows, and every pseudonym and ciphertext of the batch (:func:`build_keyed`)."""
    lineage = pa.table({
        "_src": [p.staged.src for ps in parts.values() for p in ps],
        "_m_upload_id": [p.upload_id for ps in parts.values() for p in ps],
        "_m_received_at": [p.received_at for ps in parts.values() for p in ps],
        "_m_file": [p.staged.file_name for ps in parts.values() for p in ps],
    })
    con.register("hqms_lineage_rows", lineage)
    con.execute("CREATE OR REPLACE TEMP TABLE hqms_lineage AS SELECT * FROM hqms_lineage_rows")
    con.unregister("hqms_lineage_rows")
    install_regions(con)
    install_redaction(con)
    memo = KeyedMemo(keyring)
    for dataset_parts in parts.values():
        ds = dataset_parts[0].staged.dataset
        con.execute(f"CREATE OR REPLACE TEMP TABLE {conforming_table(ds)} AS SELECT * FROM "
                    f"{STAGE}.{dataset_parts[0].staged.table} JOIN temp.main.hqms_lineage USING (_src) "
                    f"ANTI JOIN {STAGE}.{failing_table(ds)} USING (_src, _row)")
        build_keyed(con, memo, ds, conforming_table(ds))


def merge_dataset(con: duckdb.DuckDBPyConnection, ds: Dataset, parts: list[Part]) -> list[FileResult]:
    """Upsert the conforming rows of ``parts`` (all of dataset ``ds``, after :func:`prepare`);
    caller owns the transaction."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE incoming AS {select_sql(ds, conforming_table(ds))}")
    con.execute(f"DROP TABLE {conforming_table(ds)}")
    event = f'"{ds.column(ds.event_column).name}"' if ds.event_column else "NULL"
    # each file's days, from all its conforming rows: before any is dropped for a newer version
    # (an upload superseded within its batch still covered those days — the submission marts
    # read them when its file names carry no date)
    periods = {
        (u, f): (lo, hi)
        for u, f, lo, hi in con.execute(
            f"SELECT _upload_id, _source_file, CAST(min({event}) AS DATE)::VARCHAR, "
            f"CAST(max({event}) AS DATE)::VARCHAR FROM incoming GROUP BY ALL").fetchall()
    }
    rows, keys = con.execute("SELECT count(*), count(DISTINCT _nk) FROM incoming").fetchone()
    if rows != keys:  # a record sent more than once in this batch: keep its newest version
        con.execute("DELETE FROM incoming WHERE rowid NOT IN (SELECT arg_max(rowid, "
                    "(_received_at, _upload_id, _source_file, _source_row)) FROM incoming GROUP BY _nk)")
    if ds.event_column:  # a replaced record's old date, when its new version moved it elsewhere
        con.execute(f"""INSERT INTO ops.moved_periods
                        SELECT DISTINCT '{ds.id}', t._org_code, CAST(t.{event} AS DATE), now()
                        FROM dw.{ds.id} AS t JOIN incoming AS i ON t._nk = i._nk
                        WHERE t._received_at <= i._received_at
                          AND CAST(t.{event} AS DATE) IS DISTINCT FROM CAST(i.{event} AS DATE)""")
    con.execute(f"""DELETE FROM dw.{ds.id} AS t USING incoming AS i
                    WHERE t._nk = i._nk AND t._received_at <= i._received_at""")
    # what still matches is a version from a later upload: it stays, the incoming row does not
    # go in. Two keys-only joins and a plain INSERT, not an anti-join INSERT, whose hash table
    # held every incoming column (measured: the lab merge ≈ 2× faster)
    con.execute(f"DELETE FROM incoming AS i USING dw.{ds.id} AS t WHERE t._nk = i._nk")
    con.execute(f"INSERT INTO dw.{ds.id} SELECT * FROM incoming")
    con.execute("DROP TABLE incoming")
    out = []
    for p in parts:
        lo, hi = periods.get((p.upload_id, p.staged.file_name), (None, None))
        out.append(FileResult(p.staged, p.conforming, lo, hi))
    return out


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, select: str = "*") -> None:
    con.register("hqms_ops_rows", rows)
    con.execute(f"INSERT INTO ops.{table} SELECT {select} FROM hqms_ops_rows")
    con.unregister("hqms_ops_rows")


def record_ops(con: duckdb.DuckDBPyConnection, records: list[UploadResult]) -> None:
    """Replace the uploads' rows in ops.uploads / ops.upload_files / ops.upload_errors: one
    DELETE and one INSERT per table for the whole round (per-upload statements each scanned
    the tables again)."""
    ids = [r.upload.upload_id for r in records]
    con.register("hqms_ops_ids", pa.table({"upload_id": ids}))
    for table in ("uploads", "upload_files", "upload_errors"):
        con.execute(f"DELETE FROM ops.{table} WHERE upload_id IN (SELECT upload_id FROM hqms_ops_ids)")
    con.unregister("hqms_ops_ids")
    uploads = [(r, r.error_count) for r in records]
    _insert_rows(con, "uploads", pa.table({
        "upload_id": ids,
        "stream": [r.upload.stream for r in records],
        "org_code": [r.upload.org_code for r in records],
        "channel": [r.upload.channel for r in records],
        "file_name": [r.upload.file_name for r in records],
        "sha256": [r.upload.sha256 for r in records],
        "size_bytes": pa.array([r.upload.size_bytes for r in records], pa.int64()),
        "received_at": [r.upload.received_at for r in records],
        "status": [r.status for r in records],
        "message_zh": [r.message[0] for r in records],
        "message_en": [r.message[1] for r in records],
        "record_count": pa.array([sum(f.staged.record_count for f in r.files) for r in records], pa.int64()),
        "conforming_count": pa.array([sum(f.conforming for f in r.files) for r in records], pa.int64()),
        "error_count": pa.array([n for _, n in uploads], pa.int64()),
        "warning_count": pa.array([len(r.report.errors) - n for r, n in uploads], pa.int64()),
    }), select="* REPLACE (CAST(received_at AS TIMESTAMPTZ) AS received_at), now()")
    files = [(r.upload.upload_id, f) for r in records for f in r.files]
    _insert_rows(con, "upload_files", pa.table({
        "upload_id": [u for u, _ in files],
        "file_name": [f.staged.file_name for _, f in files],
        "dataset": [f.staged.dataset.id for _, f in files],
        "stream": [f.staged.dataset.stream for _, f in files],
        "record_count": pa.array([f.staged.record_count for _, f in files], pa.int64()),
        "conforming_count": pa.array([f.conforming for _, f in files], pa.int64()),
        "period_start": pa.array([f.period_start for _, f in files], pa.string()).cast(pa.date32()),
        "period_end": pa.array([f.period_end for _, f in files], pa.string()).cast(pa.date32()),
    }))
    errors = [(r.upload.upload_id, seq, e) for r in records for seq, e in enumerate(r.report.errors, start=1)]
    if errors:
        _insert_rows(con, "upload_errors", pa.table({
            "upload_id": [u for u, _, _ in errors],
            "seq": pa.array([n for _, n, _ in errors], pa.int64()),
            "file_name": [e.file_name for _, _, e in errors],
            "row": pa.array([e.row for _, _, e in errors], pa.int64()),
            "column_code": pa.array([e.column for _, _, e in errors], pa.string()),
            "rule": [e.rule for _, _, e in errors],
            "check_id": pa.array([e.check_id for _, _, e in errors], pa.string()),
            "severity": [e.severity for _, _, e in errors],
            "message_zh": [e.message_zh for _, _, e in errors],
            "message_en": [e.message_en for _, _, e in errors],
            "value_masked": pa.array([e.value_masked for _, _, e in errors], pa.string()),
        }))
