"""Birth date and sex that disagree with the resident ID number: reported as row WARNINGS.

GB 11643 encodes the birth date (digits 7–14) and the sex (17th digit: odd = male). A front page
that disagrees was mistyped somewhere, but the visit itself is real, so the row still goes on
(conforming count unchanged) and the data manager sees which rows to correct.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hqms.cli import main as hqms
from hqms.ingest.validate import validate_zip
from conftest import edit_csv_in_zip


@pytest.fixture(scope="module")
def flu(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("gen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HQMS_HOME", str(out / "home"))
        assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", "5",
                     "--streams", "flu", "--out", str(out / "g"), "--quiet"]) == 0
    (plan,) = csv.DictReader((out / "g" / "upload_plan.csv").open(encoding="utf-8"))
    return out / "g" / plan["zip"], plan["org_code"]


def test_disagreeing_birth_date_and_sex_are_warnings_on_their_rows(flu, tmp_path, monkeypatch):
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    src, org = flu
    changed: dict[str, int] = {}

    def edit(rows: list[list[str]]) -> None:
        head = rows[0]
        kind, number, birth, sex = (head.index(c) for c in ("P7503", "P13", "P6", "P5"))
        cards = [n for n, r in enumerate(rows[1:], start=1) if r[kind] == "01" and len(r[number]) == 18]
        row = rows[cards[0]]
        row[birth] = ("1901" if row[birth][:4] != "1901" else "1902") + row[birth][4:]
        changed["P6"] = cards[0]
        row = rows[cards[1]]
        row[sex] = {"1": "2", "2": "1"}[row[sex]]
        changed["P5"] = cards[1]

    before = validate_zip(src, org)
    report = validate_zip(edit_csv_in_zip(src, tmp_path / "mistyped.zip", "flu_", edit), org)
    new = [e for e in report.errors if e not in before.errors]
    assert {(e.row, e.column, e.rule, e.severity, e.check_id) for e in new} == {
        (changed["P6"], "P6", "cross_field", "warning", "flu.rule.flu_birth_date_matches_id"),
        (changed["P5"], "P5", "cross_field", "warning", "flu.rule.flu_sex_matches_id")}
    assert report.conforming_count == before.conforming_count
    shown = {e.column: e.value_masked for e in new}
    assert shown["P6"].count("*") >= 6  # a birth date is personal: masked in the report
