"""Zips → the batch's staging database: one table per dataset, columns named by spec codes.

The staging contract (what validation and de-identification read) is in ``hqms.rules``:
VARCHAR columns named by code (trimmed, empty or a null marker → NULL, missing optional columns
NULL), ``_src`` = the file's id within the batch, ``_row`` = the 1-based data row as the
hospital counts it (header excluded), ``_uploader_org``. Table ``hqms_files`` lists every staged
file (``_src``, upload key, file name, uploader's org).

Cost is per batch, not per file: every file is transcoded to UTF-8 in Python (DuckDB's own
GB18030 decoding is not trusted, see stack-notes), then all files of one dataset that share a
header layout are read by ONE strict DuckDB ``read_csv`` over the list of files, straight into
the dataset's table: only a projection in between, so the table keeps the read order, file after
file, and ``rowid`` minus the file's first ``rowid`` is the record number. If DuckDB rejects a
line (wrong column count, broken quoting) the list is split in halves until the offending file
is alone; that file is re-read through Python's csv module, which numbers every record and
reports the malformed ones by row (a stray quote costs its own row only; a huge cell is staged
for the length rule). Dialects that are not the standard's get one clear error instead of
dozens: a TAB/semicolon/bar-separated file, a header line repeated inside a file (concatenated
exports).
"""
from __future__ import annotations

import csv
import functools
import io
import re
import zipfile
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

import duckdb

from hqms import identifiers
from hqms.ingest.decode import UNUSUAL_BLANKS, DecodeError, transcode
from hqms.intake.zipcheck import data_entries, entry_basename
from hqms.registry import ErrorRecord, looks_identifying, mask_value, redact_identifiers
from hqms.rules import ident, label_en, label_zh
from hqms.spec import Dataset, dataset_for_filename, datasets, header_key
from hqms.sqltext import literal

#: Header spellings exporters add that carry no data (Java serialisation artefacts).
KNOWN_JUNK_HEADERS = {"SERIALVERSIONUID"}
FILES_TABLE = "hqms_files"


def staging_table(ds: Dataset) -> str:
    """The batch's table of staged rows of ``ds``."""
    return f"{ds.id}__staged"


@dataclass
class StagedFile:
    """One CSV of an upload after staging."""

    entry: str
    file_name: str
    dataset: Dataset
    src: str                   # ``_src`` of its rows: unique within the batch
    upload: str                # key of the upload it came from
    uploader_org: str          # 医疗机构代码 of the uploading hospital (``_uploader_org``)
    record_count: int = 0      # data rows as the hospital counts them (malformed ones included)
    parsed_count: int = 0      # rows that reached the staging table
    encoding: str = ""
    unusual_blanks: bool = False   # holds blanks plain TRIM keeps (hqms.ingest.decode.UNUSUAL_BLANKS)
    lines: int = 0                 # physical lines of the transcoded file, header included
    blank_rows: int = 0            # rows without any value (not records; see _skip_blank_rows)
    text_formulas: bool = False    # the text holds ``="`` (see _unwrap_text_formulas)
    blank_tail: int = 0            # nameless fields ending the header (a trailing comma)
    #: File-level problems and malformed rows (csv_parse), found before rule validation.
    errors: list[ErrorRecord] = field(default_factory=list)
    #: A fatal file (missing required column, undecodable) has no conforming row at all.
    fatal: bool = False

    @property
    def table(self) -> str:
        return staging_table(self.dataset)


def _file_error(file_name: str, rule: str, zh: str, en: str, column: str | None = None,
                row: int | None = None, severity: str = "error") -> ErrorRecord:
    return ErrorRecord(file_name=file_name, row=row, column=column, rule=rule, message_zh=zh,
                       message_en=en, severity=severity, check_id=f"file.{rule}")


def _header_token(raw: str) -> str:
    """A header field without blanks, quotes and a BOM around it (in whichever order an
    exporter put them: a second BOM, after the one decoding drops, sits outside the quotes)."""
    return raw.strip().lstrip("\ufeff").strip().strip('"').lstrip("\ufeff").strip()


