"""Zip → staging DuckDB file: one table per CSV, columns named by canonical spec codes.

The staging contract (what validation and de-identification read) is in ``hqms.rules``:
VARCHAR columns named by code (trimmed, empty → NULL, missing optional columns NULL), ``_src`` =
the staging table's own name (so tables of one dataset can be validated together), ``_row`` =
the 1-based data row as the hospital counts it (header excluded), ``_uploader_org``.

Files are staged into temporary tables; :func:`persist` then writes ONE table per dataset (with
``_src`` naming the file) and a view per file — hundreds of small tables would each cost whole
storage blocks per column on disk.

Fast path: DuckDB ``read_csv`` on the transcoded UTF-8 file; a table created from a scan keeps
insertion order, so ``rowid + 1`` is the record number. If DuckDB rejects any line (wrong column
count, broken quoting) the row numbers after it would shift, so the file is re-read through
Python's csv module, which numbers every record and reports the malformed ones by row.
"""
from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from hqms.ingest.decode import DecodeError, transcode
from hqms.registry import ErrorRecord
from hqms.spec import Dataset, dataset_for_filename

#: Header spellings exporters add that carry no data (Java serialisation artefacts).
KNOWN_JUNK_HEADERS = {"SERIALVERSIONUID"}


@dataclass
class StagedFile:
    """One CSV of an upload after staging."""

    entry: str
    file_name: str
    dataset: Dataset
    table: str
    record_count: int = 0      # data rows as the hospital counts them (malformed ones included)
    parsed_count: int = 0      # rows that reached the staging table
    encoding: str = ""
    #: File-level problems and malformed rows (csv_parse), found before rule validation.
    errors: list[ErrorRecord] = field(default_factory=list)
    #: A fatal file (missing required column, undecodable) has no conforming row at all.
    fatal: bool = False


def _file_error(file_name: str, rule: str, zh: str, en: str, column: str | None = None,
                row: int | None = None, severity: str = "error") -> ErrorRecord:
    return ErrorRecord(file_name=file_name, row=row, column=column, rule=rule, message_zh=zh,
                       message_en=en, severity=severity, check_id=f"file.{rule}")


def map_header(fields: list[str], ds: Dataset, file_name: str) -> tuple[list[str], list[ErrorRecord], bool]:
    """Name every CSV column: canonical code, or ``_extra_<i>`` for unknown/duplicate ones.

    Returns (names, problems, fatal). Unknown extra columns are warnings; a missing required
    column is a file-level error that stops the file (no row can conform without it).
    """
    aliases = ds.alias_map
    names: list[str] = []
    problems: list[ErrorRecord] = []
    seen: set[str] = set()
    for i, raw in enumerate(fields):
        token = raw.strip().strip('"').lstrip("\ufeff").strip()
        code = aliases.get(token.upper())
        if code is None or code in seen:
            names.append(f"_extra_{i}")
            if token.upper() not in KNOWN_JUNK_HEADERS or code in seen:
                what = "重复的列" if code in seen else "未知的列"
                what_en = "duplicate column" if code in seen else "unknown column"
                problems.append(_file_error(
                    file_name, "unknown_column", f"{what}“{token}”已忽略",
                    f"{what_en} '{token}' ignored", column=token or None, severity="warning"))
            else:
                problems.append(_file_error(
                    file_name, "unknown_column", f"导出程序附加的列“{token}”已忽略",
                    f"exporter artefact column '{token}' ignored", column=token, severity="warning"))
            continue
        seen.add(code)
        names.append(code)
    fatal = False
    for col in ds.columns:
        if col.code in seen:
            continue
        if col.required:
            fatal = True
            problems.append(_file_error(
                file_name, "missing_column", f"缺少必填列 {col.code}（{col.zh}），整个文件未能接收",
                f"required column {col.code} ({col.name}) is missing; the file cannot be accepted",
                column=col.code))
        else:
            problems.append(_file_error(
                file_name, "missing_column", f"缺少列 {col.code}（{col.zh}），按空值处理",
                f"column {col.code} ({col.name}) is missing; treated as empty",
                column=col.code, severity="warning"))
    return names, problems, fatal


def _read_header(utf8_path: Path) -> list[str]:
    with utf8_path.open(encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh), [])


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _csv_options(names: list[str]) -> str:
    columns = "{" + ", ".join(f"{_sql_str(n)}: 'VARCHAR'" for n in names) + "}"
    return (f"delim=',', quote='\"', escape='\"', header=true, auto_detect=false, "
            f"columns={columns}, parallel=true")


def _stage_select(ds: Dataset, names: list[str], org_code: str, row_expr: str, table: str) -> str:
    present = set(names)
    cols = [f"{_sql_str(table)} AS _src", f"{row_expr} AS _row", f"{_sql_str(org_code)} AS _uploader_org"]
    for col in ds.columns:
        if col.code in present:
            cols.append(f'NULLIF(TRIM("{col.code}"), \'\') AS "{col.code}"')
        else:
            cols.append(f'NULL::VARCHAR AS "{col.code}"')
    return ", ".join(cols)


def _load_fast(con: duckdb.DuckDBPyConnection, path: Path, names: list[str], ds: Dataset,
               org_code: str, table: str) -> bool:
    """Strict DuckDB read into a temporary (in-memory) table, then the staging table in file order;
    False when DuckDB refuses any line (the caller falls back to the numbered path)."""
    raw = f"{table}__raw"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT * FROM "
                    f"read_csv({_sql_str(str(path))}, {_csv_options(names)})")
    except duckdb.Error:
        con.execute(f"DROP TABLE IF EXISTS {raw}")
        return False
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT "
                f"{_stage_select(ds, names, org_code, '(rowid + 1)::BIGINT', table)} FROM {raw}")
    con.execute(f"DROP TABLE {raw}")
    return True


