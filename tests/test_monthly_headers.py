"""The outpatient page's header as exporters of the western page write it: the form's own item
labels instead of the standard's column names."""
from __future__ import annotations

import csv

from hqms.cli import main as hqms
from hqms.ingest.validate import validate_zip
from hqms.spec import dataset
from conftest import edit_csv_in_zip


def test_the_western_pages_labels_map_every_column(tmp_path, monkeypatch):
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2026-10-01", "--days", "1", "--streams", "outpatient",
                 "--scale", "0.2", "--seed", "2", "--out", str(gen), "--quiet"]) == 0
    plan = next(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))
    labels = dataset("mzsy").header_aliases["western_labels"]
    by_code = {code: label for label, code in reversed(labels.items())}  # the first label of each code

    def western_header(rows: list[list[str]]) -> None:
        rows[0] = [by_code.get(code, code) for code in rows[0]]

    assert {"医院名称", "病案号/门诊号", "证件类型"} <= set(by_code.values())
    relabelled = edit_csv_in_zip(gen / plan["zip"], tmp_path / "western.zip", "mzsy_", western_header)
    report = validate_zip(relabelled, plan["org_code"])
    assert [e for e in report.errors if e.rule in ("missing_column", "unknown_column")] == []
    assert report.record_count > 0 and report.conforming_count == report.record_count