def headerless(fields: list[str], ds: Dataset) -> bool:
    """The first line is data, not a header: fewer than half of its fields are column names the
    spec knows (an exporter that leaves the header out), at any width — its fields are then a
    patient's values and must not be echoed as "unknown columns". A line naming every required
    column is a header however many extra columns the hospital's system added after them."""
    codes = [ds.column_for_header(_header_token(f)) for f in fields]
    if {c.code for c in ds.columns if c.required} <= set(codes):
        return False
    return sum(code is not None for code in codes) * 2 < len(fields)


def _without_blank_tail(fields: list[str]) -> list[str]:
    """``fields`` without the nameless ones at the end."""
    while fields and not _header_token(fields[-1]):
        fields = fields[:-1]
    return fields


#: Words of column labels besides those of the standard's own Chinese names (院内字段, 床号, …).
LABEL_WORDS = ("院内", "字段", "备注", "床号", "编号", "序号", "标志", "说明", "名称", "日期", "时间", "代码")
_LATIN_LABEL = re.compile(r"(?i)id|name|code|date|time|no\b|num|type|dept|flag|remark")


@functools.cache
def _label_bigrams() -> frozenset[str]:
    """Every two-character piece of a column label: the standard's Chinese names and :data:`LABEL_WORDS`."""
    labels = [c.zh for ds in datasets().values() for c in ds.columns] + list(LABEL_WORDS)
    return frozenset(label[i:i + 2] for label in labels for i in range(len(label) - 1))


def _shown_header(token: str) -> str:
    """An unknown header name as reports show it: masked when it may be a value rather than a
    label — a number (ID, phone), very long, or words (Chinese, pinyin) that share nothing with
    a column label: a patient's name where a header should be. The message also names the
    column's position, so a masked name is still found in the export."""
    if identifiers.may_identify(token) or len(token) > 40:
        return mask_value(token)
    if not looks_identifying(token):
        return token
    labels = _label_bigrams()
    if any(token[i:i + 2] in labels for i in range(len(token) - 1)) or _LATIN_LABEL.search(token):
        return token
    return mask_value(token)


def map_header(fields: list[str], ds: Dataset, file_name: str) -> tuple[list[str], list[ErrorRecord], bool]:
    """Name every CSV column: canonical code, or ``_extra_<i>`` for unknown/duplicate ones.

    Returns (names, problems, fatal). Unknown extra columns are warnings; a missing required
    column is a file-level error that stops the file (no row can conform without it).
    """
    names: list[str] = []
    problems: list[ErrorRecord] = []
    seen: set[str] = set()
    for i, raw in enumerate(fields):
        token = _header_token(raw)
        code = ds.column_for_header(token)
        if code is None or code in seen:
            names.append(f"_extra_{i}")
            if not token and any(not _header_token(f) for f in fields[:i]):
                continue  # nameless columns (trailing delimiters) get one warning, not one each
            if not token:
                problems.append(_file_error(
                    file_name, "unknown_column", f"表头第 {i + 1} 列没有列名（多了一个逗号？），该列已忽略",
                    f"header field {i + 1} has no name (an extra comma?); the column is ignored",
                    severity="warning"))
            elif header_key(token) not in KNOWN_JUNK_HEADERS or code in seen:
                token = _shown_header(token)
                what = "重复的列" if code in seen else "未知的列"
                what_en = "duplicate column" if code in seen else "unknown column"
                problems.append(_file_error(
                    file_name, "unknown_column", f"表头第 {i + 1} 列：{what}“{token}”已忽略",
                    f"header field {i + 1}: {what_en} '{token}' ignored", column=token or None,
                    severity="warning"))
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


#: Separators some exporters use instead of the standard's comma, as they are named to the user.
FOREIGN_DELIMITERS = {"\t": ("制表符", "TAB"), ";": ("分号", "semicolon ';'"), "|": ("竖线", "vertical bar '|'"),
                      "，": ("全角逗号“，”", "full-width comma '，'")}


def foreign_delimiter(header: list[str], ds: Dataset) -> str | None:
    """The separator a one-column header really uses, when splitting by it yields known
    column codes (a TAB- or semicolon-separated export); else None."""
    if len(header) != 1:
        return None
    for delim in FOREIGN_DELIMITERS:
        tokens = [_header_token(t) for t in header[0].split(delim)]
        if len(tokens) > 1 and sum(ds.column_for_header(t) is not None for t in tokens) >= 2:
            return delim
    return None


