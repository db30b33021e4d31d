"""Epidemiological weeks and the weekly bulletin.

* Week numbering (Python and dbt's dim_date) against a table of known dates, year boundaries
  included, and the surveillance season boundary (week 14).
* The bulletin, built from a real dbt build + publication of the synthetic warehouse, rendered
  in headless Chromium: screenshots kept as artefacts ($HQMS_ARTIFACTS_DIR, default
  tests/artifacts/, git-ignored), its figures equal to the published marts', its PDF printed
  with the CJK font embedded (no boxes), and the administrators' variant carrying the heat map.
"""
from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from hqms import config as hqms_config
from hqms.bulletin import render, weeks
from hqms.errors import UserError
from hqms.marts import publish

import test_dbt_marts as synthetic
from test_published_aggregates import published  # noqa: F401 — the built and published warehouse

ARTIFACTS = Path(os.environ.get("HQMS_ARTIFACTS_DIR", Path(__file__).parent / "artifacts"))

#: (day, ISO week, surveillance season) — checked by hand against the ISO 8601 rule
KNOWN = [
    (date(2015, 12, 31), "2015-W53", "2015-2016"),
    (date(2016, 1, 3), "2015-W53", "2015-2016"),
    (date(2016, 1, 4), "2016-W01", "2015-2016"),
    (date(2019, 12, 30), "2020-W01", "2019-2020"),
    (date(2020, 12, 31), "2020-W53", "2020-2021"),
    (date(2021, 1, 3), "2020-W53", "2020-2021"),
    (date(2021, 1, 4), "2021-W01", "2020-2021"),
    (date(2024, 12, 29), "2024-W52", "2024-2025"),
    (date(2024, 12, 30), "2025-W01", "2024-2025"),
    (date(2025, 1, 1), "2025-W01", "2024-2025"),
    (date(2025, 1, 13), "2025-W03", "2024-2025"),
    (date(2025, 3, 30), "2025-W13", "2024-2025"),  # Sunday: the season's last day
    (date(2025, 3, 31), "2025-W14", "2025-2026"),  # Monday: a new season
    (date(2026, 1, 1), "2026-W01", "2025-2026"),
    (date(2027, 1, 1), "2026-W53", "2026-2027"),
    (date(2027, 1, 4), "2027-W01", "2026-2027"),
]


@pytest.mark.parametrize(("day", "label", "season"), KNOWN)
def test_epi_week_numbering(day: date, label: str, season: str) -> None:
    week = weeks.week_of(day)
    assert (week.label, week.season) == (label, season)
    assert week.start <= day <= week.end and week.start.isoweekday() == 1
    assert weeks.parse_week(label) == week


def test_week_labels_are_checked() -> None:
    assert weeks.parse_week("2025w3") == weeks.parse_week("2025-W03")
    for bad in ("2021-W53", "2025-W00", "2025-13", "W03"):
        with pytest.raises(UserError, match="week"):
            weeks.parse_week(bad)


def test_the_bulletin_week_is_the_newest_whose_reports_are_all_due() -> None:
    # Sunday 2025-01-19 closes W03; its packages are due by the end of Monday 2025-01-20
    assert weeks.last_closed_week(date(2025, 1, 20) - timedelta(days=1)).label == "2025-W02"
    assert weeks.last_closed_week(date(2025, 1, 21) - timedelta(days=1)).label == "2025-W03"


@pytest.mark.slow
def test_dim_date_agrees_with_the_python_rule(published: hqms_config.Config) -> None:
    rows = synthetic._query(published, "SELECT date_day, week_label, season, week_start FROM marts.dim_date")
    assert len(rows) > 7000
    for day, label, season, start in rows:
        week = weeks.week_of(day)
        assert (label, season, start) == (week.label, week.season, week.start), day
    known = {d: (w, s) for d, w, s in KNOWN}
    got = synthetic._query(published, "SELECT date_day, week_label, season FROM marts.dim_date WHERE date_day IN ("
                           + ", ".join(f"DATE '{d}'" for d in known) + ")")
    assert {d: (w, s) for d, w, s in got} == known
    compare = dict((r[0], r[1:]) for r in synthetic._query(
        published, "SELECT week_label, previous_week, same_week_1_season_ago FROM marts.dim_epi_week"))
    assert compare["2021-W01"] == ("2020-W53", "2020-W01")
    assert compare["2026-W53"] == ("2026-W52", "2025-W52")  # 2025 has no week 53


def _screenshot(html: Path, png: Path) -> dict:
    """Open the page in headless Chromium, keep a full-page screenshot, return its figures JSON."""
    from playwright.sync_api import sync_playwright

    png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(hqms_config.load().chromium_path))
        try:
            page = browser.new_page(viewport={"width": 820, "height": 1000})
            page.goto(html.resolve().as_uri())
            page.screenshot(path=str(png), full_page=True)
            images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
            shown = {row.get_attribute("data-key"): row.query_selector(".value").inner_text()
                     for row in page.query_selector_all("#headlines tr[data-key]")}
            data = json.loads(page.inner_text("#figures"))
        finally:
            browser.close()
    assert images and all(images), "a chart failed to load"
    return {"figures": data, "shown": shown}


