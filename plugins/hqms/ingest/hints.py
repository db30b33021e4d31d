"""File-level warnings computed after validation: ``format_hint``, ``excel_hint``,
``number_hint``, ``code_hint``, ``org_hint``, ``dictionary_hint`` and ``outside_period``; and :func:`value_note`, the
note a single failing value's message gets when it holds full-width characters.

All are warnings (severity ``warning``): they never reject a row and never change conforming
counts. They say in one line per file what the row errors alone leave the data manager to guess.

``format_hint`` — a date/datetime column written systematically in a foreign layout
(``2026/11/01 09:30``, Java's ``Timestamp.toString()`` ``2026-11-01 09:30:00.0``,
``20261101093000``, ``01/11/2026``, ``2026年11月01日 09时30分``) keeps its one ``format`` error per cell, and gets ONE warning
per (file, column) naming the layout used and the layout required. Only a value's *shape* is
computed (every digit → ``9``), and only shapes made of ``9`` and the separators ``- / . : T``,
space and 年月日时分秒 are considered, so nothing a hospital wrote is ever echoed (values may be personal).
Shapes are translated into layout names (``9999/99/99 99:99`` → ``yyyy/MM/dd HH:mm``); shapes of
one layout that differ only in zero padding (``2026/1/5 9:30`` beside ``2026/11/15 19:30``) count
together as ``yyyy/M/d H:mm``; a shape no layout explains is shown as itself (``9999-99``). A
shape that *is* one of the column's accepted layouts is not a layout problem (``2026-13-01``,
``2026-02-30``: impossible dates) and never makes a hint. The hint fires when the top failing
layout covers at least :data:`MIN_HINT_VALUES` values and at least half of the column's
non-empty values in that file, so a few scattered bad dates never produce one.

``excel_hint`` — the marks a file bears after it was opened in Excel and saved again, the
commonest way a hospital's correct export gets damaged before upload: long numbers (ID, card,
phone numbers) shown in scientific notation (``5.10105E+17``: every digit after the sixth is
lost for good), and codes that lost their leading zero (``01`` → ``1``). The row errors alone
do not say so — a personal value is masked in the report (``5*********7``) and the code error
says only "not in the code table" — and an identifier in scientific notation may pass every
rule (a document type other than 01 has no check digit). One warning per (file, column), when
at least :data:`MIN_HINT_VALUES` values bear the mark: scientific notation over every value of
the file's text columns; a lost zero over the values that failed ``code_table`` and are a valid
code once zero-padded. Neither echoes a value.

``number_hint`` — a number column dressed up by the export (:data:`NUMBER_MARKS`): integers as
decimals with a zero fraction (``35.0``: a Java ``Double``, an Oracle ``NUMBER`` read as floating
point), thousands separators (``1,234.50``: Excel's accounting format), a currency sign or unit
(``¥12.50``, ``35岁``): one warning per (file, column) when at least :data:`MIN_HINT_VALUES` of its
``type`` failures bear one mark.

``code_hint`` — a coded column written as the codes' names (``男`` for ``1``, what the hospital
system shows) or as code and name together (``1-男``, ``男(1)``): one warning per (file,
column) when at least :data:`MIN_HINT_VALUES` of its ``code_table`` failures (``length`` ones
for values longer than the codes) are such values; the example it gives comes from the code
table.

``org_hint`` — the 医疗机构代码 column holding the uploader's own 统一社会信用代码 or
9-character 组织机构代码: one warning per file naming the 22-character code wanted.

``dictionary_hint`` — well-shaped ICD-10 / ICD-9-CM-3 codes absent from the national dictionary
(:func:`dictionary_hints`): one warning per (file, column) with their count, the commonest few
and the nearest dictionary codes; the rows stay conforming.

``outside_period`` — the reporting period comes from the file name, by the same regexes as
the dbt macro ``file_name_date`` (:mod:`hqms.spec.filenames`; ``flu_20250106.csv`` / ``flu_20250106_2.csv`` → day
2025-01-06, also after a copy's mark such as ``(1)`` or `` - 副本``; ``mzsy_202501.csv`` → month
2025-01, i.e. its first day; no date in the name → no check). Over the rows that passed
validation, the typed ``event_column`` of the dataset is compared with it: daily streams count rows dated AFTER the file's day (an extract cannot hold
visits after its own day; older days are the normal 7-day re-send), monthly streams
(:data:`hqms.spec.MONTHLY_STREAMS`) count rows of another month. One warning per file when the count is
positive, naming count, column and period, never a value.

Cost, per dataset table and round: ``format_hint`` aggregates the cells that failed ``format``
(the failures table joined to the staged rows) by shape, then, only when a candidate layout
exists, counts the candidate columns' non-empty values (and, for ``99/99/9999``, takes two
maxima that tell day from month); ``outside_period`` is one aggregate over the staged rows.
``excel_hint`` is one aggregate over the staged rows (a cheap ``contains`` before each regular
expression) and, like ``number_hint``, one over its rule's failures. Python sees distinct shapes
and per-file counts, never rows. Measured on a 300 k-row staged
``flu_`` file (shared 2-core machine; hint + period): clean 0.005 s + 0.07–0.18 s; every
``P7506`` in a foreign layout 0.24–0.27 s + 0.03 s; every ``P6`` as ``dd/MM/yyyy`` 0.42–0.54 s
+ 0.07–0.10 s. Validating that table takes 14–20 s. ``dictionary_hint`` on it (its 11 ICD-10
columns, a third of ``P321`` unknown): 1.1–1.2 s, plus 1–2 s once per process to read the
dictionary (DuckDB's ``read_csv`` for the anti join; Python's copy for the nearest codes).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from hqms import codes
from hqms.ingest.stage import FILES_TABLE
from hqms.registry import ErrorRecord
from hqms.rules import ident, label_en, label_zh, typed_expr, value_present_sql
from hqms.sqltext import literal
from hqms.spec import MONTHLY_STREAMS, Column, Dataset, allowed_values, filenames
from hqms.sqlmacros import canonical_sql

#: A format hint needs at least this many values of the top failing layout …
MIN_HINT_VALUES = 5
#: … and that layout must cover at least this share of the column's non-empty values in the file.
MIN_HINT_SHARE = 0.5
#: Shapes that may be shown and translated: digits (as 9) and date separators only (the
#: Chinese ones too: 2026年11月1日 9时30分).
QUALIFYING_SHAPE = r"[-/.:T 9年月日时分秒]*9[-/.:T 9年月日时分秒]*"
#: Distinct failing shapes read per (file, column), most frequent first (bounds a junk column).
MAX_SHAPES = 50



def _captured_date(expr: str, capture: str, month: bool = False) -> str:
    """The date group 1 of ``capture`` holds, separators dropped (a month: its first day)."""
    digits = (f"regexp_replace(regexp_extract({expr}, {literal(capture)}, 1), "
              f"{literal(filenames.DATE_SEPARATORS)}, '', 'g')")
    if month:
        digits += " || '01'"
    return f"CAST(try_strptime({digits}, '%Y%m%d') AS DATE)"


def file_name_date_sql(expr: str) -> str:
    """DuckDB SQL of the dbt macro ``file_name_date``: the DATE a file name gives, else NULL
    (the patterns: :mod:`hqms.spec.filenames`)."""
    day, month = filenames.DAY, filenames.MONTH
    return (f"CASE WHEN regexp_matches({expr}, {literal(day)}) THEN {_captured_date(expr, day)} "
            f"WHEN regexp_matches({expr}, {literal(month)}) "
            f"THEN {_captured_date(expr, month, month=True)} END")


def _warning(file_name: str, column: str, rule: str, check_id: str, zh: str, en: str) -> ErrorRecord:
    return ErrorRecord(file_name=file_name, row=None, column=column, rule=rule, message_zh=zh,
                       message_en=en, severity="warning", check_id=check_id)


# ---------------------------------------------------------------- layouts

@dataclass
class Layout:
    """A family of shapes that differ only in zero padding (and fraction length)."""

    key: tuple
    count: int = 0
    shapes: list[str] = field(default_factory=list)
    #: per variable field (M, d, H …): True while every member wrote it with two digits
    padded: dict[str, bool] = field(default_factory=dict)
    fraction: int = 0                 # longest fraction of seconds seen
    #: largest first and second number of the values (:func:`_day_month_order` fills them in for
    #: ``dd/MM/yyyy`` vs ``MM/dd/yyyy``: a number over 12 is the day)
    first_max: int = 0
    second_max: int = 0

    @property
    def ambiguous(self) -> bool:
        """Day and month first in an order only the values can tell."""
        return self.key[0] == "xxy"

    def add(self, shape: str, count: int, widths: dict[str, int], fraction: int) -> None:
        self.shapes.append(shape)
        self.count += count
        for name, width in widths.items():
            self.padded[name] = self.padded.get(name, True) and width == 2
        self.fraction = max(self.fraction, fraction)

    def names(self) -> tuple[str, str]:
        """(zh, en) name of the layout, in the Java pattern letters the spec uses."""
        kind = self.key[0]
        if kind == "shape":
            return f"{self.key[1]}（9 代表一位数字）", f"{self.key[1]} (9 = any digit)"
        if kind == "digits":
            return self.key[1], self.key[1]

        def field_(name: str, letter: str) -> str:
            return letter * 2 if self.padded.get(name, True) else letter

        date_sep, time_sep, time_fields = self.key[1], self.key[2], self.key[3]
        if kind == "ymd":
            dates = [f"yyyy{date_sep}{field_('M', 'M')}{date_sep}{field_('d', 'd')}"]
        elif kind == "ymd_zh":
            dates = [f"yyyy年{field_('M', 'M')}月{field_('d', 'd')}日"]
        elif kind == "ymd8":
            dates = ["yyyyMMdd"]
        else:  # day and month first in some order, year last
            dm = f"{field_('a', 'd')}{date_sep}{field_('b', 'M')}{date_sep}yyyy"
            md = f"{field_('a', 'M')}{date_sep}{field_('b', 'd')}{date_sep}yyyy"
            if self.first_max > 12:
                dates = [dm]
            elif self.second_max > 12:
                dates = [md]
            else:
                dates = [dm, md]
        time = ""
        if time_fields and kind == "ymd_zh" and self.key[5]:  # 时分秒
            time = field_('H', 'H') + "时mm分" + ("ss秒" if time_fields == 3 else "")
        elif time_fields:
            time = field_('H', 'H') + ":mm" + (":ss" if time_fields == 3 else "")
            if self.fraction:
                time += "." + "S" * self.fraction
        if time:  # the separator as written: " ", "T" (quoted, a pattern letter) or none (年月日)
            time = ("'T'" if time_sep == "T" else time_sep) + time
        full = [d + time for d in dates]
        return " 或 ".join(full), " or ".join(full)


_DIGITS = {8: "yyyyMMdd", 12: "yyyyMMddHHmm", 14: "yyyyMMddHHmmss", 17: "yyyyMMddHHmmssSSS"}
_SPLIT = re.compile(r"([^ T]+)(?:([ T])(.+))?")           # date part, then " " or "T" and a time
_YMD = re.compile(r"9999([-/.])(99?)\1(99?)")               # yyyy-M-d, any padding
_XXY = re.compile(r"(99?)([-/.])(99?)\2(9999)")             # d/M/yyyy or M/d/yyyy
_TIME = re.compile(r"(99?):99(?::99(?:\.(9+))?)?")          # H:mm, H:mm:ss, H:mm:ss.S…
_YMD_ZH = re.compile(r"9999年(99?)月(99?)日( ?)(.*)")        # yyyy年M月d日, then a time, spaced or not
_TIME_ZH = re.compile(r"(99?)时99分(99秒)?")                  # H时mm分, H时mm分ss秒


def parse_shape(shape: str) -> tuple[tuple, dict[str, int], int]:
    """(layout key, widths of the variable fields, fraction length) of a qualifying shape; the
    key is ``("shape", shape)`` when no layout explains it."""
    unknown: tuple[tuple, dict[str, int], int] = (("shape", shape), {}, 0)
    if set(shape) == {"9"}:
        name = _DIGITS.get(len(shape))
        return (("digits", name), {}, 0) if name else unknown
    if zh := _YMD_ZH.fullmatch(shape):
        return _parse_zh(*zh.groups()) or unknown
    split = _SPLIT.fullmatch(shape)
    if not split:
        return unknown
    date, time_sep, time = split.groups()
    widths: dict[str, int] = {}
    if m := _YMD.fullmatch(date):
        kind, date_sep, widths = "ymd", m[1], {"M": len(m[2]), "d": len(m[3])}
    elif m := _XXY.fullmatch(date):
        kind, date_sep, widths = "xxy", m[2], {"a": len(m[1]), "b": len(m[3])}
    elif date == "99999999":
        kind, date_sep = "ymd8", ""
    else:
        return unknown
    time_fields = fraction = 0
    if time is not None:
        if not (t := _TIME.fullmatch(time)):
            return unknown
        time_fields, fraction = time.count(":") + 1, len(t[2] or "")
        widths["H"] = len(t[1])
    return (kind, date_sep, time_sep or "", time_fields, bool(fraction)), widths, fraction


def _parse_zh(month: str, day: str, space: str, time: str) -> tuple[tuple, dict[str, int], int] | None:
    """A date with 年月日 and an optional time with 时分秒 or colons, as Chinese exporters write
    them; None when the time part is something else. The key adds whether the time is in 时分秒."""
    widths = {"M": len(month), "d": len(day)}
    if not time:
        return ("ymd_zh", "", "", 0, False, False), widths, 0
    if t := _TIME_ZH.fullmatch(time):
        return ("ymd_zh", "", space, 3 if t[2] else 2, False, True), widths | {"H": len(t[1])}, 0
    if t := _TIME.fullmatch(time):
        fraction = len(t[2] or "")
        return (("ymd_zh", "", space, time.count(":") + 1, bool(fraction), False),
                widths | {"H": len(t[1])}, fraction)
    return None


def accepted_shapes(col: Column) -> set[str]:
    """Shapes of the column's own formats: a failing value of such a shape is an impossible date
    written in the right layout, not a layout problem."""
    return {re.sub(r"[A-Za-z]", "9", fmt) for fmt in col.formats}


def top_layout(col: Column, groups: Iterable[tuple[str, int]]) -> Layout | None:
    """The most frequent layout among the (shape, count) groups of a column's failing values."""
    accepted = accepted_shapes(col)
    layouts: dict[tuple, Layout] = {}
    for shape, count in groups:
        if shape in accepted:
            continue
        key, widths, fraction = parse_shape(shape)
        layouts.setdefault(key, Layout(key=key)).add(shape, count, widths, fraction)
    return max(layouts.values(), key=lambda lay: (lay.count, lay.key), default=None)


