"""A record an export wrote twice is reported row by row, not silently collapsed by the merge."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from hqms.cli import main as hqms
from hqms.ingest.validate import validate_zip
from conftest import edit_csv_in_zip


def _flu_upload(tmp_path: Path) -> tuple[Path, str]:
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", "11",
                 "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    plan = next(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))
    return gen / plan["zip"], plan["org_code"]


def test_repeated_natural_keys_are_errors_on_the_later_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    src, org = _flu_upload(tmp_path)
    clean = validate_zip(src, org)
    assert [e for e in clean.errors if e.severity == "error"] == []
    assert clean.conforming_count == clean.record_count

    out = tmp_path / "dup.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".csv") and "/flu_" in "/" + info.filename:
                lines = data.decode("gb18030").split("\r\n")
                # row 2 sent again as row 4 (lower-case card number: same key), the whole file
                # again as a second part of the upload
                lines.insert(4, lines[2].replace("MZ", "mz", 1))
                zout.writestr(info, "\r\n".join(lines).encode("gb18030"))
                zout.writestr(info.filename.replace(".csv", "_2.csv"), data)
            else:
                zout.writestr(info, data)
    report = validate_zip(out, org)
    dups = sorted((e.file_name, e.row) for e in report.errors if e.rule == "duplicate_key")
    part1, part2 = (next(f for f in report.files if f.file_name.startswith("flu_") and f.file_name.endswith(end))
                    for end in ("106.csv", "_2.csv"))
    assert part1.record_count == part2.record_count + 1
    assert [e for e in report.errors if e.rule != "duplicate_key" and e.severity == "error"] == []
    assert dups == sorted([(part1.file_name, 4)] + [(part2.file_name, n) for n in range(1, part2.record_count + 1)])
    assert report.conforming_count == report.record_count - 1 - part2.record_count


def test_a_combined_panel_sends_one_lab_row_per_detail_and_both_are_records(tmp_path, monkeypatch):
    """流感A/B抗原: one request, one item code, two detail codes — two results, not a duplicate."""
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", "11",
                 "--streams", "fever", "--scale", "0.2", "--out", str(gen), "--quiet"]) == 0
    plan = next(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))

    def second_detail(rows: list[list[str]]) -> None:
        twin = list(rows[1])
        detail = rows[0].index("P7623")
        twin[detail] = (twin[detail] or "FLU") + "B"
        rows.insert(2, twin)

    out = edit_csv_in_zip(gen / plan["zip"], tmp_path / "panel.zip", "lab_", second_detail)
    report = validate_zip(out, plan["org_code"])
    assert [e for e in report.errors if e.severity == "error"] == []
    assert report.conforming_count == report.record_count
