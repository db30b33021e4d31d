"""Incremental builds of the marts end where a full refresh would (audit of the marts,
findings 1, 4 and 6).

Each test copies a warehouse holding ``test_dbt_marts``' synthetic week (2025-01-06..12) after a
full build, writes what the ingest would write next, runs the scheduled incremental build
(``daily`` / ``monthly``) and compares the marts with the views / tables they come from:

* a late package for an earlier day extends a stream's range backwards: the days in between,
  which nobody reported, get their "not received" rows (submission_daily and its roll-up);
* a fever visit moves (re-sent with a corrected P7506) away from a date it was the only visit
  of: the date disappears from fever_daily and its roll-up (the delete+insert strategy kept it);
* ties in the chapter ranking follow chapter order: XXI before XXII, whose codes (U00) sort first.
"""
from __future__ import annotations

import random
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from hqms import config as hqms_config
from hqms.marts import dbt
from test_dbt_marts import HOSPITALS, Rows, _config, _differences, _meta, _query, insert, populate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> hqms_config.Config:
    """The synthetic warehouse after one full build (dbt unit tests are test_dbt_marts' job)."""
    cfg = _config(tmp_path_factory.mktemp("marts_incremental"))
    populate(cfg.warehouse_path)
    dbt.build(cfg=cfg)
    return cfg


def _copy(built: hqms_config.Config, tmp_path: Path) -> hqms_config.Config:
    """A home of its own holding a copy of the built warehouse (tests must not share state)."""
    cfg = _config(tmp_path / "home")
    cfg.warehouse_path.parent.mkdir(parents=True)
    shutil.copy(built.warehouse_path, cfg.warehouse_path)
    return cfg


def _write(cfg: hqms_config.Config, rows: Rows | None = None, *statements: tuple[str, list]) -> None:
    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        if rows:
            insert(con, rows)
        for sql, params in statements:
            con.execute(sql, params)
    finally:
        con.close()


#: submission_daily rolled up again here, to compare with submission_daily_by_region
SUBMISSION_ROLLUP = """
SELECT report_date, stream, level AS region_level,
       CASE level WHEN 'province' THEN province_code ELSE city_code END AS region_code,
       count(*) AS expected, count(*) FILTER (WHERE received) AS reported,
       count(*) FILTER (WHERE on_time) AS on_time
FROM marts.submission_daily, (VALUES ('province'), ('city')) AS l(level)
GROUP BY ALL"""


def test_submission_daily_fills_days_when_the_range_grows_backwards(built: hqms_config.Config, tmp_path: Path) -> None:
    cfg = _copy(built, tmp_path)
    late_org = HOSPITALS[4][0]
    now = datetime.now(timezone.utc)
    # A late flu package of one hospital for 2024-12-30, a week before the range (2025-01-06..12):
    # nobody sent anything for 2024-12-31 .. 2025-01-05.
    rows = Rows({})
    rows.add("ops.uploads", upload_id="late-flu", stream="flu", org_code=late_org, file_name="flu_20241230.zip",
             received_at=now, status="processed", record_count=3, conforming_count=3, processed_at=now)
    rows.add("ops.upload_files", upload_id="late-flu", file_name="flu_20241230.csv", dataset="flu", stream="flu",
             record_count=3, conforming_count=3, period_start=date(2024, 12, 24), period_end=date(2024, 12, 30))
    _write(cfg, rows)

    dbt.build("daily", cfg=cfg)

    columns = "report_date, org_code, stream, received, on_time, uploads, records, conforming_records"
    assert _differences(cfg, f"SELECT {columns} FROM marts.submission_daily", f"""
        SELECT {columns.replace('report_date', 'period AS report_date')}
        FROM intermediate.int_submission_status WHERE cadence = 'day'""") == []
    gap = _query(cfg, """SELECT org_code, received FROM marts.submission_daily
                         WHERE stream = 'flu' AND report_date = DATE '2025-01-02' ORDER BY org_code""")
    assert gap == [(org, False) for org, _, _ in HOSPITALS]
    by_region = """SELECT report_date, stream, region_level, region_code, hospitals_expected,
                           hospitals_reported, hospitals_on_time FROM marts.submission_daily_by_region"""
    assert _differences(cfg, by_region, SUBMISSION_ROLLUP) == []
    assert _query(cfg, """SELECT region_code, hospitals_expected, hospitals_reported
                          FROM marts.submission_daily_by_region
                          WHERE stream = 'flu' AND report_date = DATE '2025-01-02' AND region_level = 'province'
                          ORDER BY region_code""") == [("44", 2, 0), ("51", 3, 0)]


