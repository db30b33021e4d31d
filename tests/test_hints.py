"""File-level warnings after validation: ``format_hint`` (a date column written in a foreign
layout), ``excel_hint`` (a file opened and saved again in Excel) and ``outside_period``
(conforming rows outside the period the file name gives)."""
from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date
from pathlib import Path

import duckdb
import pytest

from hqms import spec
from hqms.validators import make_org_code, make_uscc
from hqms.ingest import hints
from hqms.spec import filenames
from hqms.ingest.validate import ValidationReport, validate_many, validate_zip
from hqms.stagedb import open_stage
from conftest import edit_csv_in_zip, generate_day

FLU, MZSY = spec.dataset("flu"), spec.dataset("mzsy")
NEW_RULES = ("format_hint", "excel_hint", "number_hint", "code_hint", "org_hint", "dictionary_hint", "outside_period")


# ---------------------------------------------------------------- shapes → layout names (no I/O)

@pytest.mark.parametrize("shape, first_max, second_max, name", [
    ("9999/99/99 99:99", None, None, "yyyy/MM/dd HH:mm"),
    ("9999-99-99T99:99:99", None, None, "yyyy-MM-dd'T'HH:mm:ss"),
    ("9999-99-99 99:99:99.9", None, None, "yyyy-MM-dd HH:mm:ss.S"),
    ("9999-99-99 99:99:99.999", None, None, "yyyy-MM-dd HH:mm:ss.SSS"),
    ("99999999999999", None, None, "yyyyMMddHHmmss"),
    ("99999999", None, None, "yyyyMMdd"),
    ("9999.99.99", None, None, "yyyy.MM.dd"),
    ("99/99/9999", 25, 11, "dd/MM/yyyy"),
    ("99/99/9999", 11, 25, "MM/dd/yyyy"),
    ("99/99/9999", 11, 12, "dd/MM/yyyy or MM/dd/yyyy"),
    ("9999-99", None, None, "9999-99 (9 = any digit)"),
    ("99:99", None, None, "99:99 (9 = any digit)"),
    ("9999-.-9", None, None, "9999-.-9 (9 = any digit)"),
    ("9999-99-99 ::99", None, None, "9999-99-99 ::99 (9 = any digit)"),
    ("9999/9/9 9:99:99", None, None, "yyyy/M/d H:mm:ss"),
    ("9999年99月99日", None, None, "yyyy年MM月dd日"),
    ("9999年9月9日 9时99分", None, None, "yyyy年M月d日 H时mm分"),
    ("9999年99月99日 99时99分99秒", None, None, "yyyy年MM月dd日 HH时mm分ss秒"),
    ("9999年99月99日 99:99:99", None, None, "yyyy年MM月dd日 HH:mm:ss"),
])
def test_a_shape_is_named_by_its_layout(shape, first_max, second_max, name):
    layout = hints.top_layout(FLU.column("P7506"), [(shape, 7)])
    assert layout is not None and layout.count == 7
    layout.first_max, layout.second_max = first_max or 0, second_max or 0
    assert layout.names()[1] == name


def test_shapes_differing_only_in_padding_are_one_layout():
    groups = [("9999/9/9 9:99", 3), ("9999/9/99 99:99", 4),
              ("9999-99-99", 5)]  # an accepted shape: impossible dates, not a layout
    layout = hints.top_layout(FLU.column("P7506"), groups)
    assert (layout.count, layout.names()) == (7, ("yyyy/M/d H:mm", "yyyy/M/d H:mm"))


def test_the_required_layout_itself_never_makes_a_hint():
    """2026-13-01 and 2026-02-30 fail in the right layout: impossible dates, not a format hint."""
    for col in (FLU.column("P7506"), FLU.column("P6")):
        groups = [(re.sub("[A-Za-z]", "9", f), 100) for f in col.formats]
        assert hints.top_layout(col, groups) is None


# ---------------------------------------------------------------- generated uploads, one batch

