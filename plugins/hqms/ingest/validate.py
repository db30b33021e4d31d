"""Validate uploads: stage their CSVs, run the Great Expectations suites, list every error.

Used by ingest (before de-identification) and by ``hqms submit --dry-run`` (nothing lands). The
rules themselves live in the spec and :mod:`hqms.rules`; GX executes them (:mod:`hqms.quality`).
All uploads of a batch share one staging database and one GX checkpoint, one table per dataset.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from hqms import config
from hqms.ingest.hints import FAILURE_HINTS, outside_period, value_note
from hqms.ingest.stage import FILES_TABLE, StagedFile, stage_uploads
from hqms.registry import ErrorRecord, shown_value
from hqms.rules import Check, compile_checks, typed_expr
from hqms.sqltext import literal
from hqms.spec import Dataset
from hqms.stagedb import StageDB, open_stage


@dataclass
class ValidationReport:
    files: list[StagedFile] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    #: per staged file (``_src``): number of rows with at least one error (error severity)
    failing: dict[str, int] = field(default_factory=dict)

    @property
    def record_count(self) -> int:
        return sum(f.record_count for f in self.files)

    @property
    def conforming_count(self) -> int:
        return sum(self.conforming(f) for f in self.files)

    def conforming(self, sf: StagedFile) -> int:
        if sf.fatal:
            return 0
        return sf.parsed_count - self.failing.get(sf.src, 0)


def failing_table(ds: Dataset) -> str:
    """Stage table of the ``(_src, _row)`` pairs of ``ds`` that must not go on."""
    return f"{ds.id}__failing"


def _row_errors(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failures: str,
                files: dict[str, StagedFile], checks: dict[str, Check],
                reports: dict[str, ValidationReport]) -> None:
    """One ErrorRecord per failing (row, check), value masked when the column is personal or the
    value looks identifying (:func:`hqms.registry.shown_value`), and a note when the value holds
    full-width characters (:func:`hqms.ingest.hints.value_note`)."""
    for (column,) in con.execute(f"SELECT DISTINCT \"column\" FROM {failures}").fetchall():
        if column is None:
            rows = con.execute(f"SELECT _src, _row, check_id, NULL FROM {failures} "
                               "WHERE \"column\" IS NULL").fetchall()
            personal = False
        else:
            rows = con.execute(
                f'SELECT f._src, f._row, f.check_id, s."{column}" FROM {failures} f '
                f"JOIN {table} s USING (_src, _row) WHERE f.\"column\" = ?", [column]).fetchall()
            personal = ds.column(column).personal
        for src, row, check_id, value in rows:
            sf, check = files[src], checks[check_id]
            shown = None if value is None else shown_value(value, personal)
            note_zh, note_en = value_note(value)
            reports[sf.upload].errors.append(ErrorRecord(
                file_name=sf.file_name, row=row, column=column, rule=check.rule, message_zh=check.zh + note_zh,
                message_en=check.en + note_en, check_id=check_id, value_masked=shown, severity=check.severity))


def _duplicate_keys(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str) -> list[tuple[str, int]]:
    """Conforming rows whose natural key repeats an earlier conforming row of the same upload
    (file order, then row order): each such later row gets a ``duplicate_key`` error and joins
    :func:`failing_table`, so the first one is kept.

    Why here and not silently in the merge: the merge keeps one row per key, so an export that
    wrote a record twice (or a whole file twice) would otherwise be counted conforming and then
    vanish. Keys compare as sent, trimmed and case-folded (identifiers are pseudonymised upper-case).
    """
    if not ds.natural_key:
        return []
    keys = ", ".join(f'upper(s."{c}")' for c in ds.natural_key)
    return sorted(con.execute(
        f"INSERT INTO {failing_table(ds)} SELECT _src, _row FROM (SELECT s._src, s._row, row_number() OVER "
        f"(PARTITION BY f.upload, {keys} ORDER BY f.rowid, s._row) AS k "
        f"FROM {table} AS s JOIN {FILES_TABLE} AS f USING (_src) "
        f"ANTI JOIN {failing_table(ds)} AS x USING (_src, _row)) WHERE k > 1 RETURNING _src, _row").fetchall())


def _after_receipt(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str,
                   received: dict[str, date]) -> list[tuple[str, int]]:
    """Conforming rows dated after the day their upload was received (China time), each joining
    :func:`failing_table`: a visit cannot be reported before it happened, so the date is wrong (a
    year or month typed wrong, a test extract) — counted, it would open a future period in the
    marts. Compared by day, so clocks and time zones cannot make a same-day visit fail."""
    if not ds.event_column or not received:
        return []
    con.register("hqms_received_rows", pa.table({"upload": list(received), "received": list(received.values())}))
    event = f"CAST({typed_expr(ds.column(ds.event_column))} AS DATE)"
    try:
        return sorted(con.execute(
            f"INSERT INTO {failing_table(ds)} SELECT s._src, s._row FROM {table} AS s "
            f"JOIN {FILES_TABLE} AS f USING (_src) JOIN hqms_received_rows AS r ON r.upload = f.upload "
            f"ANTI JOIN {failing_table(ds)} AS x USING (_src, _row) "
            f"WHERE {event} > r.received RETURNING _src, _row").fetchall())
    finally:
        con.unregister("hqms_received_rows")


def _after_receipt_error(ds: Dataset, file_name: str, row: int, received: date) -> ErrorRecord:
    col = ds.column(ds.event_column or "")
    return ErrorRecord(
        file_name=file_name, row=row, column=col.code, rule="after_receipt",
        message_zh=f"{col.zh}（{col.code}）晚于数据包的上传日期 {received:%Y-%m-%d}：不能上报尚未发生的记录",
        message_en=f"{col.name} ({col.code}) is after the day the upload was received, {received:%Y-%m-%d}: "
                   "a record cannot be reported before it happens",
        check_id=f"{ds.id}.after_receipt")


def _duplicate_error(ds: Dataset, file_name: str, row: int) -> ErrorRecord:
    cols = "+".join(ds.natural_key)
    return ErrorRecord(
        file_name=file_name, row=row, column=None, rule="duplicate_key",
        message_zh=f"与本次上传中前面一行的主键（{cols}）重复，只保留第一条",
        message_en=f"repeats the natural key ({cols}) of an earlier row of this upload; only the first is kept",
        check_id=f"{ds.id}.duplicate_key")


def validate_many(stage: StageDB, zips: list[tuple[str, Path, str]], work: Path, *,
                  docs_dir: Path | None, run_id: str, received: dict[str, date]) -> dict[str, ValidationReport]:
    """Stage several uploads (key, zip path, uploader org) into ``stage`` and validate them in
    one Great Expectations checkpoint; the failing rows of each dataset are left in
    :func:`failing_table` for the merge step. ``received``: each key's day of receipt (China
    time). Returns one report per key."""
    from hqms import quality

    con = stage.con
    staged = stage_uploads(con, zips, work)
    reports = {key: ValidationReport(files=files) for key, files in staged.items()}
    live = [sf for files in staged.values() for sf in files if not sf.fatal]
    by_table = {sf.table: sf.dataset for sf in live}
    results = quality.run_tables(stage, list(by_table.items()), docs_dir=docs_dir, run_id=run_id)
    files = {sf.src: sf for sf in live}
    for result in results:
        ds = by_table[result.table]
        checks = {c.check_id: c for c in compile_checks(ds)}
        warnings = [literal(cid) for cid, c in checks.items() if c.severity == "warning"]
        spare = f" WHERE check_id NOT IN ({', '.join(warnings)})" if warnings else ""
        con.execute(f"CREATE OR REPLACE TABLE {failing_table(ds)} AS "
                    f"SELECT DISTINCT _src, _row FROM {result.failures_table}{spare}")
        for src, row in _duplicate_keys(con, ds, result.table):
            reports[files[src].upload].errors.append(_duplicate_error(ds, files[src].file_name, row))
        for src, row in _after_receipt(con, ds, result.table, received):
            upload = files[src].upload
            reports[upload].errors.append(_after_receipt_error(ds, files[src].file_name, row, received[upload]))
        for src, n in con.execute(f"SELECT _src, count(*) FROM {failing_table(ds)} GROUP BY 1").fetchall():
            reports[files[src].upload].failing[src] = n
        _row_errors(con, ds, result.table, result.failures_table, files, checks, reports)
        # file-level warnings over the validated table (hqms.ingest.hints): never change counts
        names = {src: sf.file_name for src, sf in files.items() if sf.table == result.table}
        found = [w for hint in FAILURE_HINTS for w in hint(con, ds, result.table, result.failures_table, names)]
        for src, warning in found + outside_period(con, ds, result.table, failing_table(ds), names):
            reports[files[src].upload].errors.append(warning)
    for report in reports.values():
        report.errors.extend(e for sf in report.files for e in sf.errors)
        report.errors.sort(key=lambda e: (e.file_name, e.row or 0, e.column or "", e.rule))
    return reports


def validate_zip(zip_path: Path, org_code: str) -> ValidationReport:
    """Dry run: validate every file and row of a zip without landing or storing anything."""
    with tempfile.TemporaryDirectory(prefix="hqms-dryrun-") as tmp:
        work = Path(tmp)
        with open_stage(work / "duckdb_tmp") as stage:
            reports = validate_many(stage, [("dry-run", zip_path, org_code)], work, docs_dir=None,
                                    run_id="dry-run", received={"dry-run": datetime.now(config.CHINA_TZ).date()})
        return reports["dry-run"]