def _repeated_headers(con: duckdb.DuckDBPyConnection, ds: Dataset, names: list[str]) -> list[tuple[str, int]]:
    """``(_src, _row)`` of staged rows that are the header line again (exports concatenated
    with their headers): the first three named columns each hold a spelling of their own code."""
    aliases = ds.alias_map
    codes = [n for n in names if n in ds.codes][:3]
    if not codes:
        return []
    cond = " AND ".join(
        f'upper("{c}") IN ({", ".join(literal(a) for a, code in aliases.items() if code == c)})' for c in codes)
    return con.execute(f"SELECT _src, _row FROM {staging_table(ds)} WHERE {cond}").fetchall()


def _by_dataset(files: list[StagedFile]) -> list[tuple[Dataset, dict[str, StagedFile]]]:
    """``files`` grouped by dataset (one staging table each), keyed by ``_src``."""
    groups: dict[str, tuple[Dataset, dict[str, StagedFile]]] = {}
    for sf in files:
        groups.setdefault(sf.dataset.id, (sf.dataset, {}))[1][sf.src] = sf
    return list(groups.values())


def _is_formula(cell: str) -> str:
    """SQL: the cell holds an Excel text formula, ``="0123"``. Some report tools write values so,
    that Excel shows them as text (leading zeros, long numbers). Read as written, a record number
    ``="MZ00001"`` passes every rule and is pseudonymised as is — and then never links with the
    same visit's lab and prescription rows."""
    return f"""{cell} LIKE '="%"'"""


def _unwrap_text_formulas(con: duckdb.DuckDBPyConnection, staged: list[StagedFile]) -> None:
    """Cells written as Excel text formulas (``="…"``) hold the text inside, trimmed, empty →
    NULL; one ``text_formula`` warning per (file, column) that had any, with the count. Only
    files whose text holds ``="`` are looked at (the transcoder notes it), so this costs nothing
    for every other file."""
    for ds, files in _by_dataset([sf for sf in staged if sf.text_formulas and not sf.fatal]):
        srcs = sorted(files)
        counts = ", ".join(f"count(*) FILTER (WHERE {_is_formula(ident(c))})" for c in ds.codes)
        found = con.execute(f"SELECT _src, {counts} FROM {staging_table(ds)} WHERE list_contains(?, _src) "
                            "GROUP BY _src ORDER BY _src", [srcs]).fetchall()
        for src, *ns in found:
            for code, n in zip(ds.codes, ns):
                if n:
                    col = ds.column(code)
                    files[src].errors.append(_file_error(
                        files[src].file_name, "text_formula",
                        f"{label_zh(col)}有 {n:,} 个值写成了 Excel 文本公式（形如 =\"…\"），已按引号内的文本读取；"
                        "请导出纯文本值",
                        f"{label_en(col)}: {n:,} values are written as Excel text formulas "
                        "(like =\"…\"), read as the text inside the quotes; please export plain values",
                        column=code, severity="warning"))
        for code, total in zip(ds.codes, map(sum, zip(*(ns for _, *ns in found)))):
            if total:
                c = ident(code)
                inside = _trimmed(f"substr({c}, 3, length({c}) - 3)", full=False)
                con.execute(f"UPDATE {staging_table(ds)} SET {c} = {inside} "
                            f"WHERE list_contains(?, _src) AND {_is_formula(c)}", [srcs])


def _skip_blank_rows(con: duckdb.DuckDBPyConnection, staged: list[StagedFile]) -> None:
    """Rows without any value (every field empty, blank or a null marker) are not records: Excel
    saves the empty rows of a sheet's used range as lines of commas, and a hand-edited export
    may keep an empty line of them in the middle. Each would otherwise be one record with an
    error for every required column. They leave the staging tables (the other rows keep their
    numbers) and each file holding some gets one warning naming how many and the first."""
    for ds, files in _by_dataset([sf for sf in staged if not sf.fatal]):
        columns = sorted(ds.columns, key=lambda c: not c.required)  # a required one ends the test early
        blank = f"list_contains(?, _src) AND coalesce({', '.join(ident(c.code) for c in columns)}) IS NULL"
        found = con.execute(f"SELECT _src, count(*), min(_row) FROM {staging_table(ds)} WHERE {blank} "
                            "GROUP BY _src ORDER BY _src", [sorted(files)]).fetchall()
        if not found:
            continue
        con.execute(f"DELETE FROM {staging_table(ds)} WHERE {blank}", [sorted(files)])
        for src, n, first in found:
            sf = files[src]
            sf.blank_rows = n
            sf.errors.append(_file_error(
                sf.file_name, "blank_rows",
                f"{n:,} 行没有任何值（第 {first} 行起；如 Excel 另存时留下的只有逗号的行），已跳过，不计入记录数",
                (f"{n:,} rows hold" if n > 1 else "1 row holds") + f" no value at all (from row {first}; like "
                "the rows of commas Excel saves), skipped and not counted as records", row=first, severity="warning"))


