"""A re-sent record whose event date changed leaves a trace of the date it left, so the
incremental marts rebuild that date too (its key does not contain the date)."""
from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import duckdb

from hqms import config
from hqms.cli import main as hqms
from hqms.ingest.run import claim, process
from hqms.intake.submit import submit
from conftest import edit_csv_in_zip, provision_plan


def _ingest_all() -> None:
    for batch in claim():
        process(batch)


def _fever_day(tmp_path: Path, seed: int) -> tuple[dict, Path]:
    """One hospital's generated fever zip for 2025-01-06 (and its upload-plan row), keys ready."""
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", str(seed),
                 "--streams", "fever", "--scale", "0.2", "--out", str(gen), "--quiet"]) == 0
    assert hqms(["keys", "init"]) == 0
    plan = next(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))
    provision_plan(gen / "upload_plan.csv")
    return plan, gen / plan["zip"]


def test_a_resent_visit_moved_to_another_day_records_the_day_it_left(s3_store, tmp_path: Path) -> None:
    plan, first = _fever_day(tmp_path, seed=21)
    submit(first, plan["org_code"], plan["uploader"], received_at=datetime.fromisoformat("2025-01-07T09:00:00+08:00"))
    _ingest_all()

    # the next day's re-send: the first fever visit now says it happened on 2025-01-05
    moved_from: list[str] = []

    def move_first_visit(rows: list[list[str]]) -> None:
        at = rows[0].index("P7506")
        moved_from.append(rows[1][at][:10])
        rows[1][at] = "2025-01-05" + rows[1][at][10:]

    resent = edit_csv_in_zip(first, tmp_path / "fever_resent.zip", "fever_", move_first_visit)
    submit(resent, plan["org_code"], plan["uploader"], received_at=datetime.fromisoformat("2025-01-08T09:00:00+08:00"))
    _ingest_all()

    con = duckdb.connect(str(config.load().warehouse_path), read_only=True)
    moved = con.execute("SELECT dataset, org_code, CAST(period_date AS VARCHAR) FROM ops.moved_periods").fetchall()
    assert moved == [("fever", plan["org_code"], *moved_from)]
    days = dict(con.execute("SELECT CAST(visit_time AS DATE)::VARCHAR, count(*) FROM dw.fever GROUP BY 1").fetchall())
    assert days.get("2025-01-05") == 1


def test_a_replayed_older_upload_does_not_replace_a_newer_version(s3_store, tmp_path: Path) -> None:
    """An upload received before the stored version's (a re-processed or late-registered older
    export) must not regress the warehouse: its re-sent records stay as the newer upload has them,
    and no moved date is recorded for them."""
    plan, first = _fever_day(tmp_path, seed=22)

    def visit_on(day: str):
        def edit(rows: list[list[str]]) -> None:
            at = rows[0].index("P7506")
            rows[1][at] = day + rows[1][at][10:]
        return edit

    newer = edit_csv_in_zip(first, tmp_path / "newer.zip", "fever_", visit_on("2025-01-05"))
    older = edit_csv_in_zip(first, tmp_path / "older.zip", "fever_", visit_on("2025-01-04"))
    newer_id = submit(newer, plan["org_code"], plan["uploader"],
                      received_at=datetime.fromisoformat("2025-01-08T09:00:00+08:00")).upload_id
    _ingest_all()
    submit(older, plan["org_code"], plan["uploader"], received_at=datetime.fromisoformat("2025-01-07T09:00:00+08:00"))
    _ingest_all()

    con = duckdb.connect(str(config.load().warehouse_path), read_only=True)
    rows, keys, lineage = con.execute(
        "SELECT count(*), count(DISTINCT _nk), list(DISTINCT _upload_id) FROM dw.fever").fetchone()
    assert rows == keys and lineage == [newer_id]
    days = dict(con.execute("SELECT CAST(visit_time AS DATE)::VARCHAR, count(*) FROM dw.fever GROUP BY 1").fetchall())
    assert days.get("2025-01-05") == 1 and "2025-01-04" not in days
    assert con.execute("SELECT count(*) FROM ops.moved_periods").fetchone()[0] == 0
    statuses = con.execute("SELECT status FROM ops.uploads").fetchall()
    assert len(statuses) == 2


def test_an_upload_superseded_within_its_batch_keeps_its_period(s3_store, tmp_path: Path) -> None:
    """Two uploads of the same records processed in one batch: the newer one's rows win the
    merge, but the older upload still covered its days — its ``ops.upload_files`` period (what
    the submission marts read when a file name has no date) must not be lost with its rows."""
    plan, first = _fever_day(tmp_path, seed=26)
    days: list[str] = []

    def move_first_visit(rows: list[list[str]]) -> None:
        at = rows[0].index("P7506")
        days.extend(r[at][:10] for r in rows[1:])
        rows[1][at] = "2025-01-05" + rows[1][at][10:]

    newer = edit_csv_in_zip(first, tmp_path / "newer.zip", "fever_", move_first_visit)
    older_id = submit(first, plan["org_code"], plan["uploader"],
                      received_at=datetime.fromisoformat("2025-01-07T09:00:00+08:00")).upload_id
    submit(newer, plan["org_code"], plan["uploader"], received_at=datetime.fromisoformat("2025-01-08T09:00:00+08:00"))
    (batch,) = claim()
    assert older_id in batch and len(batch) == 2
    process(batch)

    con = duckdb.connect(str(config.load().warehouse_path), read_only=True)
    period = con.execute("SELECT CAST(period_start AS VARCHAR), CAST(period_end AS VARCHAR) FROM ops.upload_files "
                         "WHERE upload_id = ? AND dataset = 'fever'", [older_id]).fetchone()
    assert period == (min(days), max(days))
    assert con.execute("SELECT count(*) FROM dw.fever WHERE _upload_id = ?", [older_id]).fetchone() == (0,)
