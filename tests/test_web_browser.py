"""The hospital service in headless Chromium (Debian's, driven by Playwright), end to end on the
real pieces: generator → accounts → uploads → ingest → dbt marts → published snapshot → pages.

A hospital's data manager logs in (and must change the initial password), uploads a generated
zip with known defects, sees the record go from 等待处理 to 处理完成 once ingest has run, opens
the error list at the manifest's rows and downloads it as CSV (byte-identical to
``hqms errors --csv``). A city administrator sees only the rates of their city's hospitals. An
upload for an org without an account is refused and the submission marts do not change.

Screenshots of every page are kept in ``tests/artifacts/web/`` (gitignored; the path is printed).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from conftest import use_home
from web_helpers import NEW_PASSWORD, serve

from hqms import config, embedded_s3
from hqms.accounts import Accounts
from hqms.cli import main as hqms
from hqms.intake.submit import submit
from hqms.marts.publish import ADMIN_SNAPSHOT_NAME
from hqms.registry import Registry

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).parent / "artifacts" / "web"
CHROMIUM = "/usr/bin/chromium"
SUBMISSION = "SELECT * EXCLUDE (_built_at) FROM marts.submission_daily ORDER BY ALL"


def _build_marts() -> None:
    assert hqms(["marts", "build", "--select", "daily", "--quiet"]) == 0
    assert hqms(["marts", "publish", "--no-upload"]) == 0


def _ingest() -> None:
    from hqms.ingest.run import claim, process

    for batch in claim():
        process(batch)


def _submission_rows(cfg: config.Config) -> list[tuple]:
    con = duckdb.connect(str(cfg.marts_dir / ADMIN_SNAPSHOT_NAME), read_only=True)
    try:
        return con.execute(SUBMISSION).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh test installs it)")
    home = tmp_path_factory.mktemp("browser_home")
    gen = home / "gen"
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, home)
        cfg = config.load()
        try:
            assert hqms(["generate", "--hospitals", "6", "--start", "2025-01-06", "--days", "2", "--seed", "11",
                         "--errors", "0.05", "--streams", "flu,fever", "--out", str(gen), "--quiet"]) == 0
            assert hqms(["keys", "init"]) == 0
            assert hqms(["hospitals", "load", str(gen / "registry" / "hospitals.csv")]) == 0
            hospitals = list(csv.DictReader((gen / "registry" / "hospitals.csv").open(encoding="utf-8")))
            plan = list(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))
            defects = [json.loads(line) for line in (gen / "manifest.jsonl").open(encoding="utf-8")]
            first, unknown = hospitals[0], hospitals[-1]  # the last one never gets an account
            accounts = Accounts(cfg)
            for h in hospitals[:-1]:
                login = next(r["uploader"] for r in plan if r["org_code"] == h["org_code"])
                accounts.add(login, "hospital", org_code=h["org_code"], region_code=h["city_code"],
                             display_name=h["name"], password="Initial-pass-1")
            accounts.add("city_admin", "city_admin", region_code=first["city_code"], password="Initial-pass-1")
            # the browser's zip: the first hospital's fever upload with the most defects
            mine = [r for r in plan if r["org_code"] == first["org_code"] and r["stream"] == "fever"]
            browser_row = max(mine, key=lambda r: sum(d["zip"] == r["zip"] for d in defects))
            for r in plan:
                if r is browser_row or r["org_code"] == unknown["org_code"]:
                    continue
                submit(gen / r["zip"], r["org_code"], r["uploader"],
                       received_at=datetime.fromisoformat(r["planned_received_at"]), cfg=cfg)
            _ingest()
            _build_marts()
            if ARTIFACTS.exists():
                shutil.rmtree(ARTIFACTS)
            ARTIFACTS.mkdir(parents=True)
            print(f"\nscreenshots: {ARTIFACTS}")
            with serve(home) as (_proc, base):
                yield {"cfg": cfg, "base": base, "gen": gen, "plan": plan, "defects": defects,
                       "first": first, "unknown": unknown, "browser_row": browser_row, "hospitals": hospitals}
        finally:
            embedded_s3.stop(cfg)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _login(page, base: str, login: str, shot_prefix: str) -> None:
    page.goto(f"{base}/login")
    _shot(page, f"{shot_prefix}01-login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "Initial-pass-1")
    page.click("form[action='/login'] button[type=submit]")
    assert page.url.endswith("/password")  # the initial password must be changed first
    page.goto(f"{base}/downloads")
    assert page.url.endswith("/password")  # … before anything else
    _shot(page, f"{shot_prefix}02-forced-password-change")
    page.fill("input[name=old_password]", "Initial-pass-1")
    page.fill("input[name=new_password]", NEW_PASSWORD)
    page.fill("input[name=new_password2]", NEW_PASSWORD)
    page.click("form[action='/password'] button[type=submit]")


def test_hospital_uploads_sees_processing_and_reads_its_errors(world, browser, tmp_path: Path) -> None:
    base, row, cfg = world["base"], world["browser_row"], world["cfg"]
    page = browser.new_context(accept_downloads=True, locale="zh-CN").new_page()
    _login(page, base, row["uploader"], "hospital-")
    assert page.url.endswith("/upload")
    assert page.inner_text("h1") == "上传发热门诊病例"
    page.set_input_files("input[type=file]", str(world["gen"] / row["zip"]))
    page.click("form.upload button[type=submit]")
    page.wait_for_load_state()
    upload_id = re.search(r"upload=(\w+)", page.url).group(1)
    first_row = page.locator(f"tr[data-upload={upload_id}]")
    assert first_row.locator("td.status").inner_text() == "等待处理"
    _shot(page, "hospital-03-uploaded")

    _ingest()  # the pipeline processes it (what the Airflow DAG runs)
    page.click("text=刷新上传记录列表")
    status = page.locator(f"tr[data-upload={upload_id}] td.status").inner_text()
    assert status.startswith("处理完成"), status
    record = Registry.from_config(cfg).get(upload_id)
    cells = page.locator(f"tr[data-upload={upload_id}] td.num").all_inner_texts()
    assert cells == [str(record["record_count"]), str(record["conforming_count"])]
    assert record["record_count"] != record["conforming_count"]
    _shot(page, "hospital-04-processed")

    page.click(f"tr[data-upload={upload_id}] >> text=点击此处查看上传错误信息")
    assert page.inner_text("h1") == "上传错误信息"
    _shot(page, "hospital-05-errors")
    expected = {(d["file"], d["row"], d["column"]) for d in world["defects"] if d["zip"] == row["zip"]}
    stored = {(e["file_name"].rsplit("/", 1)[-1], e["row"], e["column"])
              for e in Registry.from_config(cfg).errors(upload_id) if e["severity"] == "error"}
    assert expected <= stored  # every injected defect is reported at its row and column
    # the page shows them: filter by the first defect's file and column, its row is listed
    file_name, row_no, column = sorted(expected)[0]
    shown_file = next(e["file_name"] for e in Registry.from_config(cfg).errors(upload_id)
                      if e["file_name"].endswith(file_name))
    page.select_option("select[name=file]", shown_file)
    page.select_option("select[name=column]", column)
    page.click("text=筛选")
    rows = {int(r) for r in page.locator("table.errors tbody tr").evaluate_all(
        "trs => trs.map(t => t.dataset.row).filter(Boolean)")}
    assert row_no in rows
    _shot(page, "hospital-06-errors-filtered")

    with page.expect_download() as info:
        page.click("text=下载错误列表（CSV）")
    downloaded = tmp_path / "web.csv"
    info.value.save_as(downloaded)
    cli = tmp_path / "cli.csv"
    assert hqms(["errors", upload_id, "--csv", str(cli)]) == 0
    assert downloaded.read_bytes() == cli.read_bytes()

    page.goto(f"{base}/downloads")
    _shot(page, "hospital-07-downloads")
    page.goto(f"{base}/admin")
    assert page.inner_text("h1") == "页面不存在"
    _shot(page, "hospital-08-not-found")


def test_city_administrator_sees_only_their_hospitals(world, browser) -> None:
    base, cfg, city = world["base"], world["cfg"], world["first"]["city_code"]
    page = browser.new_context(locale="zh-CN").new_page()
    _login(page, base, "city_admin", "admin-")
    assert page.url.endswith("/admin")
    _shot(page, "admin-03-rates")
    con = duckdb.connect(str(cfg.marts_dir / ADMIN_SNAPSHOT_NAME), read_only=True)
    mine = {(str(p), s): (e, r) for s, p, e, r in con.execute(
        "SELECT stream, report_date, count(*) FILTER (WHERE due), count(*) FILTER (WHERE due AND received) "
        "FROM marts.submission_daily WHERE city_code = ? GROUP BY ALL", [city]).fetchall()}
    everyone = con.execute("SELECT count(DISTINCT org_code) FROM marts.submission_daily").fetchone()[0]
    con.close()
    assert everyone == len(world["hospitals"]) and mine
    shown = page.locator("table.rates tbody tr").evaluate_all(
        "trs => trs.map(t => [t.dataset.period, t.dataset.stream, t.cells[2].innerText, t.cells[3].innerText])")
    assert {(p, s): (int(e), int(r)) for p, s, e, r in shown} == mine
    page.goto(f"{base}/upload")
    shown_orgs = set(page.locator("table.records tbody tr td:nth-child(5)").all_inner_texts())
    assert shown_orgs == {world["first"]["org_code"]}  # the record list: their hospitals' uploads only
    _shot(page, "admin-06-upload-records")
    page.goto(f"{base}/admin/hospitals")
    _shot(page, "admin-04-hospitals")
    orgs = set(page.locator("table.hospitals tbody tr").evaluate_all("trs => trs.map(t => t.dataset.org)"))
    assert orgs == {h["org_code"] for h in world["hospitals"] if h["city_code"] == city}
    page.click(f"text={world['first']['org_code']}")
    assert page.inner_text("h1").startswith("医疗机构")
    _shot(page, "admin-05-hospital-drilldown")
    other = next(h for h in world["hospitals"] if h["city_code"] != city)["org_code"]
    page.goto(f"{base}/admin/hospitals/{other}")
    assert page.inner_text("h1") == "页面不存在"


def test_an_org_without_account_is_refused_and_the_marts_do_not_change(world, tmp_path: Path) -> None:
    """The issue's story: one upload from an org not in the accounts extended every hospital's
    period. Its day here (2025-01-09) is after every other upload's: accepted, it would add a day
    to everyone's expected periods."""
    cfg, gen = world["cfg"], world["gen"]
    _ingest()
    _build_marts()
    before = _submission_rows(cfg)
    unknown = world["unknown"]["org_code"]
    source = next(r for r in world["plan"] if r["org_code"] == unknown and r["stream"] == "flu")
    moved = tmp_path / "flu_20250109.zip"
    with zipfile.ZipFile(gen / source["zip"]) as zin, zipfile.ZipFile(moved, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(re.sub(r"\d{8}", "20250109", info.filename), zin.read(info))
    refused = subprocess.run([str(Path(sys.executable).parent / "hqms"), "submit", str(moved), "--org", unknown,
                              "--user", source["uploader"]], capture_output=True, text=True, env=dict(os.environ))
    assert refused.returncode == 1 and "[unknown_org]" in refused.stderr and "开通账号" in refused.stderr
    [record] = [u for u in Registry.from_config(cfg).list_uploads(org=unknown)]
    assert (record["status"], record["stage"], record["object_key"]) == ("rejected", "intake", None)
    _ingest()
    _build_marts()
    assert _submission_rows(cfg) == before