# ---------------------------------------------------------------- format_hint

def _date_columns(ds: Dataset) -> list[Column]:
    return [c for c in ds.columns if c.type in ("date", "datetime")]


def _failed_values(ds: Dataset, table: str, failures: str) -> str:
    """SQL relation ``(_src, "column", v)``: the value of every cell that failed ``format``."""
    value = "CASE f.\"column\" " + " ".join(
        f"WHEN {literal(c.code)} THEN s.{ident(c.code)}" for c in _date_columns(ds)) + " END"
    return (f"(SELECT f._src, f.\"column\", {value} AS v FROM {failures} AS f "
            f"JOIN {table} AS s USING (_src, _row) WHERE f.rule = 'format')")


def _shape_sql(expr: str) -> str:
    """Every digit of ``expr`` → ``9`` (translate: several times faster than a regex)."""
    return f"translate({expr}, '0123456789', '9999999999')"


def format_hints(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failures: str,
                 file_names: dict[str, str]) -> list[tuple[str, ErrorRecord]]:
    """``(_src, warning)`` for every (file, column) of ``ds`` written in a foreign date layout.

    ``failures`` is the validated table's failures table (``_src, _row, column, rule``);
    ``file_names`` maps ``_src`` to the file's name. One aggregate over the failing cells (their
    shapes); a small one for the non-empty counts of the candidate columns; a third only when a
    candidate layout leaves day and month order open (``99/99/9999``).
    """
    cols = {c.code: c for c in _date_columns(ds)}
    if not cols:
        return []
    failed = _failed_values(ds, table, failures)
    # The shape test sits in QUALIFY, not HAVING: DuckDB pushes a HAVING on a group key down
    # to the rows, which computed every failing cell's shape twice (3x slower on 300 k cells).
    qualifies = f"regexp_full_match(shape, {literal(QUALIFYING_SHAPE)})"
    groups = con.execute(f"""
        SELECT _src, "column", shape, count(*) AS n
        FROM (SELECT _src, "column", {_shape_sql('v')} AS shape FROM {failed})
        GROUP BY _src, "column", shape
        QUALIFY {qualifies} AND row_number() OVER (
            PARTITION BY _src, "column" ORDER BY {qualifies} DESC, n DESC, shape) <= {MAX_SHAPES}
        """).fetchall()
    by_cell: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for src, code, shape, n in groups:
        by_cell.setdefault((src, code), []).append((shape, n))
    candidates = {cell: layout for cell, members in by_cell.items()
                  if (layout := top_layout(cols[cell[1]], members)) and layout.count >= MIN_HINT_VALUES}
    if not candidates:
        return []
    codes = sorted({code for _, code in candidates})
    srcs = sorted({src for src, _ in candidates})
    counts = ", ".join(f"count(*) FILTER (WHERE {value_present_sql(cols[c])})" for c in codes)
    present = {row[0]: dict(zip(codes, row[1:])) for row in con.execute(
        f"SELECT _src, {counts} FROM {table} WHERE list_contains(?, _src) GROUP BY _src", [srcs]).fetchall()}
    hinted = {cell: layout for cell, layout in candidates.items()
              if layout.count >= MIN_HINT_SHARE * present[cell[0]][cell[1]]}
    _day_month_order(con, failed, {cell: lay for cell, lay in hinted.items() if lay.ambiguous})
    out = []
    for (src, code), layout in sorted(hinted.items()):
        col = cols[code]
        used_zh, used_en = layout.names()
        out.append((src, _warning(
            file_names[src], code, "format_hint", f"{ds.id}.{code}.format_hint",
            f"{label_zh(col)}有 {layout.count:,} 个值写成 {used_zh} 的形式，接口标准要求 "
            f"{' 或 '.join(col.formats)}；请修改导出程序的日期格式",
            f"{label_en(col)}: {layout.count:,} values are written as {used_en}; the interface "
            f"standard requires {' or '.join(col.formats)}; please change the date format of the export program")))
    return out


