"""Merge one upload's de-identified rows into the warehouse, exactly once.

Hospitals re-send the last 7 days every day, so a record arrives many times. Within one DuckDB
transaction per upload: rows of the upload replace the stored version of the same natural key
unless the stored one came from a *later* upload (replaying an old upload never regresses data);
the upload's ``ops`` rows are replaced too. Re-running the same upload (task retry, crash before
the registry heard about the commit) deletes and re-inserts the same rows: no duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from hqms.ingest.deidentify import Context, select_sql
from hqms.ingest.stage import StagedFile
from hqms.registry import ErrorRecord


@dataclass(frozen=True)
class FileResult:
    staged: StagedFile
    conforming: int            # rows that passed every rule (接口标准达标数)
    merged: int                # distinct natural keys written (a key repeated in a file counts once)
    period_start: str | None
    period_end: str | None


def _incoming(con: duckdb.DuckDBPyConnection, sf: StagedFile, ctx: Context, failing: str) -> None:
    """Temp table of the file's conforming rows, de-identified; last row wins within the file."""
    source = f"stage.{sf.table} WHERE _row NOT IN (SELECT _row FROM {failing})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT * FROM ("
                f"{select_sql(sf.dataset, ctx, source, sf.file_name)}) "
                f"QUALIFY row_number() OVER (PARTITION BY _nk ORDER BY _source_row DESC) = 1")


def merge_file(con: duckdb.DuckDBPyConnection, sf: StagedFile, ctx: Context, failing: str,
               conforming: int) -> FileResult:
    """Upsert one staged file's conforming rows into dw.<dataset>; caller owns the transaction."""
    ds = sf.dataset
    _incoming(con, sf, ctx, failing)
    con.execute(f"""DELETE FROM dw.{ds.id} AS t USING incoming AS i
                    WHERE t._nk = i._nk AND t._received_at <= i._received_at""")
    con.execute(f"""INSERT INTO dw.{ds.id} SELECT i.* FROM incoming AS i
                    WHERE NOT EXISTS (SELECT 1 FROM dw.{ds.id} AS t WHERE t._nk = i._nk)""")
    merged = con.execute("SELECT count(*) FROM incoming").fetchone()[0]
    period = (None, None)
    if ds.event_column and merged:
        name = ds.column(ds.event_column).name
        period = con.execute(f'SELECT CAST(min("{name}") AS DATE)::VARCHAR, '
                             f'CAST(max("{name}") AS DATE)::VARCHAR FROM incoming').fetchone()
    con.execute("DROP TABLE incoming")
    return FileResult(sf, conforming, merged, period[0], period[1])


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
        import pyarrow as pa

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