@pytest.mark.slow
def test_bulletin_renders_and_its_figures_equal_the_marts(published: hqms_config.Config) -> None:
    week = weeks.parse_week("2025-W02")  # the synthetic week, 2025-01-06 … 2025-01-12
    public = render.build(week, published, upload=False, out_dir=ARTIFACTS / "bulletin")
    admin = render.build(week, published, admin=True, upload=False, out_dir=ARTIFACTS / "bulletin")
    seen = _screenshot(public.html, ARTIFACTS / "bulletin" / "bulletin-2025-W02.png")
    seen_admin = _screenshot(admin.html, ARTIFACTS / "bulletin" / "bulletin-admin-2025-W02.png")

    snapshot = duckdb.connect(str(published.marts_dir / publish.SNAPSHOT_NAME), read_only=True)
    try:
        def country(table: str, column: str, label: str):
            row = snapshot.execute(f"SELECT {column} FROM marts.{table} WHERE period_type = 'week' "
                                   "AND period_label = ? AND region_level = 'country'", [label]).fetchone()
            return row and row[0]

        headlines = {h["key"]: h for h in seen["figures"]["headlines"]}
        cases = country("agg_flu", "cases", "2025-W02")
        assert cases and headlines["cases"]["value"] == cases
        assert seen["shown"]["cases"] == f"{cases:,}"
        assert headlines["fever_visits"]["value"] == country("agg_fever", "visits", "2025-W02")
        assert headlines["positivity"]["value"] == pytest.approx(country("agg_fever", "positivity", "2025-W02"))
        assert seen["shown"]["positivity"] == f"{100 * country('agg_fever', 'positivity', '2025-W02'):.1f}%"
        assert headlines["cases"]["previous"] is None and headlines["cases"]["previous_reported"] is False
        ages = {a["column"]: a["cases"] for a in seen["figures"]["ages"]}
        assert ages == {c: country("agg_flu", c, "2025-W02") for c in ages}
        south = [c for c in seen["figures"]["curves"] if c["region_code"] == "south"]
        assert [c["cases"] for c in south] == [snapshot.execute(
            "SELECT cases FROM marts.agg_flu WHERE period_type = 'week' AND region_code = 'south'").fetchone()[0]]
        reporting = seen["figures"]["reporting"]["flu"]
        assert reporting["reporting_rate"] == pytest.approx(snapshot.execute(
            "SELECT reporting_rate FROM marts.agg_reporting WHERE stream = 'flu' AND period_type = 'week' "
            "AND region_level = 'country'").fetchone()[0])
    finally:
        snapshot.close()
    assert seen["figures"]["heatmap"] == []  # hospital-level: only in the administrators' variant
    heat = seen_admin["figures"]["heatmap"]
    exact = synthetic._query(published, "SELECT count(*) FROM marts.submission_daily WHERE report_date "
                             "BETWEEN DATE '2025-01-06' AND DATE '2025-01-12'")[0][0]
    assert len(heat) == exact > 0 and {h["status"] for h in heat} <= {"按时", "迟报", "未报", "未到期"}
    for pdf in (public.pdf, admin.pdf):
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and b"NotoSansCJK" in data  # the CJK font is embedded, not boxes


def test_a_missing_or_old_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    from hqms.bulletin.figures import collect

    week = weeks.parse_week("2025-W03")
    with pytest.raises(UserError, match="no published snapshot"):
        collect(tmp_path / "absent.duckdb", week)
    old = tmp_path / "old.duckdb"  # a snapshot published before the aggregates existed
    con = duckdb.connect(str(old))
    con.execute("CREATE SCHEMA marts; CREATE TABLE marts.flu_daily (cases BIGINT)")
    con.close()
    with pytest.raises(UserError, match="agg_fever, agg_flu, agg_reporting, dim_epi_week.*hqms marts publish"):
        collect(old, week)


@pytest.mark.slow
def test_the_dag_task_builds_a_closed_week_once(published: hqms_config.Config, shared_s3_env,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """build_due (the marts DAG's bulletin task) on Tuesday 2025-01-14: W02's reports are all due."""
    monkeypatch.setenv("HQMS_WAREHOUSE", str(published.warehouse_path))
    cfg = hqms_config.load()
    publish.publish(cfg)
    assert render.build_due(cfg, today=date(2025, 1, 13)) == []  # Monday: W02 not yet due, W01 empty
    built = render.build_due(cfg, today=date(2025, 1, 14))
    assert [(b.week, b.variant) for b in built] == [("2025-W02", "public"), ("2025-W02", "admin")]
    keys = set(shared_s3_env.list(cfg.buckets["marts"], "bulletin/")) | set(
        shared_s3_env.list(cfg.buckets["marts"], "admin/"))
    assert keys == {"bulletin/2025-W02/bulletin.html", "bulletin/2025-W02/bulletin.pdf",
                    "admin/bulletin/2025-W02/bulletin-admin.html", "admin/bulletin/2025-W02/bulletin-admin.pdf"}
    assert render.build_due(cfg, today=date(2025, 1, 15)) == []  # once


@pytest.mark.slow
def test_the_admin_variant_builds_while_a_writer_holds_the_warehouse(published: hqms_config.Config,
                                                                     tmp_path: Path) -> None:
    """An ingest (another process) holding DuckDB's write lock does not stop the administrators'
    variant: it reads the administrators' snapshot, never the live warehouse."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
         "con.execute('BEGIN; CREATE TABLE IF NOT EXISTS main.lock_probe (x INT)'); print('held', flush=True); "
         "time.sleep(120)", str(published.warehouse_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException):  # the situation: the warehouse file is locked
            duckdb.connect(str(published.warehouse_path), read_only=True).close()
        admin = render.build(weeks.parse_week("2025-W02"), published, admin=True, upload=False, pdf=False,
                             out_dir=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert admin.variant == "admin" and "医院上报及时性" in admin.html.read_text(encoding="utf-8")
