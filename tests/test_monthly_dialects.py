"""The outpatient page as other exporters write it: the western form's own item labels as the
header, nationality as an alpha-3 code."""
from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from hqms.cli import main as hqms
from hqms.ingest.validate import validate_zip
from hqms.spec import dataset
from conftest import edit_csv_in_zip


def _month(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    """A generated October page of one hospital (zip, org code)."""
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2026-10-01", "--days", "1", "--streams", "outpatient",
                 "--scale", "0.2", "--seed", "2", "--out", str(gen), "--quiet"]) == 0
    plan = next(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))
    return gen / plan["zip"], plan["org_code"]


def test_the_western_pages_labels_map_every_column(tmp_path, monkeypatch):
    month, org = _month(tmp_path, monkeypatch)
    labels = dataset("mzsy").header_aliases["western_labels"]
    by_code = {code: label for label, code in reversed(labels.items())}  # the first label of each code

    def western_header(rows: list[list[str]]) -> None:
        rows[0] = [by_code.get(code, code) for code in rows[0]]

    assert {"医院名称", "病案号/门诊号", "证件类型"} <= set(by_code.values())
    relabelled = edit_csv_in_zip(month, tmp_path / "western.zip", "mzsy_", western_header)
    report = validate_zip(relabelled, org)
    assert [e for e in report.errors if e.rule in ("missing_column", "unknown_column")] == []
    assert report.record_count > 0 and report.conforming_count == report.record_count


def test_nationality_as_an_alpha3_code_conforms(tmp_path, monkeypatch):
    """GB/T 2659 alpha-3 (``CHN``, what the TCM page's implementation writes) as well as numeric."""
    month, org = _month(tmp_path, monkeypatch)

    def alpha3(rows: list[list[str]]) -> None:
        at = rows[0].index("GJ")
        for row, code in zip(rows[1:], ["CHN", "HKG", "usa", "XXX"]):
            row[at] = code

    report = validate_zip(edit_csv_in_zip(month, tmp_path / "alpha3.zip", "mzsy_", alpha3), org)
    failing = sorted((e.row, e.rule) for e in report.errors if e.column == "GJ")
    assert failing == [(3, "code_table"), (4, "code_table")]  # lower case and unknown codes still fail


def test_a_visit_dated_after_the_upload_is_an_error(tmp_path, monkeypatch):
    """A page dated after the day it was received (a mistyped year) is held back: counted, it would
    open a future month in the marts. Same-day pages pass, whatever the clock."""
    month, org = _month(tmp_path, monkeypatch)
    today = date.today()

    def dates(rows: list[list[str]]) -> None:
        at = rows[0].index("JZSJ")
        rows[1][at] = f"{today.year + 1}-01-05 09:00:00"
        rows[2][at] = f"{today:%Y-%m-%d} 23:59:59"

    report = validate_zip(edit_csv_in_zip(month, tmp_path / "future.zip", "mzsy_", dates), org)
    assert [(e.row, e.column) for e in report.errors if e.rule == "after_receipt"] == [(1, "JZSJ")]
    assert report.conforming_count == report.record_count - 1


def test_one_card_seen_by_two_departments_on_a_date_only_day_is_two_pages(tmp_path, monkeypatch):
    """JZSJ written as a date only: the department keeps the two visits apart (the natural key is
    JZKH + JZSJ + JZKSDM); the same department twice is still a duplicate."""
    month, org = _month(tmp_path, monkeypatch)

    def same_card_same_day(rows: list[list[str]]) -> None:
        h = rows[0]
        for row, dept in zip(rows[1:4], ["1602", "20", "20"]):
            row[h.index("JZKH")], row[h.index("JZSJ")], row[h.index("JZKSDM")] = "MZ0001", "2026-10-05", dept
            row[h.index("GHSJ")] = row[h.index("BDSJ")] = ""

    report = validate_zip(edit_csv_in_zip(month, tmp_path / "two_depts.zip", "mzsy_", same_card_same_day), org)
    assert [(e.row, e.rule) for e in report.errors if e.severity == "error"] == [(3, "duplicate_key")]