#: Longest header line read, in characters (the csv module's default field limit). The widest
#: header of the standard is a few thousand; a longer first line is a damaged export (line ends
#: lost, a cell of data in the header) and is reported, never read whole into memory.
MAX_HEADER_CHARS = 131_072


def _read_header(utf8_path: Path) -> tuple[list[str], tuple[str, str] | None]:
    """The header's fields, or why line 1 cannot be a header: (zh, en).

    Why only the first physical line: a header never holds a line break, so an unclosed quote on
    it (a realistic broken export) must not make the csv module read on into the data — with a
    file over 128 KiB that ended in ``_csv.Error`` (field larger than field limit) and a
    traceback instead of the hospital's report."""
    with utf8_path.open(encoding="utf-8", newline="") as fh:
        line = fh.readline(MAX_HEADER_CHARS + 1)
    if len(line) > MAX_HEADER_CHARS:
        return [], (f"第 1 行（表头）超过 {MAX_HEADER_CHARS:,} 个字符，不是接口标准的表头（换行丢失或文件损坏？）",
                    f"line 1 (the header) is longer than {MAX_HEADER_CHARS:,} characters: not a header of "
                    "the standard (lost line ends, or a damaged file?)")
    with _cell_limit():
        fields = next(csv.reader([line]), [])
    if any("\n" in f or "\r" in f for f in fields):
        return [], ("第 1 行（表头）的引号没有闭合，无法读取列名",
                    "line 1 (the header) has an unclosed quotation mark; its column names cannot be read")
    return fields, None


#: Cells that mean "no value": empty, and the null markers other exporters write (``NULL`` /
#: ``null`` / ``Null`` from SQL Server and Oracle tools, ``\N`` from MySQL dumps), quoted or
#: not. Such a marker is never a real value, and pseudonymising it would merge records. DuckDB's
#: reader maps them to NULL at no cost; values are then trimmed (:func:`_trimmed`).
NULL_MARKERS = ("", "NULL", "null", "Null", "\\N")

#: What a value is trimmed of at both ends: every character Python's ``str.strip()`` removes,
#: plus the invisible zero-width space and BOM. DuckDB's plain ``TRIM`` removes spaces, U+3000
#: and the no-break space, but keeps line breaks (a value copied from a text box ends in one)
#: and :data:`UNUSUAL_BLANKS` (a TAB before an ID number, written so that Excel shows it as
#: text, would fail its check digit); ``TRIM`` with a character list costs ten times as much,
#: and even looking for those characters costs ≈ 0.1 µs per cell (+ 70 % on staging), so that
#: is done only for files that may hold them (:func:`_needs_full_trim`).
EDGE_BLANKS = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace()) + "\u200b\ufeff"
#: Those of them plain ``TRIM`` keeps (measured on DuckDB 1.5; a test holds it to that).
KEPT_BY_TRIM = "\n\r" + UNUSUAL_BLANKS
_KEPT_RE = "[" + "".join(f"\\x{{{ord(ch):x}}}" for ch in KEPT_BY_TRIM) + "]"
_BLANKS_SQL = "||".join(f"chr({ord(ch)})" for ch in EDGE_BLANKS)


def _trimmed(expr: str, full: bool) -> str:
    """``expr`` trimmed, empty → NULL: of spaces only, or (``full``) of every
    :data:`EDGE_BLANKS`, with the costly character list used only on cells that need it."""
    if not full:
        return f"NULLIF(TRIM({expr}), '')"
    return (f"NULLIF(CASE WHEN regexp_matches({expr}, '{_KEPT_RE}') THEN TRIM({expr}, {_BLANKS_SQL}) "
            f"ELSE TRIM({expr}) END, '')")