def _day_month_order(con: duckdb.DuckDBPyConnection, failed: str,
                     layouts: dict[tuple[str, str], Layout]) -> None:
    """Largest first and second number of the values of ``dd/MM/yyyy``-or-``MM/dd/yyyy``
    layouts (a number over 12 is the day); aggregates only, no value leaves DuckDB."""
    if not layouts:
        return
    keys = [f"{src}|{code}|{shape}" for (src, code), lay in layouts.items() for shape in lay.shapes]
    for src, code, first, second in con.execute(f"""
            SELECT _src, "column",
                   max(TRY_CAST(regexp_extract(v, '^([0-9]+)', 1) AS INTEGER)),
                   max(TRY_CAST(regexp_extract(v, '^[0-9]+[^0-9]([0-9]+)', 1) AS INTEGER))
            FROM {failed}
            WHERE list_contains(?, _src || '|' || "column" || '|' || {_shape_sql('v')})
            GROUP BY ALL""", [keys]).fetchall():
        layouts[(src, code)].first_max, layouts[(src, code)].second_max = first or 0, second or 0


# ---------------------------------------------------------------- excel_hint

#: How Excel shows a number of more than 11 digits in a General cell, and saves it so.
SCIENTIFIC = r"[0-9](\.[0-9]+)?E\+[0-9]+"