def _rewrite(code: str, fn, rows_wanted=None):
    """An ``edit`` for edit_csv_in_zip: ``fn`` applied to column ``code`` of the chosen rows."""
    def edit(rows: list[list[str]]) -> None:
        i = rows[0].index(code)
        for n, row in enumerate(rows[1:], start=1):
            if row[i] and (rows_wanted is None or n in rows_wanted):
                row[i] = fn(row[i])
    return edit


def _slash_minutes(v: str) -> str:  # 2025-01-06 09:30:12 → 2025/01/06 09:30
    return v[:16].replace("-", "/")


def _excel_number(v: str) -> str:  # 18 digits → 1.10105E+17, as Excel saves them
    return f"{v[0]}.{v[1:6]}E+{len(v) - 1}" if v.isdigit() and len(v) > 11 else v


def _excel_saved(rows: list[list[str]]) -> None:
    """What Excel's Save does to a flu_ file: ID numbers in scientific notation, codes that are
    all digits lose their leading zeros (P7503 01 → 1)."""
    head = rows[0]
    for row in rows[1:]:
        for code, fn in (("P13", _excel_number), ("P7503", lambda v: v.lstrip("0") or v)):
            row[head.index(code)] = fn(row[head.index(code)])


def _other_document_ids(rows: list[list[str]]) -> None:
    """Document type 99 (no check digit) with ID numbers in scientific notation: every rule passes."""
    head = rows[0]
    for row in rows[1:]:
        row[head.index("P7503")] = "99"
        row[head.index("P13")] = _excel_number(row[head.index("P13")])


def _chinese_date_time(v: str) -> str:  # 2025-01-06 09:30:12 → 2025年01月06日 09时30分12秒
    return f"{v[:4]}年{v[5:7]}月{v[8:10]}日 {v[11:13]}时{v[14:16]}分{v[17:19]}秒" if len(v) == 19 else v


def _full_width_rows(cells: dict[int, str]):
    """Row n's column code written in full-width characters (a Chinese input method's 全角 mode)."""
    def edit(rows: list[list[str]]) -> None:
        for n, code in cells.items():
            i = rows[0].index(code)
            rows[n][i] = "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in rows[n][i])
    return edit


#: Well-shaped codes of the older clinical editions, absent from the 医保版 2.0 dictionary.
LOCAL_DX = ("J11.101", "J18.999", "j18.999")
#: Dictionary codes in any case: x as the 4th character, dagger/asterisk pairs, 中医操作.
NATIONAL_DX = ("j10.800x003+i41.1*", "J09.X02", "a35.X00x001", "j11.100x001")
NATIONAL_OPS = ("74.1X01", "73.6x01", "57.0x00x005", "17.912a0", "17.91100")


def _national_codes(rows: list[list[str]]) -> None:
    """mzsy_: every diagnosis and procedure column filled with dictionary codes, in any case."""
    head = rows[0]
    for n, row in enumerate(rows[1:]):
        for k in range(1, 6):
            row[head.index(f"MZZD_JBBM{k}")] = NATIONAL_DX[(n + k) % len(NATIONAL_DX)]
            row[head.index(f"SSCZBM{k}")] = NATIONAL_OPS[(n + k) % len(NATIONAL_OPS)]


def _local_codes(rows: list[list[str]]) -> None:
    """flu_: P321 of every row a well-shaped code the dictionary lacks, P324 of rows 1–2 too."""
    head = rows[0]
    for n, row in enumerate(rows[1:], start=1):
        row[head.index("P321")] = LOCAL_DX[n % len(LOCAL_DX)]
        if n <= 2:
            row[head.index("P324")] = "J11.101"


def _java_timestamp(v: str) -> str:  # Timestamp.toString(): 2025-01-06 09:30:12.0
    return v + ".0" if len(v) == 19 else v


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> dict:
    return generate_day(tmp_path_factory.mktemp("gen"), seed=11)