def _csv_options(names: list[str]) -> str:
    columns = "{" + ", ".join(f"{literal(n)}: 'VARCHAR'" for n in names) + "}"
    return (f"delim=',', quote='\"', escape='\"', header=true, auto_detect=false, "
            f"columns={columns}, parallel=true, nullstr=[{', '.join(map(literal, NULL_MARKERS))}]")


def _create_tables(con: duckdb.DuckDBPyConnection, datasets: list[Dataset]) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {FILES_TABLE} "
                "(_src VARCHAR, upload VARCHAR, file_name VARCHAR, _uploader_org VARCHAR)")
    for ds in datasets:
        cols = ", ".join(f'"{c}" VARCHAR' for c in ds.codes)
        con.execute(f"CREATE TABLE IF NOT EXISTS {staging_table(ds)} "
                    f"(_src VARCHAR, _row BIGINT, _uploader_org VARCHAR, {cols})")


def _insert(con: duckdb.DuckDBPyConnection, ds: Dataset, names: list[str],
            files: list[tuple[StagedFile, Path]], csv_options: str, row_expr: str, full_trim: bool) -> int:
    """Append the records of ``files`` (one ``read_csv`` with ``csv_options``) to the dataset's
    table: trimmed, empty → NULL, absent optional columns NULL; ``_src`` and the uploader's org
    picked by the reader's ``file_index``. Only a projection stands between the reader and the
    table, so the table gets the rows in DuckDB's read order, file after file (a join would not
    be guaranteed to keep it). Returns how many rows were appended."""
    present = set(names)

    def per_file(values: Iterator[str]) -> str:
        return "[" + ", ".join(map(literal, values)) + "][r.file_index::BIGINT + 1]"

    cols = [f"{per_file(sf.src for sf, _ in files)} AS _src", f"{row_expr} AS _row",
            f"{per_file(sf.uploader_org for sf, _ in files)} AS _uploader_org"]
    cols += [f'{_trimmed(f"r.{quoted}", full_trim)} AS {quoted}' if c in present else f"NULL AS {quoted}"
             for c, quoted in ((c, f'"{c}"') for c in ds.codes)]
    (appended,) = con.execute(f"INSERT INTO {staging_table(ds)} SELECT {', '.join(cols)} "
                              f"FROM read_csv(?, {csv_options}) AS r",
                              [[str(path) for _, path in files]]).fetchone()
    return appended


def _number_rows(con: duckdb.DuckDBPyConnection, ds: Dataset) -> None:
    """``_row`` of the rows :func:`_insert` just appended without one: their ``rowid`` (read
    order, each file's rows together) minus the first of their file's, plus one."""
    table = staging_table(ds)
    con.execute(f"UPDATE {table} AS t SET _row = t.rowid - o.first + 1 "
                f"FROM (SELECT _src, min(rowid) AS first FROM {table} WHERE _row IS NULL GROUP BY _src) AS o "
                f"WHERE t._src = o._src AND t._row IS NULL")


def _trim_fully(con: duckdb.DuckDBPyConnection, ds: Dataset, names: list[str], files: list[StagedFile]) -> None:
    """Trim the staged values of ``files`` of every :data:`EDGE_BLANKS` (they were trimmed of
    spaces only): trimming fully what was trimmed plainly gives what full trimming gives."""
    quoted = [f'"{c}"' for c in ds.codes if c in set(names)]
    sets = ", ".join(f"{q} = {_trimmed(q, True)}" for q in quoted)
    con.execute(f"UPDATE {staging_table(ds)} SET {sets} WHERE list_contains(?, _src)", [[sf.src for sf in files]])