def _zero_stripped_codes(col: Column) -> list[str]:
    """The column's codes that start with a zero, as Excel leaves them (``01`` → ``1``)."""
    codes = allowed_values(col) or {}
    return sorted({c.lstrip("0") for c in codes if c.startswith("0") and c.lstrip("0").isdigit()})


def _marked_failures(con: duckdb.DuckDBPyConnection, table: str, failures: str, rule: str,
                     marks: dict[str, str], file_names: dict[str, str],
                     least: int = MIN_HINT_VALUES) -> dict[tuple[str, str], int]:
    """``{(_src, column): n}`` of the cells that failed ``rule`` and whose value bears the
    column's mark (``marks``: column code → SQL predicate over ``s.<column>`` and the staged
    row's other columns), where at least ``least`` do. One aggregate over the rule's failures,
    nothing when no marks."""
    if not marks:
        return {}
    case = " ".join(f"WHEN {literal(code)} THEN {pred}" for code, pred in marks.items())
    return {(src, code): n for src, code, n in con.execute(f"""
        SELECT f._src, f."column", count(*) FROM {failures} AS f JOIN {table} AS s USING (_src, _row)
        WHERE f.rule = {literal(rule)} AND list_contains(?, f._src) AND CASE f."column" {case} ELSE FALSE END
        GROUP BY ALL HAVING count(*) >= {int(least)}""", [sorted(file_names)]).fetchall()}