def _flu_rows(zip_path: Path) -> list[dict[str, str]]:
    with zipfile.ZipFile(zip_path) as zf:
        (name,) = [n for n in zf.namelist() if n.rsplit("/", 1)[-1].startswith("flu_")]
        text = zf.read(name).decode("gb18030")
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.fixture(scope="module")
def batch(gen, tmp_path_factory) -> dict[str, ValidationReport]:
    """Every variant validated together (one GX checkpoint, as ingest batches uploads)."""
    work = tmp_path_factory.mktemp("variants")
    flu, mzsy = gen["zips"]["flu"], gen["zips"]["outpatient"]
    rows = _flu_rows(flu)
    assert len(rows) >= 50
    alive = [n for n, r in enumerate(rows, start=1) if not r["P8509"]]  # no death time: P7506 <= P8509 holds

    def later_day(v: str) -> str:
        return "2025-01-07" + v[10:]

    def earlier_day(v: str) -> str:
        return "2024-12-20" + v[10:]

    def other_months(rows: list[list[str]]) -> None:
        """Rows 1-2 of mzsy_202501 moved to February, rows 3-4 (with their check-in and
        registration times, which must not be later) to December."""
        head = rows[0]
        for n, row in enumerate(rows[1:5], start=1):
            for code in (["JZSJ"] if n <= 2 else ["GHSJ", "BDSJ", "JZSJ"]):
                i = head.index(code)
                if row[i]:
                    row[i] = ("2025-02" if n <= 2 else "2024-12") + row[i][7:]

    def fifty_rows(bad: dict[int, str]):
        def edit(rows: list[list[str]]) -> None:
            del rows[51:]
            i = rows[0].index("P7506")
            for n, value in bad.items():
                rows[n][i] = value
        return edit

    def edit(name, src, prefix, fn):
        return name, edit_csv_in_zip(src, work / f"{name}.zip", prefix, fn)

    variants = dict([
        ("clean_flu", flu), ("clean_fever", gen["zips"]["fever"]), ("clean_mzsy", mzsy),
        edit("slash", flu, "flu_", _rewrite("P7506", _slash_minutes)),
        edit("day_first", flu, "flu_", _rewrite("P6", lambda v: f"{v[8:10]}/{v[5:7]}/{v[:4]}")),
        edit("scattered", flu, "flu_", fifty_rows({7: "2025-13-01 09:00:00", 31: "2025/13/01"})),
        edit("few_foreign", flu, "flu_", fifty_rows({n: "2025/01/06 09:30" for n in (2, 4, 6, 8, 10, 12)})),
        edit("late_flu", flu, "flu_", _rewrite("P7506", later_day, set(alive[:3]))),
        edit("resent_flu", flu, "flu_", _rewrite("P7506", earlier_day, set(alive[:2]))),
        edit("other_month", mzsy, "mzsy_", other_months),
        edit("chinese", flu, "flu_", _rewrite("P7506", _chinese_date_time)),
        edit("doubles", flu, "flu_", _rewrite("P7", lambda v: v + ".0")),
        edit("grouped", mzsy, "mzsy_", _rewrite("ZFY", lambda v: f"{float(v) + 1000:,.2f}")),
        edit("units", flu, "flu_", _with_units),
        edit("code_names", flu, "flu_", _rewrite("P5", lambda v: spec.allowed_values(FLU.column("P5"))[v])),
        edit("code_and_name", flu, "flu_", _code_and_name),
        edit("excel", flu, "flu_", _excel_saved),
        edit("excel_passing", flu, "flu_", _other_document_ids),
        edit("excel_few", flu, "flu_", _rewrite("P13", _excel_number, {1, 2, 3})),
        edit("full_width", flu, "flu_", _full_width_rows({2: "P13", 3: "P7503"})),
        edit("org_uscc", flu, "flu_", _rewrite("P900", lambda v: make_uscc("1", "2", v[9:15], v[:9]))),
        edit("org_code9", mzsy, "mzsy_", _rewrite("ZZJGDM", lambda v: v[:9], {1, 2})),
        edit("org_other", flu, "flu_", _rewrite("P900", lambda v: make_org_code("12345678") + v[9:])),
        edit("org_lower", flu, "flu_", _rewrite("P900", lambda v: " " + v.lower())),
        edit("national_codes", mzsy, "mzsy_", _national_codes),
        edit("local_codes", flu, "flu_", _local_codes),
    ])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HQMS_HOME", str(gen["dir"] / "home"))
        with open_stage(work / "duckdb_tmp") as stage:
            return validate_many(stage, [(k, p, gen["org"]) for k, p in variants.items()], work / "w",
                                 docs_dir=None, run_id="test-hints", received={k: date.today() for k in variants})