def _load_group(con: duckdb.DuckDBPyConnection, ds: Dataset, names: list[str],
                members: list[tuple[StagedFile, Path]], on_rejected) -> None:
    """One strict ``read_csv`` over the files of ``members`` (same dataset and header layout);
    halves the list while DuckDB refuses it and hands a lone refused member to ``on_rejected``.

    Cells are trimmed of spaces only unless they may hold blanks plain ``TRIM`` keeps: one of
    :data:`UNUSUAL_BLANKS` was seen while transcoding (known before), or a line break inside a
    quoted value — so when the files' data lines outnumber the records DuckDB read (known
    after: those files are then trimmed again, fully; a blank line inside a file does that too,
    it only costs time)."""
    full = any(sf.unusual_blanks for sf, _ in members)
    try:
        records = _insert(con, ds, names, members, _csv_options(names), "NULL", full)
    except (duckdb.Error, UnicodeDecodeError):
        # DuckDB cuts a long error text at a fixed byte count, possibly inside a multi-byte
        # character; the binding then fails to decode its own message (UnicodeDecodeError)
        if len(members) == 1:
            on_rejected(*members[0])
            return
        half = len(members) // 2
        _load_group(con, ds, names, members[:half], on_rejected)
        _load_group(con, ds, names, members[half:], on_rejected)
        return
    _number_rows(con, ds)
    if not full and records != sum(sf.lines - 1 for sf, _ in members):
        _trim_fully(con, ds, names, [sf for sf, _ in members])


#: DuckDB's default longest line (bytes); a file with a longer one comes to the exact path.
DUCKDB_MAX_LINE = 2_000_000
#: Largest cell the exact path accepts. DuckDB refuses lines over 2 MB, so such files come here;
#: a bigger cell is reported as its row's error (the length rule would refuse it anyway), and
#: the limit keeps one unbalanced quote from pulling a whole file into memory as one value.
MAX_CELL_CHARS = 16 * 1024 * 1024


@contextmanager
def _cell_limit() -> Iterator[None]:
    """The csv module's field limit (process-wide) raised to :data:`MAX_CELL_CHARS` meanwhile."""
    previous = csv.field_size_limit(MAX_CELL_CHARS)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


class _Lines:
    """A file's physical lines for the csv module, with lines pushed back read again first."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh
        self.pending: deque[str] = deque()
        self.taken: list[str] = []   # lines the current record consumed

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.pending.popleft() if self.pending else next(self.fh)
        self.taken.append(line)
        return line


def _records(fh: TextIO, width: int) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(data row number, fields or None, problem or None)`` for every record after the header.

    A stray quotation mark (an exporter that does not quote, a value starting with ``"``) makes
    the csv module read on across line ends until the next quote, swallowing the records after
    it. When a record that spans several lines comes out malformed (wrong field count, or the
    field limit hit), only its first line is reported and the other lines are read again as
    records of their own — so one bad row costs one row, and every other row is numbered right.
    """
    lines = _Lines(fh)
    reader = csv.reader(lines, strict=False)
    next(reader, None)
    n = 0
    while True:
        lines.taken = []
        try:
            record: list[str] | None = next(reader)
            problem = None
        except StopIteration:
            return
        except csv.Error as exc:
            record, problem = None, str(exc)
        if record is not None and len(record) <= 1 and not "".join(record).strip():
            continue  # a blank line, or one of spaces only (trailing lines some editors leave)
        n += 1
        if (record is None or len(record) != width) and len(lines.taken) > 1:
            lines.pending.extendleft(reversed(lines.taken[1:]))
            record, problem = None, "unbalanced quotation mark (the quoted value does not end)"
        yield n, record, problem