#: fever visits per (date, hospital) straight from dw.fever (latest version of each record)
FEVER_VISITS = """
SELECT CAST(visit_time AS DATE) AS report_date, _org_code AS org_code, count(*) AS visits
FROM (SELECT * FROM dw.fever QUALIFY row_number() OVER (PARTITION BY _org_code, _nk ORDER BY _received_at DESC) = 1)
GROUP BY ALL"""
FEVER_ROLLUP = """
SELECT report_date, level AS region_level,
       CASE level WHEN 'province' THEN province_code ELSE city_code END AS region_code,
       count(DISTINCT org_code) AS hospitals, sum(visits) AS visits
FROM marts.fever_daily, (VALUES ('province'), ('city')) AS l(level)
GROUP BY ALL"""


def test_fever_daily_drops_a_date_whose_only_visit_moved_away(built: hqms_config.Config, tmp_path: Path) -> None:
    cfg = _copy(built, tmp_path)
    org = HOSPITALS[3][0]
    alone, moved_to = date(2025, 1, 14), date(2025, 1, 13)  # no other fever visit on either day
    first = datetime.now(timezone.utc)
    rows = Rows({})
    rows.add("dw.fever", **_meta(random.Random(4), org, first, first), opd_visit_serial_pid="moving-visit",
             visit_time=datetime(2025, 1, 14, 10, 30), sex="1", birth_date_age_band="25-59", first_visit="1",
             referred="2", observation_stay="2")
    _write(cfg, rows)
    dbt.build("daily", cfg=cfg)
    before = _query(cfg, f"SELECT org_code, visits FROM marts.fever_daily WHERE report_date = DATE '{alone}'")
    assert before == [(org, 1)]

    # The re-send corrects P7506 to the day before: the merge replaces the row (same P7000) and
    # records the date it left, as hqms.ingest.merge does.
    resent = first + timedelta(seconds=1)
    _write(cfg, None,
           ("UPDATE dw.fever SET visit_time = visit_time - INTERVAL 1 DAY, _loaded_at = ?, _received_at = ? "
            "WHERE opd_visit_serial_pid = 'moving-visit'", [resent, resent]),
           ("INSERT INTO ops.moved_periods VALUES ('fever', ?, ?, ?)", [org, alone, resent]))
    dbt.build("daily", cfg=cfg)

    assert _query(cfg, f"SELECT report_date, org_code, visits FROM marts.fever_daily "
                       f"WHERE report_date IN (DATE '{alone}', DATE '{moved_to}')") == [(moved_to, org, 1)]
    assert _query(cfg, f"SELECT count(*) FROM marts.fever_daily_by_region WHERE report_date = DATE '{alone}'") == [(0,)]
    assert _differences(cfg, "SELECT report_date, org_code, visits FROM marts.fever_daily", FEVER_VISITS) == []
    assert _differences(cfg, """SELECT report_date, region_level, region_code, hospitals, visits
                                FROM marts.fever_daily_by_region""", FEVER_ROLLUP) == []


def test_dx_chapter_ties_follow_chapter_order(built: hqms_config.Config, tmp_path: Path) -> None:
    """The audit's H1 November: X 3 visits, then XI, XXI (Z00) and XXII (U07) 1 each, and one
    page without a diagnosis code ('unknown', always last among ties)."""
    cfg = _copy(built, tmp_path)
    org = HOSPITALS[0][0]
    now = datetime.now(timezone.utc)
    rng = random.Random(6)
    rows = Rows({})
    for n, dx in enumerate(["J06.900", "J20.900", "J18.900", "K29.700", "Z00.000", "U07.100", None]):
        rows.add("dw.mzsy", **_meta(rng, org, now, now), visit_card_no_pid=f"chapter-tie-{n}",
                 visit_time=datetime(2025, 3, 3 + n, 9), visit_type="2", revisit="2", iv_infusion="2",
                 chronic_special_disease="2", principal_dx_code=dx, total_cost=10.0, self_pay=1.0,
                 antibacterial_fee=0.0)
    _write(cfg, rows)

    dbt.build("monthly", cfg=cfg)

    ranks = _query(cfg, f"""SELECT dx_chapter, visits FROM marts.outpatient_monthly_dx_chapters
                            WHERE month = DATE '2025-03-01' AND org_code = '{org}' ORDER BY chapter_rank""")
    assert ranks == [("X", 3), ("XI", 1), ("XXI", 1), ("XXII", 1), ("unknown", 1)]
    top = _query(cfg, f"""SELECT top_dx_chapter_1, top_dx_chapter_2, top_dx_chapter_3 FROM marts.outpatient_monthly
                          WHERE month = DATE '2025-03-01' AND org_code = '{org}'""")
    assert top == [("X", "XI", "XXI")]