def _new(report: ValidationReport) -> list:
    return [e for e in report.errors if e.rule in NEW_RULES]


def test_a_normal_generated_day_gets_no_new_warning(batch):
    for key in ("clean_flu", "clean_fever", "clean_mzsy"):
        report = batch[key]
        assert [e for e in report.errors if e.severity == "error"] == [], key
        assert _new(report) == [], key


def test_a_column_in_a_foreign_layout_gets_one_hint_and_keeps_its_row_errors(batch):
    report, clean = batch["slash"], batch["clean_flu"]
    flu_file = next(f for f in report.files if f.file_name.startswith("flu_"))
    (hint,) = _new(report)
    assert (hint.file_name, hint.row, hint.column, hint.rule, hint.severity, hint.value_masked) == \
        (flu_file.file_name, None, "P7506", "format_hint", "warning", None)
    formats = [e for e in report.errors if e.rule == "format"]
    assert {(e.file_name, e.column) for e in formats} == {(flu_file.file_name, "P7506")}
    assert len(formats) == flu_file.parsed_count
    assert hint.message_zh == (f"P7506（就诊日期）有 {len(formats):,} 个值写成 yyyy/MM/dd HH:mm 的形式，"
                               "接口标准要求 yyyy-MM-dd HH:mm:ss 或 yyyy-MM-dd；请修改导出程序的日期格式")
    assert "yyyy/MM/dd HH:mm;" in hint.message_en and "yyyy-MM-dd HH:mm:ss or yyyy-MM-dd" in hint.message_en
    # a warning: the conforming count falls by the rows with format errors, no more
    assert report.conforming_count == clean.conforming_count - len(formats)
    # file-level first: it sorts before the rows of its file
    mine = [e for e in report.errors if e.file_name == flu_file.file_name]
    assert mine.index(hint) < min(mine.index(e) for e in formats)


def test_a_chinese_date_layout_is_named(batch):
    (hint,) = _new(batch["chinese"])
    assert hint.column == "P7506" and "写成 yyyy年MM月dd日 HH时mm分ss秒 的形式" in hint.message_zh


def test_day_and_month_order_is_told_by_the_values(batch):
    (hint,) = _new(batch["day_first"])
    assert hint.column == "P6" and "写成 dd/MM/yyyy 的形式，接口标准要求 yyyy-MM-dd 或 YYYYMMDD" in hint.message_zh


def test_a_hint_echoes_no_digit_of_any_value(batch, gen):
    (hint,) = _new(batch["slash"])
    n = sum(1 for e in batch["slash"].errors if e.rule == "format")
    for message in (hint.message_zh, hint.message_en):
        assert not re.search(r"\d", message.replace("P7506", "").replace(f"{n:,}", "")), message
    values = {_slash_minutes(r["P7506"]) for r in _flu_rows(gen["zips"]["flu"])}
    assert not any(v in hint.message_zh or v[:10] in hint.message_en for v in values)


def test_scattered_bad_dates_make_no_hint(batch):
    report = batch["scattered"]
    assert sorted((e.row, e.rule) for e in report.errors if e.column == "P7506") == [(7, "format"), (31, "format")]
    assert _new(report) == []


def test_a_foreign_layout_on_fewer_than_half_of_the_values_makes_no_hint(batch):
    report = batch["few_foreign"]
    assert sum(e.rule == "format" for e in report.errors) == 6
    assert _new(report) == []