def _load_numbered(con: duckdb.DuckDBPyConnection, path: Path, names: list[str], ds: Dataset,
                   org_code: str, table: str, work: Path, file_name: str) -> list[ErrorRecord]:
    """Slow, exact path: number every record in Python, keep the well-formed ones."""
    clean = work / f"{table}__numbered.csv"
    errors: list[ErrorRecord] = []
    width = len(names)
    with path.open(encoding="utf-8", newline="") as src, clean.open("w", encoding="utf-8", newline="") as dst:
        reader = csv.reader(src, strict=False)
        writer = csv.writer(dst, lineterminator="\n")
        next(reader, None)
        writer.writerow(["_n", *names])
        try:
            for n, record in enumerate(reader, start=1):
                if len(record) == width:
                    writer.writerow([n, *record])
                elif record:
                    errors.append(_file_error(
                        file_name, "csv_parse",
                        f"第 {n} 行有 {len(record)} 列，表头有 {width} 列（引号或分隔符错误）",
                        f"row {n} has {len(record)} fields, the header has {width} (quoting or delimiter error)",
                        row=n))
        except csv.Error as exc:
            errors.append(_file_error(file_name, "csv_parse", f"无法解析 CSV：{exc}",
                                      f"CSV cannot be parsed: {exc}", row=reader.line_num))
    con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute(
        f"CREATE TEMP TABLE {table} AS SELECT {_stage_select(ds, names, org_code, 'CAST(_n AS BIGINT)', table)} "
        f"FROM read_csv({_sql_str(str(clean))}, {_csv_options(['_n', *names])})")
    clean.unlink()
    return errors


def stage_zip(zip_path: Path, org_code: str, con: duckdb.DuckDBPyConnection, work: Path,
              prefix: str = "") -> list[StagedFile]:
    """Stage every CSV entry of an (already safety-checked) zip into tables of ``con``; table
    names start with ``prefix`` so several uploads can share one staging file."""
    staged: list[StagedFile] = []
    work.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        entries = [i for i in zf.infolist() if not i.is_dir()]
        for n, info in enumerate(entries):
            file_name = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
            ds = dataset_for_filename(info.filename)
            if ds is None:  # intake refuses these; kept as a guard for files landed by other means
                raise ValueError(f"{file_name}: not a file of the interface standard")
            sf = StagedFile(entry=info.filename, file_name=file_name, dataset=ds, table=f"{prefix}f{n}_{ds.id}")
            staged.append(sf)
            utf8 = work / f"{sf.table}.csv"
            try:
                sf.encoding = transcode(lambda: zf.open(info), utf8).encoding
            except DecodeError as exc:
                sf.fatal = True
                sf.errors.append(_file_error(
                    file_name, "encoding", f"文件编码无法识别（第 {exc.line} 行附近既非 UTF-8 也非 GBK）",
                    f"unreadable encoding near line {exc.line} (neither UTF-8 nor GBK)"))
                continue
            _stage_file(con, sf, utf8, org_code, work)
            utf8.unlink(missing_ok=True)
    return staged


def _stage_file(con: duckdb.DuckDBPyConnection, sf: StagedFile, utf8: Path, org_code: str, work: Path) -> None:
    header = _read_header(utf8)
    if not header:
        sf.fatal = True
        sf.errors.append(_file_error(sf.file_name, "empty_file", "文件为空（没有表头）",
                                     "the file is empty (no header row)"))
        return
    names, problems, fatal = map_header(header, sf.dataset, sf.file_name)
    sf.errors.extend(problems)
    if not _load_fast(con, utf8, names, sf.dataset, org_code, sf.table):
        sf.errors.extend(_load_numbered(con, utf8, names, sf.dataset, org_code, sf.table, work, sf.file_name))
    parsed = con.execute(f"SELECT count(*), coalesce(max(_row), 0) FROM {sf.table}").fetchone()
    malformed = sum(1 for e in sf.errors if e.rule == "csv_parse")
    sf.parsed_count = parsed[0]
    sf.record_count = max(parsed[1], parsed[0] + malformed)
    sf.fatal = sf.fatal or fatal
    if sf.record_count == 0:
        sf.errors.append(_file_error(sf.file_name, "empty_file", "文件没有数据行",
                                     "the file has a header but no data rows", severity="warning"))


def persist(con: duckdb.DuckDBPyConnection, files: list[StagedFile]) -> None:
    """Write the staged temporary tables to the staging file: one ``<dataset>__staged`` table per
    dataset and, under each file's table name, a view of its rows (what validation and the merge
    read)."""
    by_ds: dict[str, list[StagedFile]] = {}
    for sf in files:
        if con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                       [sf.table]).fetchone()[0]:
            by_ds.setdefault(sf.dataset.id, []).append(sf)
    for ds_id, members in by_ds.items():
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM temp.{sf.table}" for sf in members)
        con.execute(f"CREATE OR REPLACE TABLE {ds_id}__staged AS {union}")
        for sf in members:
            con.execute(f"DROP TABLE temp.{sf.table}")
            con.execute(f"CREATE VIEW {sf.table} AS SELECT * FROM {ds_id}__staged WHERE _src = {_sql_str(sf.table)}")