def excel_hints(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failures: str,
                file_names: dict[str, str]) -> list[tuple[str, ErrorRecord]]:
    """``(_src, warning)`` for every (file, column) of ``ds`` that bears Excel's marks (see the
    module docstring): scientific notation, lost leading zeros."""
    found: dict[tuple[str, str], tuple[str, int]] = {}
    texts = [c for c in ds.columns if c.type == "string"]
    if texts:
        counts = ", ".join(f"count(*) FILTER (WHERE contains({ident(c.code)}, 'E+') AND "
                           f"regexp_full_match({ident(c.code)}, {literal(SCIENTIFIC)}))" for c in texts)
        for src, *ns in con.execute(f"SELECT _src, {counts} FROM {table} WHERE list_contains(?, _src) "
                                    "GROUP BY _src", [sorted(file_names)]).fetchall():
            found.update({(src, c.code): ("scientific", n) for c, n in zip(texts, ns) if n >= MIN_HINT_VALUES})
    lost_zero = {c.code: f"list_contains([{', '.join(map(literal, codes))}], s.{ident(c.code)})"
                 for c in ds.columns if (codes := _zero_stripped_codes(c))}
    for cell, n in _marked_failures(con, table, failures, "code_table", lost_zero, file_names).items():
        found.setdefault(cell, ("zero", n))
    out = []
    for (src, code), (mark, n) in sorted(found.items()):
        col = ds.column(code)
        if mark == "scientific":
            zh = (f"{label_zh(col)}有 {n:,} 个值是科学计数法（形如 5.1E+17）：文件像是用 Excel 打开后又保存过，"
                  "长数字的后几位已经丢失、无法恢复；请从医院系统重新导出后直接上传，不要用 Excel 打开保存")
            en = (f"{label_en(col)}: {n:,} values are in scientific notation (like 5.1E+17): the file looks "
                  "opened and saved again in Excel, which loses the last digits of long numbers for good; "
                  "export it again from the hospital system and upload it without saving it in Excel")
        else:
            zh = (f"{label_zh(col)}有 {n:,} 个值丢失了前导零（如代码 01 写成 1）：文件像是用 Excel 打开后又保存过，"
                  "或导出程序把代码当作数字；请按代码表原样导出（代码是文本，不是数字）")
            en = (f"{label_en(col)}: {n:,} values lost their leading zero (code 01 written as 1): the file "
                  "looks opened and saved again in Excel, or the export program treats codes as numbers; "
                  "export the codes exactly as the code table writes them (codes are text, not numbers)")
        out.append((src, _warning(file_names[src], code, "excel_hint", f"{ds.id}.{code}.excel_hint", zh, en)))
    return out


# ---------------------------------------------------------------- number_hint

@dataclass(frozen=True)
class NumberMark:
    """One way exporters dress a number up, as it is found and as the warning names it."""

    pattern: str          # full match over a value that failed ``type``
    types: tuple[str, ...]  # spec types of the columns it is looked for in
    zh: str
    en: str