def _load_numbered(con: duckdb.DuckDBPyConnection, sf: StagedFile, path: Path, names: list[str]) -> list[ErrorRecord]:
    """Slow, exact path: number every record in Python, keep the well-formed ones, report each
    malformed one by its data row number (values fully trimmed: the cost is nothing here).

    ``sf.blank_tail``: the header ended in that many nameless fields (an exporter that writes a
    comma after the last name), which ``names`` leaves out; a record may or may not have them
    (no named column can shift), and what they hold is ignored, as the header's warning says."""
    clean = path.with_suffix(".numbered.csv")
    errors: list[ErrorRecord] = []
    width = len(names)
    with _cell_limit(), path.open(encoding="utf-8", newline="") as src, \
            clean.open("w", encoding="utf-8", newline="") as dst:
        # every field quoted: with the minimal quoting a lone CR inside a value (only LF is the
        # line terminator here) went out bare and broke DuckDB's reading of the whole file
        writer = csv.writer(dst, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(["_n", *names])
        longest = 0
        for n, record, problem in _records(src, width):
            if record is not None and width < len(record) <= width + sf.blank_tail:
                del record[width:]
            if record is not None and len(record) == width:
                writer.writerow([n, *record])
                longest = max(longest, sum(map(len, record)))
            elif record is not None:
                errors.append(_file_error(
                    sf.file_name, "csv_parse",
                    f"第 {n} 行有 {len(record)} 列，表头有 {width} 列（引号或分隔符错误）",
                    f"row {n} has {len(record)} fields, the header has {width} (quoting or delimiter error)",
                    row=n))
            else:
                errors.append(_file_error(sf.file_name, "csv_parse", f"第 {n} 行无法解析：{problem}",
                                          f"row {n} cannot be parsed: {problem}", row=n))
    options = (f"{_csv_options(['_n', *names])}, "
               f"max_line_size = {max(DUCKDB_MAX_LINE, 4 * longest + 3 * width + 64)}")
    _insert(con, sf.dataset, names, [(sf, clean)], options, "CAST(r._n AS BIGINT)", True)
    clean.unlink()
    return errors


def _count_records(path: Path, width: int) -> int:
    """Records of a file that is not staged (fatal header): counted, so the report is complete."""
    with _cell_limit(), path.open(encoding="utf-8", newline="") as fh:
        return sum(1 for _ in _records(fh, width))


def _count_undecodable(raw: BinaryIO, encoding: str) -> int:
    """Records of a file with undecodable bytes, read with those bytes replaced: the report
    still says how many records the hospital sent."""
    with _cell_limit(), io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline()
        fh.seek(0)
        return sum(1 for _ in _records(fh, len(next(csv.reader([first]), []))))


def stage_uploads(con: duckdb.DuckDBPyConnection, uploads: list[tuple[str, Path, str]],
                  work: Path) -> dict[str, list[StagedFile]]:
    """Stage every CSV entry of (already safety-checked) zips — (upload key, zip path, uploader
    org) — into the dataset tables of ``con``; returns the staged files per upload key."""
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[StagedFile]] = {key: [] for key, _, _ in uploads}
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[StagedFile, Path]]] = {}
    registered: list[tuple[str, str, str, str]] = []
    for n, (key, zip_path, org_code) in enumerate(uploads):
        with zipfile.ZipFile(zip_path) as zf:
            entries = data_entries(zf.infolist())  # the entries intake accepted: no folders, no OS artefacts
            for i, info in enumerate(entries):
                file_name = redact_identifiers(entry_basename(info))  # GBK names read as Chinese
                ds = dataset_for_filename(file_name)
                if ds is None:  # intake refuses these; kept as a guard for files landed by other means
                    raise ValueError(f"{file_name}: not a file of the interface standard")
                sf = StagedFile(entry=info.filename, file_name=file_name, dataset=ds, src=f"u{n}_f{i}", upload=key,
                                uploader_org=org_code)
                out[key].append(sf)
                utf8 = work / f"{sf.src}.csv"
                try:
                    decoded = transcode(lambda: zf.open(info), utf8)
                    sf.encoding, sf.unusual_blanks, sf.lines = decoded.encoding, decoded.unusual_blanks, decoded.lines
                    sf.text_formulas = decoded.text_formulas
                except DecodeError as exc:
                    sf.fatal = True
                    if name := exc.known_encoding:
                        zh = (f"文件是 {name} 编码，但第 {exc.line} 行含有非 {name} 字节（混入了其他编码或文件已损坏？），"
                              "请统一编码后重新上传")
                        en = (f"the file is {name} but line {exc.line} holds bytes that are not {name} "
                              "(another encoding mixed in, or a damaged file?); save it in one encoding and upload again")
                    else:
                        zh = f"文件编码无法识别（第 {exc.line} 行既非 UTF-8 也非 GBK）"
                        en = f"unreadable encoding at line {exc.line} (neither UTF-8 nor GBK)"
                    sf.errors.append(_file_error(file_name, "encoding", zh, en, row=None))
                    if exc.line > 1:  # else nothing decodes (UTF-16, binary): no count is meaningful
                        sf.record_count = _count_undecodable(zf.open(info), exc.encoding)
                    continue
                header, damaged = _read_header(utf8)
                if damaged:
                    sf.fatal = True
                    sf.errors.append(_file_error(file_name, "csv_parse", f"{damaged[0]}，整个文件未能接收",
                                                 f"{damaged[1]}; the file cannot be accepted", row=1))
                    sf.record_count = max(sf.lines - 1, 0)  # lines after the header: records unknown
                    continue
                if not header:
                    sf.fatal = True
                    sf.errors.append(_file_error(file_name, "empty_file", "文件为空（没有表头）",
                                                 "the file is empty (no header row)"))
                    continue
                if delim := foreign_delimiter(header, ds):
                    zh, en = FOREIGN_DELIMITERS[delim]
                    sf.fatal = True
                    sf.errors.append(_file_error(
                        file_name, "csv_parse", f"文件以{zh}分隔，接口标准要求逗号分隔（CSV），整个文件未能接收",
                        f"the file is separated by {en}; the interface standard requires commas (CSV), "
                        "so the file cannot be accepted"))
                    sf.record_count = _count_records(utf8, 1)
                    continue
                if headerless(header, ds):
                    sf.fatal = True
                    sf.errors.append(_file_error(
                        file_name, "missing_column",
                        "第 1 行不是表头（其中的列名大多无法识别），文件须以接口标准的列名行开头，整个文件未能接收",
                        "line 1 is not a header (most of its names are not columns of the standard); the "
                        "file must start with the standard's column names, so it cannot be accepted"))
                    sf.record_count = 1 + _count_records(utf8, len(header))
                    continue
                sf.blank_tail = len(header) - len(_without_blank_tail(header))
                names, problems, fatal = map_header(header, ds, file_name)
                sf.errors.extend(problems)
                if fatal:
                    sf.fatal = True
                    sf.record_count = _count_records(utf8, len(header))
                    continue
                registered.append((sf.src, key, file_name, org_code))
                # read without the header's nameless tail: DuckDB then takes records with or without
                # those fields when they are empty (a trailing comma); others go the exact path
                groups.setdefault((ds.id, tuple(names[:len(names) - sf.blank_tail])), []).append((sf, utf8))
    staged = [sf for files in out.values() for sf in files]
    _create_tables(con, list({sf.dataset.id: sf.dataset for sf in staged}.values()))
    if registered:
        con.executemany(f"INSERT INTO {FILES_TABLE} VALUES (?, ?, ?, ?)", registered)
    for (_, names), members in groups.items():
        ds = members[0][0].dataset

        def rejected(sf: StagedFile, path: Path, names: list[str] = list(names)) -> None:
            sf.errors.extend(_load_numbered(con, sf, path, names))

        _load_group(con, ds, list(names), members, rejected)
        srcs = {sf.src: sf for sf, _ in members}
        for src, row in _repeated_headers(con, ds, list(names)):
            if src in srcs:
                srcs[src].errors.append(_file_error(
                    srcs[src].file_name, "csv_parse", f"第 {row} 行是重复的表头（文件被拼接？），不是记录",
                    f"row {row} repeats the header line (files concatenated?); it is not a record", row=row))
                con.execute(f"DELETE FROM {staging_table(ds)} WHERE _src = ? AND _row = ?", [src, row])
    _unwrap_text_formulas(con, staged)
    _skip_blank_rows(con, staged)
    _count(con, staged)
    for sf in staged:
        (work / f"{sf.src}.csv").unlink(missing_ok=True)
    return out


def _count(con: duckdb.DuckDBPyConnection, staged: list[StagedFile]) -> None:
    """Parsed rows and record counts per file, one query per dataset table."""
    counts: dict[str, tuple[int, int]] = {}
    for table in {sf.table for sf in staged if not sf.fatal}:
        counts.update({src: (n, last) for src, n, last in con.execute(
            f"SELECT _src, count(*), max(_row) FROM {table} GROUP BY _src").fetchall()})
    for sf in staged:
        if sf.fatal:
            continue
        parsed, last = counts.get(sf.src, (0, 0))
        malformed = sum(1 for e in sf.errors if e.rule == "csv_parse")
        sf.parsed_count = parsed
        sf.record_count = max(last, parsed + malformed + sf.blank_rows) - sf.blank_rows
        if sf.record_count == 0:
            sf.errors.append(_file_error(sf.file_name, "empty_file", "文件没有数据行",
                                         "the file has a header but no data rows", severity="warning"))
