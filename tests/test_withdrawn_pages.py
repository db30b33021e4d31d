"""A page a hospital withdrew stays withdrawn when the rest is sent again under another name
(issue 22, finding 1), through the real pipeline: generator → submit → ingest → incremental dbt
builds of the monthly marts.

The sequence of the independent recomputation: February sent as ``mzsy_202502.csv``; re-sent
under the same name without one page (the page is withdrawn); the same remaining pages sent again
as ``mzsy_export.csv`` (a name without a period, accepted by intake) and then as
``mzsy_export_202502.csv`` (another file). The merge keeps one row per key, so after the third
upload no row of the correction is left and only the withdrawn page still carries the name
``mzsy_202502.csv``: a rule that reads file versions from the surviving rows finds the original
upload the newest holder again and counts the page. The month's figures must be those of the
correction's pages, recomputed here from the CSV alone.
"""
from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from hqms import config
from hqms.ingest.run import claim, process
from hqms.intake.submit import submit
from hqms.marts import dbt
from conftest import generated_upload

pytestmark = pytest.mark.slow

CHAPTERS = Path(__file__).parents[1] / "dbt_project" / "seeds" / "icd10_chapters.csv"


def _ingest_all() -> None:
    for batch in claim():
        process(batch)


def _pages(zip_path: Path) -> tuple[str, list[list[str]]]:
    """(CSV entry name, rows with the header first) of a one-file mzsy_ upload."""
    with zipfile.ZipFile(zip_path) as zf:
        (info,) = zf.infolist()
        return info.filename, list(csv.reader(io.StringIO(zf.read(info).decode("gb18030"), newline="")))


def _zip(path: Path, name: str, rows: list[list[str]]) -> Path:
    """An upload holding ``rows`` as ``name``, GBK and CRLF as the exporters write them."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, buf.getvalue().encode("gb18030"))
    return path


def _chapter(code: str) -> str:
    """ICD-10 chapter of a principal diagnosis, from the chapter list (docs/marts.md)."""
    head = code.strip().upper()[:3]
    if len(head) == 3 and head[0].isalpha() and head[1:].isdigit():
        for row in csv.DictReader(CHAPTERS.open(encoding="utf-8")):
            if row["code_from"] <= head <= row["code_to"]:
                return row["chapter"]
    return "unknown"


def _expected(rows: list[list[str]]) -> dict:
    """The month's figures recomputed from the pages as sent (docs/marts.md)."""
    header, pages = rows[0], rows[1:]

    def cents(column: str) -> Decimal | None:
        values = [Decimal(p[header.index(column)]) for p in pages if p[header.index(column)].strip()]
        return sum(values).quantize(Decimal("0.01"), ROUND_HALF_UP) if values else None

    return {
        "visits": len(pages),
        "total_cost": cents("ZFY"),
        "self_pay_cost": cents("ZFJE"),
        "antibiotic_cost": cents("KJYWF"),
        "chapters": dict(Counter(_chapter(p[header.index("MZZD_JBBM")]) for p in pages)),
    }


def _marts(org: str) -> dict:
    con = duckdb.connect(str(config.load().warehouse_path), read_only=True)
    try:
        visits, total, self_pay, antibiotic = con.execute(
            "SELECT visits, total_cost, self_pay_cost, antibiotic_cost FROM marts.outpatient_monthly "
            "WHERE org_code = ? AND month = DATE '2025-02-01'", [org]).fetchone()
        chapters = dict(con.execute(
            "SELECT dx_chapter, visits FROM marts.outpatient_monthly_dx_chapters "
            "WHERE org_code = ? AND month = DATE '2025-02-01'", [org]).fetchall())
    finally:
        con.close()
    return {"visits": visits, "total_cost": total, "self_pay_cost": self_pay, "antibiotic_cost": antibiotic,
            "chapters": chapters}


def test_a_withdrawn_page_stays_out_when_the_rest_is_resent_under_other_names(s3_store, tmp_path: Path) -> None:
    plan, original = generated_upload(tmp_path / "gen", "outpatient", "2025-02-01", days=6, seed=22, scale=0.2)
    org, user = plan["org_code"], plan["uploader"]
    name, rows = _pages(original)
    assert name == "mzsy_202502.csv" and len(rows) > 6

    def send(zip_path: Path, day: int, selection: str = "monthly") -> None:
        submit(zip_path, org, user, received_at=datetime.fromisoformat(f"2025-03-{day:02d}T09:00:00+08:00"))
        _ingest_all()
        dbt.build(selection)

    send(original, 5, "all")  # every mart once (a monthly build tests submission_daily's relations too)
    assert _marts(org) == _expected(rows)

    # the correction withdraws the costliest page (its cost and chapter are then visibly missing)
    zfy = rows[0].index("ZFY")
    withdrawn = max(rows[1:], key=lambda page: Decimal(page[zfy]))
    kept = [page for page in rows if page is not withdrawn]
    send(_zip(tmp_path / "correction.zip", "mzsy_202502.csv", kept), 8)
    expected = _expected(kept)
    assert expected["visits"] == len(rows) - 2
    assert _marts(org) == expected

    # the same pages again under a name without a period, then under another month-named file:
    # every row of the correction is taken over, the withdrawn page must stay out
    send(_zip(tmp_path / "export.zip", "mzsy_export.csv", kept), 10)
    assert _marts(org) == expected
    send(_zip(tmp_path / "export_month.zip", "mzsy_export_202502.csv", kept), 12)
    assert _marts(org) == expected

    con = duckdb.connect(str(config.load().warehouse_path), read_only=True)
    try:
        # the page is still stored (nothing a hospital sent is lost); only the marts leave it out
        assert con.execute("SELECT count(*) FROM dw.mzsy WHERE _source_file = 'mzsy_202502.csv'").fetchone() == (1,)
    finally:
        con.close()
