"""The reporting calendar of the submission marts end to end (audit of the monthly page,
findings 2, 3 and 9): ``ops.uploads`` / ``ops.upload_files`` as the ingest writes them, a real
``dbt build`` of the submission marts "on" 2026-12-05 10:00 China time (``vars.as_of``), and
``hqms marts summary`` over the result.

The warehouse holds ``test_dbt_marts``' synthetic rows (outpatient January 2025, received
10–17 February 2025) plus these outpatient uploads:

* H1 October (on time) and, already, November, which is not due before 2026-12-16;
* H2 one zip holding ``mzsy_202609.csv`` and ``mzsy_202610.csv`` (September late, October on time);
* H3 ``mzsy_2026-10.csv`` holding 5 late September pages: October;
* H4 ``mzsy_202701.csv`` (a future month) and H5 ``mzsy_206210.csv`` (a typo year): no period.

The dbt unit tests beside the models (``stg_upload_files.yml``, ``int_upload_periods.yml``,
``int_submission_status.yml``, ``submission_*.yml`` in ``dbt_project/models/``) pin each rule;
this checks that they hold together on the warehouse's own types and names.
"""
from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from hqms import config as hqms_config
from hqms.marts import dbt, summary
from test_dbt_marts import CST, HOSPITALS, OLD_LOAD, Rows, _config, _query, populate, synthetic_rows

pytestmark = pytest.mark.slow

AS_OF = "2026-12-05 10:00:00"
H1, H2, H3, H4, H5 = (h[0] for h in HOSPITALS)


def _upload(rows: Rows, upload_id: str, org: str, received: datetime,
            files: list[tuple[str, int, date | None, date | None]], zip_name: str = "upload.zip") -> None:
    """One processed outpatient upload: files as (name, records, first and last event date)."""
    rows.add("ops.uploads", upload_id=upload_id, stream="outpatient", org_code=org, file_name=zip_name,
             received_at=received, status="processed", record_count=sum(f[1] for f in files),
             conforming_count=sum(f[1] for f in files), processed_at=OLD_LOAD)
    for name, n, first, last in files:
        rows.add("ops.upload_files", upload_id=upload_id, file_name=name, dataset="mzsy", stream="outpatient",
                 record_count=n, conforming_count=n, period_start=first, period_end=last)


def _scenario() -> Rows:
    rows = synthetic_rows()
    _upload(rows, "h1-oct", H1, datetime(2026, 11, 3, 10, tzinfo=CST),
            [("mzsy_202610.csv", 94, date(2026, 10, 1), date(2026, 10, 31))])
    _upload(rows, "h1-nov", H1, datetime(2026, 12, 3, 10, tzinfo=CST),
            [("mzsy_202611.csv", 90, date(2026, 11, 1), date(2026, 11, 30))])
    _upload(rows, "h2-two", H2, datetime(2026, 11, 20, 10, tzinfo=CST),
            [("mzsy_202609.csv", 40, date(2026, 9, 1), date(2026, 9, 30)),
             ("mzsy_202610.csv", 131, date(2026, 10, 1), date(2026, 10, 31))])
    _upload(rows, "h3-dash", H3, datetime(2026, 11, 6, 10, tzinfo=CST),
            [("mzsy_2026-10.csv", 289, date(2026, 9, 28), date(2026, 10, 31))])
    _upload(rows, "h4-future", H4, datetime(2026, 12, 5, 9, tzinfo=CST),
            [("mzsy_202701.csv", 126, date(2027, 1, 2), date(2027, 1, 30))])
    _upload(rows, "h5-typo", H5, datetime(2026, 11, 4, 9, tzinfo=CST),
            [("mzsy_206210.csv", 50, date(2026, 10, 1), date(2026, 10, 31))])
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> hqms_config.Config:
    cfg = _config(tmp_path_factory.mktemp("reporting_periods"))
    populate(cfg.warehouse_path, _scenario())
    result = dbt.run(["build", "--select", "+submission_monthly_by_region", "--exclude-resource-type", "unit_test",
                      "--vars", json.dumps({"as_of": AS_OF})], cfg)
    assert result.ok, result.failures() or result.output[-4000:]
    return cfg


def _months(cfg: hqms_config.Config, month: str) -> dict[str, tuple]:
    return {org: rest for org, *rest in _query(cfg, f"""
        SELECT org_code, received, due, on_time, records FROM marts.submission_monthly
        WHERE month = DATE '{month}' ORDER BY org_code""")}


def test_each_file_answers_the_month_it_names(built: hqms_config.Config) -> None:
    october = _months(built, "2026-10-01")
    assert october == {H1: [True, True, True, 94], H2: [True, True, False, 131], H3: [True, True, True, 289],
                       H4: [False, True, False, 0], H5: [False, True, False, 0]}
    september = _months(built, "2026-09-01")
    assert september[H2] == [True, True, False, 40]  # the zip's other file: September, late
    assert september[H3] == [False, True, False, 0]  # 5 late visits of a file named October


def test_future_periods_add_no_month_and_november_is_not_yet_due(built: hqms_config.Config) -> None:
    assert _query(built, "SELECT max(month) FROM marts.submission_monthly") == [(date(2026, 11, 1),)]
    november = _months(built, "2026-11-01")
    assert november == {H1: [True, False, True, 90], H2: [False, False, None, 0], H3: [False, False, None, 0],
                        H4: [False, False, None, 0], H5: [False, False, None, 0]}
    rates = _query(built, """
        SELECT month, region_code, due, hospitals_reported, reporting_rate, on_time_rate
        FROM marts.submission_monthly_by_region
        WHERE region_level = 'province' AND month >= DATE '2026-10-01' ORDER BY month, region_code""")
    assert rates == [(date(2026, 10, 1), "44", True, 0, 0.0, 0.0), (date(2026, 10, 1), "51", True, 3, 1.0, 2 / 3),
                     (date(2026, 11, 1), "44", False, 0, None, None), (date(2026, 11, 1), "51", False, 1, None, None)]


def test_sichuan_2025_catch_up_deadline_applies_to_january_2025(built: hqms_config.Config) -> None:
    january = _query(built, """
        SELECT DISTINCT deadline_local, on_time = received FROM marts.submission_monthly
        WHERE month = DATE '2025-01-01'""")
    # received 10-17 February 2025: all on time, the catch-up ran until the end of 30 April
    assert january == [(datetime(2025, 5, 1), True)]


def test_summary_counts_only_periods_that_are_due(built: hqms_config.Config) -> None:
    (row,) = summary.collect(built, source="warehouse")["submission_monthly"]
    due_months = 22  # 2025-01 .. 2026-10
    assert (row["expected"], row["not_yet_due"]) == (due_months * len(HOSPITALS), len(HOSPITALS))
    assert row["received"] == _query(built, """
        SELECT count(*) FROM marts.submission_monthly WHERE received AND month < DATE '2026-11-01'""")[0][0]
    assert "5 not yet due" in summary.render(summary.collect(built, source="warehouse"))