#: In the order they are preferred when one column bears several.
NUMBER_MARKS = (
    # an integer written as a decimal with a zero fraction (a Java ``Double``, an Oracle
    # ``NUMBER`` read as floating point): ``35.0``, ``2.00``
    NumberMark(r"[+-]?[0-9]+\.0+", ("integer",),
               "写成了带小数的形式（形如 35.0），接口标准要求整数；请修改导出程序的数值格式（整数不带小数点）",
               "are written with a decimal fraction (like 35.0); the interface standard requires integers; "
               "please change the number format of the export program"),
    # Excel's thousands or accounting format: ``1,234.50``
    NumberMark(r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?", ("integer", "decimal"),
               "带千位分隔符（形如 1,234.50），接口标准要求不带分隔符的数字；请修改导出程序的数值格式"
               "（或不要用 Excel 的千位/会计格式保存）",
               "are written with thousands separators (like 1,234.50); the interface standard requires "
               "plain digits; please change the number format of the export (or do not save it with "
               "Excel's thousands or accounting format)"),
    # a currency sign or a unit: ``¥12.50``, ``12.50元``, ``35岁``, ``3 days``
    NumberMark(r"[¥￥$]\s*[+-]?[0-9]+(\.[0-9]+)?\s*\p{Han}{0,2}"
               r"|[+-]?[0-9]+(\.[0-9]+)?\s*(\p{Han}{1,2}|[A-Za-z]{1,4})", ("integer", "decimal"),
               "带货币符号或单位（形如 ¥12.50、35岁），接口标准要求只写数字；请修改导出程序",
               "are written with a currency sign or a unit (like ¥12.50, 35岁); the interface standard "
               "requires the number alone; please change the export program"),
)


def number_hints(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failures: str,
                 file_names: dict[str, str]) -> list[tuple[str, ErrorRecord]]:
    """``(_src, warning)`` for every (file, column) whose ``type`` failures bear one of the
    :data:`NUMBER_MARKS` (``35.0`` in an integer column, ``1,234.50``, ``¥12.50`` / ``35岁``), at
    least :data:`MIN_HINT_VALUES` of them — the mark with the most values when several: the rows
    keep their ``type`` errors, and the warning names the export's number format as the cause."""
    found: dict[tuple[str, str], tuple[int, int]] = {}  # cell → (count, mark index)
    for i, mark in enumerate(NUMBER_MARKS):
        marks = {c.code: f"regexp_full_match(s.{ident(c.code)}, {literal(mark.pattern)})"
                 for c in ds.columns if c.type in mark.types}
        for cell, n in _marked_failures(con, table, failures, "type", marks, file_names).items():
            if n > found.get(cell, (0, 0))[0]:
                found[cell] = (n, i)
    out = []
    for (src, code), (n, i) in sorted(found.items()):
        col, mark = ds.column(code), NUMBER_MARKS[i]
        out.append((src, _warning(
            file_names[src], code, "number_hint", f"{ds.id}.{code}.number_hint",
            f"{label_zh(col)}有 {n:,} 个值{mark.zh}", f"{label_en(col)}: {n:,} values {mark.en}")))
    return out


# ---------------------------------------------------------------- code_hint

#: A code (dotted ones too: ``1.1``) written before its name, with or without a separator:
#: ``1-男``, ``1 男``, ``1:男``, ``1.男``, ``1男``.
CODE_THEN_NAME = (r"^([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)\s*[-:：|.、_/]?\s*(.+)$", r"\1|\2")
#: A name followed by its code in brackets: ``男(1)``, ``男（1）``.
NAME_THEN_CODE = (r"^(.+?)\s*[(（]\s*([0-9A-Za-z]+)\s*[)）]$", r"\2|\1")


def _code_name_mark(col: Column) -> str | None:
    """SQL predicate: the staged value is the name of one of the column's codes, or a code and
    its own name together (see :data:`CODE_THEN_NAME`, :data:`NAME_THEN_CODE`)."""
    codes = allowed_values(col)
    if not codes or not any(codes.values()):
        return None
    value = f"s.{ident(col.code)}"
    names = ", ".join(literal(name) for name in sorted(set(codes.values())) if name)
    pairs = ", ".join(literal(f"{code}|{name}") for code, name in sorted(codes.items()) if name)
    joined = " OR ".join(f"list_contains([{pairs}], regexp_replace({value}, {literal(pattern)}, {literal(to)}))"
                         for pattern, to in (CODE_THEN_NAME, NAME_THEN_CODE))
    return f"(list_contains([{names}], {value}) OR {joined})"


