"""Merge a batch of uploads' de-identified rows into the warehouse, exactly once.

Hospitals re-send the last 7 days every day, so a record arrives many times. Within ONE DuckDB
transaction per batch, per dataset: the conforming rows of all the batch's files go through one
de-identifying SELECT; per natural key the newest version wins (latest receive time, then latest
upload, then last file and row); it replaces the stored version unless that came from a *later*
upload (replaying an old upload never regresses data). The uploads' ``ops`` rows are replaced in
the same transaction. Re-running a batch (task retry, crash before the registry heard about the
commit) deletes and re-inserts the same rows: no duplicates.

The merge runs on the staging database's connection with the warehouse attached (see
:func:`hqms.ingest.process`): staged rows go from one to the other inside DuckDB.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from hqms.ingest.deidentify import KeyedMemo, build_keyed, install_functions, select_sql
from hqms.ingest.stage import StagedFile
from hqms.ingest.validate import failing_table
from hqms.keys import Keyring
from hqms.registry import ErrorRecord
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
    merged: int                # distinct natural keys this file contributed as the newest version
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
    install_functions(con)
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
    rows, keys = con.execute("SELECT count(*), count(DISTINCT _nk) FROM incoming").fetchone()
    if rows != keys:  # a record sent more than once in this batch: keep its newest version
        con.execute("DELETE FROM incoming WHERE rowid NOT IN (SELECT arg_max(rowid, "
                    "(_received_at, _upload_id, _source_file, _source_row)) FROM incoming GROUP BY _nk)")
    con.execute(f"""DELETE FROM dw.{ds.id} AS t USING incoming AS i
                    WHERE t._nk = i._nk AND t._received_at <= i._received_at""")
    con.execute(f"""INSERT INTO dw.{ds.id} SELECT i.* FROM incoming AS i
                    WHERE NOT EXISTS (SELECT 1 FROM dw.{ds.id} AS t WHERE t._nk = i._nk)""")
    event = f'"{ds.column(ds.event_column).name}"' if ds.event_column else "NULL"
    stats = {
        (u, f): (n, lo, hi)
        for u, f, n, lo, hi in con.execute(
            f"SELECT _upload_id, _source_file, count(*), CAST(min({event}) AS DATE)::VARCHAR, "
            f"CAST(max({event}) AS DATE)::VARCHAR FROM incoming GROUP BY ALL").fetchall()
    }
    con.execute("DROP TABLE incoming")
    out = []
    for p in parts:
        n, lo, hi = stats.get((p.upload_id, p.staged.file_name), (0, None, None))
        out.append(FileResult(p.staged, p.conforming, n, lo, hi))
    return out


def record_ops(con: duckdb.DuckDBPyConnection, upload: dict, status: str, message: tuple[str, str],
               results: list[FileResult], errors: list[ErrorRecord]) -> None:
    """Replace the upload's rows in ops.uploads / ops.upload_files / ops.upload_errors."""
    uid = upload["upload_id"]
    for table in ("uploads", "upload_files", "upload_errors"):
        con.execute(f"DELETE FROM ops.{table} WHERE upload_id = ?", [uid])
    record_count = sum(r.staged.record_count for r in results)
    conforming = sum(r.conforming for r in results)
    n_err = sum(1 for e in errors if e.severity == "error")
    con.execute(
        "INSERT INTO ops.uploads VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?, now())",
        [uid, upload["stream"], upload["org_code"], upload.get("channel"), upload["file_name"],
         upload["sha256"], upload["size_bytes"], upload["received_at"], status, message[0], message[1],
         record_count, conforming, n_err, len(errors) - n_err])
    con.executemany(
        "INSERT INTO ops.upload_files VALUES (?, ?, ?, ?, ?, ?, CAST(? AS DATE), CAST(? AS DATE))",
        [[uid, r.staged.file_name, r.staged.dataset.id, r.staged.dataset.stream, r.staged.record_count,
          r.conforming, r.period_start, r.period_end] for r in results])
    if errors:
        batch = pa.table({
            "upload_id": [uid] * len(errors),
            "seq": list(range(1, len(errors) + 1)),
            "file_name": [e.file_name for e in errors],
            "row": pa.array([e.row for e in errors], pa.int64()),
            "column_code": [e.column for e in errors],
            "rule": [e.rule for e in errors],
            "check_id": [e.check_id for e in errors],
            "severity": [e.severity for e in errors],
            "message_zh": [e.message_zh for e in errors],
            "message_en": [e.message_en for e in errors],
            "value_masked": [e.value_masked for e in errors],
        })
        con.register("hqms_err_batch", batch)
        con.execute("INSERT INTO ops.upload_errors SELECT * FROM hqms_err_batch")
        con.unregister("hqms_err_batch")
