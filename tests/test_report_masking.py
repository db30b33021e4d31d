"""Error reports never echo a person's name, ID or phone number in full, whatever column the
export put it in (an export whose header labels are shifted against its data)."""
from __future__ import annotations

import csv

from hqms.cli import main as hqms
from hqms.ingest.validate import validate_zip
from conftest import edit_csv_in_zip


def test_names_and_id_numbers_under_swapped_labels_are_masked_in_every_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", "5",
                 "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    plan = next(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))
    identifiers: set[str] = set()

    def swap_labels(rows: list[list[str]]) -> None:
        header = rows[0]
        for a, b in (("P4", "P5"), ("P13", "P7503")):  # name <-> sex, ID number <-> ID type
            i, j = header.index(a), header.index(b)
            header[i], header[j] = b, a
            identifiers.update(r[i] for r in rows[1:] if len(r[i]) > 1)  # the names / ID numbers

    bad = edit_csv_in_zip(gen / plan["zip"], tmp_path / "swapped.zip", "flu_", swap_labels)
    report = validate_zip(bad, plan["org_code"])
    echoed = [e for e in report.errors if e.value_masked is not None]
    assert {e.column for e in echoed} >= {"P5", "P7503"}  # the rows fail where the values landed
    assert len(identifiers) >= 10
    shown = repr(report.errors)
    assert not [v for v in identifiers if v in shown]