def code_hints(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failures: str,
               file_names: dict[str, str]) -> list[tuple[str, ErrorRecord]]:
    """``(_src, warning)`` for every (file, column) whose ``code_table`` (or, for a value longer
    than the codes, ``length``) failures are, at least :data:`MIN_HINT_VALUES` of them, the codes'
    names (``男`` for ``1``) or code and name together (``1-男``): the export writes what the
    hospital system shows, not the code. The example in the message comes from the code table,
    never from the file."""
    marks = {c.code: mark for c in ds.columns if (mark := _code_name_mark(c))}
    found: dict[tuple[str, str], int] = {}
    for rule in ("code_table", "length"):  # a name longer than the codes fails length first
        for cell, n in _marked_failures(con, table, failures, rule, marks, file_names, least=1).items():
            found[cell] = found.get(cell, 0) + n
    out = []
    for (src, code), n in sorted(found.items()):
        if n < MIN_HINT_VALUES:
            continue
        col = ds.column(code)
        example_code, example = min(((c, name) for c, name in allowed_values(col).items() if name),
                                    key=lambda item: (len(item[1]), item[0]))
        table_zh = f"代码表 {col.code_table} " if col.code_table else "本列"
        table_en = f"code table {col.code_table}" if col.code_table else "the column's code list"
        out.append((src, _warning(
            file_names[src], code, "code_hint", f"{ds.id}.{code}.code_hint",
            f"{label_zh(col)}有 {n:,} 个值写的是代码的名称（如“{example}”）而不是代码（{example_code}），"
            f"或把代码和名称写在了一起（如“{example_code}-{example}”）；接口标准要求只写{table_zh}中的代码，"
            "请修改导出程序",
            f"{label_en(col)}: {n:,} values are written as the codes' names (like '{example}') instead of the "
            f"codes ('{example_code}'), or as code and name together (like '{example_code}-{example}'); the "
            f"interface standard requires the code alone, from {table_en}; please change the export program")))
    return out


# ---------------------------------------------------------------- org_hint

def org_hints(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failures: str,
              file_names: dict[str, str]) -> list[tuple[str, ErrorRecord]]:
    """``(_src, warning)`` for every file whose 医疗机构代码 column holds the uploading
    hospital's own 统一社会信用代码 or 9-character 组织机构代码 instead of its 22-character
    医疗机构代码 (older documents call the column 组织机构代码). Both are recognised from the
    uploader's code itself: its first 9 characters are the organisation code, which a USCC
    carries at characters 9–17. Every such row fails ``check``; the warning names the code the
    standard wants (the hospital's own, not personal)."""
    col = ds.column(ds.org_column) if ds.org_column else None
    if col is None or col.check != "medical_org_code":
        return []
    c, org9 = canonical_sql(f"s.{ident(col.code)}"), "left(s._uploader_org, 9)"
    marks = {col.code: f"({c} = {org9} OR (length({c}) = 18 AND substr({c}, 9, 9) = {org9}))"}
    found = _marked_failures(con, table, failures, "check", marks, file_names, least=1)
    if not found:
        return []
    uploader = dict(con.execute(f"SELECT _src, _uploader_org FROM {FILES_TABLE} WHERE list_contains(?, _src)",
                                [sorted(src for src, _ in found)]).fetchall())
    return [(src, _warning(
        file_names[src], code, "org_hint", f"{ds.id}.{code}.org_hint",
        f"{label_zh(col)}有 {n:,} 个值是本机构的统一社会信用代码或组织机构代码，接口标准要求 22 位医疗机构代码"
        f"（本机构为 {uploader[src]}）；请修改导出程序",
        f"{label_en(col)}: {n:,} values are this institution's unified social credit code or organisation "
        f"code; the interface standard requires the 22-character medical institution code (yours: "
        f"{uploader[src]}); please change the export program"))
        for (src, code), n in sorted(found.items())]


# ---------------------------------------------------------------- dictionary_hint

#: Unknown codes shown per (file, column), most frequent first, each with its nearest codes.
DICTIONARY_EXAMPLES = 3