def test_rows_dated_after_the_files_day_make_one_warning(batch):
    report, clean = batch["late_flu"], batch["clean_flu"]
    (warning,) = _new(report)
    assert (warning.file_name, warning.row, warning.column, warning.rule, warning.severity) == \
        ("flu_20250106.csv", None, "P7506", "outside_period", "warning")
    assert warning.message_zh.startswith("3 条记录的 P7506（就诊日期）晚于文件名所示的报告日 2025-01-06")
    assert warning.message_en.startswith("3 records have P7506")
    assert report.conforming_count == clean.conforming_count
    assert [e for e in report.errors if e.severity == "error"] == []


def test_older_days_are_the_normal_resend_and_never_warn(batch):
    assert _new(batch["resent_flu"]) == []


def test_a_monthly_file_with_rows_of_other_months_warns(batch):
    report, clean = batch["other_month"], batch["clean_mzsy"]
    (warning,) = _new(report)
    assert (warning.file_name, warning.column, warning.rule) == ("mzsy_202501.csv", "JZSJ", "outside_period")
    assert warning.message_zh == "4 条记录的 JZSJ（就诊时间）不在文件名所示的报告期 2025-01 内"
    assert report.conforming_count == clean.conforming_count


def test_a_file_saved_again_by_excel_gets_one_hint_per_damaged_column(batch):
    report = batch["excel"]
    hints_ = {e.column: e for e in _new(report)}
    assert sorted(hints_) == ["P13", "P7503"] and {e.rule for e in hints_.values()} == {"excel_hint"}
    ids = sum(1 for e in report.errors if e.column == "P7503" and e.rule == "code_table")
    assert ids >= 5 and hints_["P7503"].message_zh.startswith(f"P7503（注册证件类型代码）有 {ids:,} 个值丢失了前导零")
    assert "科学计数法（形如 5.1E+17）" in hints_["P13"].message_zh and "saved again in Excel" in hints_["P13"].message_en
    assert all(e.severity == "warning" and e.row is None and e.value_masked is None for e in hints_.values())


def test_scientific_notation_is_flagged_even_where_every_rule_passes(batch):
    report, clean = batch["excel_passing"], batch["clean_flu"]
    (hint,) = _new(report)
    assert (hint.column, hint.rule) == ("P13", "excel_hint")
    assert report.conforming_count == clean.conforming_count  # a warning, never a rejection


def test_integers_written_as_doubles_get_one_hint_and_keep_their_type_errors(batch):
    report = batch["doubles"]
    (hint,) = _new(report)
    types = [e for e in report.errors if e.rule == "type"]
    assert {e.column for e in types} == {"P7"} and len(types) >= 5
    assert (hint.column, hint.rule, hint.severity) == ("P7", "number_hint", "warning")
    assert hint.message_zh.startswith(f"P7（年龄（岁））有 {len(types):,} 个值写成了带小数的形式（形如 35.0）")


def _with_units(rows: list[list[str]]) -> None:
    """Ages with their unit, costs with the currency sign: 35岁, ¥12.50."""
    _rewrite("P7", lambda v: v + "岁")(rows)
    _rewrite("P7508", lambda v: "¥" + v)(rows)


def test_dressed_up_numbers_get_one_hint_naming_the_format(batch):
    grouped, units = _new(batch["grouped"]), _new(batch["units"])
    assert [(e.column, e.rule) for e in grouped] == [("ZFY", "number_hint")]
    assert "千位分隔符（形如 1,234.50）" in grouped[0].message_zh and "thousands separators" in grouped[0].message_en
    assert sorted(e.column for e in units) == ["P7", "P7508"]
    assert all(e.rule == "number_hint" and "currency sign or a unit" in e.message_en for e in units)
    ages = [e for e in batch["units"].errors if e.rule == "type" and e.column == "P7"]
    assert ages and units[0].message_zh.startswith(f"P7（年龄（岁））有 {len(ages):,} 个值带货币符号或单位")


def _code_and_name(rows: list[list[str]]) -> None:
    """What hospital systems show: 1.1本市城镇职工基本医疗保险, 门诊(01)."""
    _rewrite("P1", lambda v: v + spec.allowed_values(FLU.column("P1"))[v])(rows)
    _rewrite("P7501", lambda v: f"{spec.allowed_values(FLU.column('P7501'))[v]}({v})")(rows)


