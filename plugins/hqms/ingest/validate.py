"""Validate an upload: stage its CSVs, run the Great Expectations suites, list every error.

Used by ingest (before de-identification) and by ``hqms submit --dry-run`` (nothing lands). The
rules themselves live in the spec and :mod:`hqms.rules`; GX executes them (:mod:`hqms.quality`).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from hqms import sqlmacros
from hqms.ingest.stage import StagedFile, persist, stage_zip
from hqms.registry import ErrorRecord, mask_value
from hqms.rules import Check, compile_checks


@dataclass
class ValidationReport:
    files: list[StagedFile] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    #: per staged table: number of rows with at least one error (error severity)
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
        return sf.parsed_count - self.failing.get(sf.table, 0)

    @staticmethod
    def failing_rows_sql(sf: StagedFile) -> str:
        """Subquery (in the attached ``stage`` database) of the rows that must not go on."""
        return f"(SELECT _row FROM stage.{failures_table(sf)})"


def failures_table(sf: StagedFile) -> str:
    return f"{sf.table}__failing"


def _row_errors(con: duckdb.DuckDBPyConnection, sf: StagedFile, failures: str,
                checks: dict[str, Check]) -> list[ErrorRecord]:
    """One ErrorRecord per failing (row, check), value masked when the column is personal."""
    out: list[ErrorRecord] = []
    for (column,) in con.execute(f"SELECT DISTINCT \"column\" FROM {failures}").fetchall():
        if column is None:
            rows = con.execute(f"SELECT _row, check_id, NULL FROM {failures} WHERE \"column\" IS NULL").fetchall()
            personal = False
        else:
            rows = con.execute(
                f'SELECT f._row, f.check_id, s."{column}" FROM {failures} f JOIN {sf.table} s USING (_row) '
                f"WHERE f.\"column\" = ?", [column]).fetchall()
            personal = sf.dataset.column(column).personal
        for row, check_id, value in rows:
            check = checks[check_id]
            shown = None if value is None else (mask_value(value) if personal else value)
            out.append(ErrorRecord(file_name=sf.file_name, row=row, column=column, rule=check.rule,
                                   message_zh=check.zh, message_en=check.en, check_id=check_id,
                                   value_masked=shown))
    return out


def validate_many(zips: list[tuple[str, Path, str]], stage_db: Path, work: Path, *,
                  docs_dir: Path | None, run_id: str) -> dict[str, ValidationReport]:
    """Stage several uploads (key, zip path, uploader org) into one ``stage_db`` and validate
    them in one Great Expectations checkpoint; failing rows per staged table are left in
    ``<table>__failing`` for the merge step. Returns one report per key."""
    from hqms import quality

    reports = {key: ValidationReport() for key, _, _ in zips}
    con = duckdb.connect(str(stage_db))
    try:
        # The staging file is scratch space: checkpoint it once on close, not after every one of
        # the batch's hundreds of small tables (that cost ~30 ms per table).
        con.execute("SET checkpoint_threshold = '4GB'")
        con.execute(f"SET temp_directory = '{work / 'duckdb_tmp'}'")
        sqlmacros.install(con)
        for n, (key, zip_path, org_code) in enumerate(zips):
            reports[key].files = stage_zip(zip_path, org_code, con, work / f"u{n}", prefix=f"u{n}_")
        persist(con, [sf for r in reports.values() for sf in r.files])
    finally:
        con.close()
    tables = [(sf.table, sf.dataset) for r in reports.values() for sf in r.files if not sf.fatal]
    results = {q.table: q for q in quality.run_tables(stage_db, tables, docs_dir=docs_dir, run_id=run_id)}
    con = duckdb.connect(str(stage_db))
    try:
        for report in reports.values():
            for sf in report.files:
                report.errors.extend(sf.errors)
                if sf.fatal:
                    continue
                checks = {c.check_id: c for c in compile_checks(sf.dataset)}
                failures = results[sf.table].failures_table
                con.execute(f"CREATE OR REPLACE TABLE {failures_table(sf)} AS SELECT DISTINCT _row FROM {failures}")
                report.failing[sf.table] = con.execute(f"SELECT count(*) FROM {failures_table(sf)}").fetchone()[0]
                report.errors.extend(_row_errors(con, sf, failures, checks))
            report.errors.sort(key=lambda e: (e.file_name, e.row or 0, e.column or "", e.rule))
    finally:
        con.close()
    return reports


def validate_zip(zip_path: Path, org_code: str) -> ValidationReport:
    """Dry run: validate every file and row of a zip without landing or storing anything."""
    with tempfile.TemporaryDirectory(prefix="hqms-dryrun-") as tmp:
        work = Path(tmp)
        reports = validate_many([("dry-run", zip_path, org_code)], work / "stage.duckdb", work,
                                docs_dir=None, run_id="dry-run")
        return reports["dry-run"]