def dictionary_hints(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failures: str,
                     file_names: dict[str, str]) -> list[tuple[str, ErrorRecord]]:
    """``(_src, warning)`` for every (file, column) of an ICD-10 / ICD-9-CM-3 column holding
    well-shaped codes that are not in the national dictionary (:mod:`hqms.codes`), compared
    upper-cased: one warning with their count, the most frequent few and, for each, the nearest
    dictionary codes of its category. The rows stay conforming — a 国家临床版 or local code is a
    real diagnosis; the warning is the hospital's help to map its codes to the national edition.
    Cells that failed any rule of their column are left to their row error, so every code shown
    has the shape of a classification code and can hold nothing personal. One aggregate per
    dataset over the staged rows (an anti join on the dictionary); Python sees a few codes only."""
    cols = [c for c in ds.columns if c.check in codes.DICTIONARIES]
    if not cols:
        return []
    parts = []
    for col in cols:
        c = ident(col.code)
        parts.append(f"""
        SELECT s._src, {literal(col.code)} AS "column", upper(s.{c}) AS v, count(*) AS n
        FROM {table} AS s
        ANTI JOIN (SELECT _src, _row FROM {failures} WHERE "column" = {literal(col.code)}) AS f USING (_src, _row)
        ANTI JOIN {codes.install_dictionary(con, col.check or '')} AS d ON d.code = upper(s.{c})
        WHERE list_contains(?, s._src) AND {value_present_sql(col)}
        GROUP BY ALL""")
    found = con.execute(f"""
        SELECT _src, "column", sum(n)::BIGINT, list(v ORDER BY n DESC, v)[1:{DICTIONARY_EXAMPLES}]
        FROM ({" UNION ALL ".join(parts)}) GROUP BY ALL ORDER BY 1, 2""",
                        [sorted(file_names)] * len(parts)).fetchall()
    out = []
    for src, code, n, examples in found:
        col = ds.column(code)
        _, edition = codes.DICTIONARIES[col.check or ""]
        near = {ex: codes.nearest(col.check or "", ex) for ex in examples}
        shown_zh = "；".join(f"{ex}（相近：{'、'.join(f'{c} {name}' for c, name in near[ex]) or '无同类目编码'}）"
                            for ex in examples)
        shown_en = "; ".join(f"{ex} (nearest: {', '.join(c for c, _ in near[ex]) or 'none of its category'})"
                             for ex in examples)
        category = examples[0].split(".", 1)[0]
        command = f"hqms codes {col.check} {category}"
        out.append((src, _warning(
            file_names[src], code, "dictionary_hint", f"{ds.id}.{code}.dictionary_hint",
            f"{label_zh(col)}有 {n:,} 个编码不在 {edition} 字典中（这些行仍按合格数据接收），如 {shown_zh}。"
            f"请将本院编码映射到国家版编码（可用 {command} 查询字典）",
            f"{label_en(col)}: {n:,} codes are not in the {edition} dictionary (the rows are still "
            f"accepted), e.g. {shown_en}. Please map the local codes to the national edition "
            f"(`{command}` lists the dictionary)")))
    return out


# ---------------------------------------------------------------- notes on one failing value

#: Full-width forms of ASCII (U+FF01–U+FF5E: １, Ｘ, －, ：) and the ideographic space: typed in a
#: Chinese input method's full-width mode they look like the standard's characters, so neither
#: the masked value of an ID number (``１****Ｘ``) nor a shown code (``０１``) tells the data
#: manager why the row failed.
FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")


def value_note(value: str | None) -> tuple[str, str]:
    """(zh, en) appended to a failing cell's message when its value holds full-width characters,
    else empty strings. Names the characters' kind, never the value."""
    if value is None or not FULL_WIDTH.search(value):
        return "", ""
    return ("（该值含全角字符，如 １、Ｘ、－，请改用半角字符）",
            " (the value holds full-width characters such as １, Ｘ or －; write them half-width)")


# ---------------------------------------------------------------- outside_period

def is_monthly(ds: Dataset) -> bool:
    return ds.stream in MONTHLY_STREAMS


def outside_period(con: duckdb.DuckDBPyConnection, ds: Dataset, table: str, failing: str,
                   file_names: dict[str, str]) -> list[tuple[str, ErrorRecord]]:
    """``(_src, warning)`` for every file of ``ds`` holding conforming rows outside the period
    its name gives. ``failing`` lists the ``(_src, _row)`` that did not pass validation."""
    if not ds.event_column:
        return []
    col = ds.column(ds.event_column)
    event = f"CAST({typed_expr(col)} AS DATE)"
    monthly = is_monthly(ds)
    outside = (f"date_trunc('month', {event}) <> date_trunc('month', p.period)" if monthly
               else f"{event} > p.period")
    label = "strftime(p.period, '%Y-%m')" if monthly else "strftime(p.period, '%Y-%m-%d')"
    rows = con.execute(f"""
        WITH p AS (
            SELECT _src, {file_name_date_sql('file_name')} AS period FROM {FILES_TABLE}
            WHERE list_contains(?, _src))
        SELECT s._src, {label}, count(*)
        FROM {table} AS s JOIN p USING (_src)
        ANTI JOIN {failing} AS x USING (_src, _row)
        WHERE p.period IS NOT NULL AND {outside}
        GROUP BY ALL ORDER BY 1""", [sorted(file_names)]).fetchall()
    out = []
    for src, period, n in rows:
        if monthly:
            zh = f"{n:,} 条记录的 {label_zh(col)}不在文件名所示的报告期 {period} 内"
            en = f"{n:,} records have {label_en(col)} outside the period {period} the file name gives"
        else:
            zh = (f"{n:,} 条记录的 {label_zh(col)}晚于文件名所示的报告日 {period}"
                  "（一天的导出不应包含该日之后的记录，请检查导出程序的日期范围或文件名）")
            en = (f"{n:,} records have {label_en(col)} after the day {period} the file name gives "
                  "(a day's extract cannot hold later records; check the export's date range or the file name)")
        out.append((src, _warning(file_names[src], col.code, "outside_period", f"{ds.id}.outside_period", zh, en)))
    return out


#: The hints read from a validated table and its failures (``outside_period`` reads the rows
#: that passed instead), in the order the report lists them.
FAILURE_HINTS = (format_hints, excel_hints, number_hints, code_hints, org_hints, dictionary_hints)