def test_code_names_get_one_hint_per_column_and_keep_their_code_errors(batch):
    names, both = _new(batch["code_names"]), _new(batch["code_and_name"])
    assert [(e.column, e.rule, e.severity) for e in names] == [("P5", "code_hint", "warning")]
    assert sorted((e.column, e.rule) for e in both) == [("P1", "code_hint"), ("P7501", "code_hint")]
    report = batch["code_names"]
    flu_file = next(sf for sf in report.files if sf.file_name.startswith("flu_"))
    errors = [e for e in report.errors if e.rule == "code_table"]
    assert {e.column for e in errors} == {"P5"} and len(errors) == flu_file.record_count
    assert report.failing[flu_file.src] == flu_file.record_count  # a hint never lets a row through
    assert names[0].message_zh.startswith(f"P5（性别）有 {len(errors):,} 个值写的是代码的名称（如“男”）而不是代码（1）")
    assert "code table RC001" in names[0].message_en


def test_a_few_scientific_values_make_no_excel_hint(batch):
    assert _new(batch["excel_few"]) == []


def test_the_dry_run_names_a_java_timestamp_layout(gen, tmp_path, monkeypatch):
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    src = edit_csv_in_zip(gen["zips"]["flu"], tmp_path / "java.zip", "flu_", _rewrite("P7506", _java_timestamp))
    report = validate_zip(src, gen["org"])
    (hint,) = _new(report)
    assert hint.column == "P7506" and "写成 yyyy-MM-dd HH:mm:ss.S 的形式" in hint.message_zh


@pytest.mark.parametrize("name, day", [
    ("flu_20250106.csv", "2025-01-06"), ("flu_20250106_2.csv", "2025-01-06"), ("mzsy_202501.csv", "2025-01-01"),
    ("flu_20250106(1).csv", "2025-01-06"), ("flu_20250106 (2).csv", "2025-01-06"),
    ("flu_20250106_2 - 副本.csv", "2025-01-06"), ("flu_20250106 - 副本 (3).csv", "2025-01-06"),
    ("flu_20250106 copy 2.csv", "2025-01-06"), ("mzsy_202501 - 副本.csv", "2025-01-01"),
    ("flu_1.csv", None), ("flu_20251399.csv", None), ("flu_20250106.csv.bak", None),
    ("flu_20250106 v2.csv", None), ("flu_202501061.csv", None),
    # dates written with separators (audit of the monthly page, finding 2): the day is tried first
    ("flu_2025-01-06.csv", "2025-01-06"), ("flu_2025_01_06_2.csv", "2025-01-06"),
    ("mzsy_2026-10.csv", "2026-10-01"), ("mzsy_2026_10.csv", "2026-10-01"), ("mzsy_2026_10_2.csv", "2026-10-01"),
    ("mzsy_2026-10 - 副本.csv", "2026-10-01"), ("mzsy_20261015.csv", "2026-10-15"),
    ("mzsy_2026-13.csv", None), ("mzsy_2026-1.csv", None), ("flu_2025-0106.csv", None)])
def test_the_period_comes_from_the_file_name_like_the_dbt_macro(name, day):
    (got,) = duckdb.execute(f"SELECT CAST({hints.file_name_date_sql('n')} AS VARCHAR) FROM (SELECT ? AS n)",
                            [name]).fetchone()
    assert got == day


def test_the_dbt_macros_read_file_names_with_the_spec_patterns():
    """hqms.spec.filenames is where the pattern is written; dbt gets it as generated macros,
    which file_name_date and file_identity call (no pattern of their own)."""
    macros = Path(__file__).parents[1] / "dbt_project" / "macros"
    assert (macros / "file_name_patterns.sql").read_text(encoding="utf-8") == filenames.dbt_macros(), \
        "run `hqms marts sources` and commit dbt_project/macros/file_name_patterns.sql"
    time_sql = (macros / "time.sql").read_text(encoding="utf-8")
    assert "set day = hqms.file_name_pattern('day')" in time_sql
    assert "set month = hqms.file_name_pattern('month')" in time_sql
    assert time_sql.count("'{{ separators }}', '', 'g')") == 2  # separators dropped, day and month
    assert "\\d{" not in time_sql.split("file_name_date")[-1].split("period_series")[0]


def test_a_value_in_full_width_characters_says_so_without_showing_it(batch):
    """An ID number typed in full-width digits fails its check digit; the masked value cannot
    show why, the note does. Only the rows holding such characters get it."""
    report = batch["full_width"]
    errors = [e for e in report.errors if e.severity == "error"]
    assert {(e.row, e.column) for e in errors} == {(2, "P13"), (3, "P7503")}
    for e in errors:
        assert e.message_zh.endswith("（该值含全角字符，如 １、Ｘ、－，请改用半角字符）")
        assert "full-width characters" in e.message_en
    id_error = next(e for e in errors if e.column == "P13")
    assert "*" in id_error.value_masked and hints.FULL_WIDTH.match(id_error.value_masked[0])
    assert not any("全角" in e.message_zh for e in batch["excel_few"].errors)


@pytest.mark.parametrize("key, column, count", [("org_uscc", "P900", None), ("org_code9", "ZZJGDM", 2)])
def test_an_org_column_holding_the_hospitals_credit_or_org_code_names_the_code_wanted(batch, gen, key, column, count):
    """Older documents call the column 组织机构代码: a hospital writing its USCC or 9-character
    code there fails every row's check; one warning says which code is wanted (its own)."""
    report = batch[key]
    checks = [e for e in report.errors if e.rule == "check" and e.column == column]
    (hint,) = _new(report)
    assert (hint.rule, hint.column, hint.severity) == ("org_hint", column, "warning")
    assert len(checks) == (count or report.record_count - sum(f.record_count for f in report.files
                                                              if not f.file_name.startswith("flu_")))
    assert f"有 {len(checks):,} 个值是本机构的统一社会信用代码或组织机构代码" in hint.message_zh
    assert f"(yours: {gen['org']})" in hint.message_en


def test_another_hospitals_code_is_an_org_mismatch_without_a_hint(batch):
    report = batch["org_other"]
    assert {e.rule for e in report.errors if e.column == "P900"} == {"org_mismatch"}
    assert _new(report) == []


# ---------------------------------------------------------------- national codes

def test_dictionary_codes_in_any_case_are_fully_conforming(batch):
    """x at the 4th character (74.1x01), dagger/asterisk pairs, 中医操作 codes, any letter case."""
    report, clean = batch["national_codes"], batch["clean_mzsy"]
    assert report.conforming_count == clean.conforming_count == report.record_count
    assert [e for e in report.errors if e.severity == "error" or e.rule == "dictionary_hint"] == []


def test_codes_absent_from_the_dictionary_warn_once_per_column_and_keep_their_rows(batch):
    report = batch["local_codes"]
    assert report.conforming_count == batch["clean_flu"].conforming_count
    hints_ = [e for e in report.errors if e.rule == "dictionary_hint"]
    assert sorted(h.column for h in hints_) == ["P321", "P324"]
    assert all(h.severity == "warning" and h.row is None for h in hints_)
    p321 = next(h for h in hints_ if h.column == "P321")
    n = sum(f.record_count for f in report.files if f.file_name.startswith("flu_"))
    assert f"有 {n:,} 个编码不在 ICD-10 医保版 2.0 字典中" in p321.message_zh
    # the commonest unknown codes, compared upper-cased, each with its nearest dictionary codes
    assert "J18.999（相近：J18.900 " in p321.message_zh and "J11.101（相近：J11.100 " in p321.message_zh
    assert "hqms codes icd10 J" in p321.message_zh
    p324 = next(h for h in hints_ if h.column == "P324")
    assert "有 2 个编码" in p324.message_zh


def test_lower_case_org_codes_conform(batch):
    """The 医疗机构代码 written in lower case (and with a blank) is the uploader's own code."""
    report = batch["org_lower"]
    assert report.conforming_count == batch["clean_flu"].conforming_count
    assert [e for e in report.errors if e.column == "P900"] == []
