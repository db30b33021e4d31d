"""The live system (``hqms up`` / ``status`` / ``down``) end to end, with Airflow's metadata on a
real PostgreSQL server and the LocalExecutor, as docker-compose runs it.

A zip submitted while the system runs is picked up by a *scheduled* ``hqms_ingest`` run, whose
Asset update triggers ``hqms_marts_daily``; both are seen through Airflow's REST API (v2, a JWT
from SimpleAuthManager's ``POST /auth/token``) and in a screenshot of the grid taken by headless
Chromium (kept in ``tests/artefacts/``). After ``hqms down`` no process of the home is left.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from conftest import generate_day, provision_hospitals
from hqms import airflow_env, config, doctor, live
from hqms.registry import Registry

ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
WAIT_S = 15 * 60  # a busy 2-core machine: catch-up builds of the marts queue in the one-slot pool


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _hqms(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return subprocess.run([str(Path(sys.executable).parent / "hqms"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


class Api:
    """Airflow's public REST API with a SimpleAuthManager token for the generated admin."""

    def __init__(self, cfg: config.Config) -> None:
        self.base = airflow_env.api_url(cfg)
        body = json.dumps({"username": airflow_env.ADMIN_USER,
                           "password": airflow_env.admin_password(cfg)}).encode()
        request = urllib.request.Request(f"{self.base}/auth/token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            self.token = json.load(response)["access_token"]

    def get(self, path: str) -> dict:
        request = urllib.request.Request(f"{self.base}{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=50")["dag_runs"]


def _wait(what: str, probe, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(5)
    raise AssertionError(f"timed out waiting for {what}")


def _screenshot(cfg: config.Config, token: str, out: Path) -> None:
    """The hqms_ingest grid as the data team sees it (headless Debian Chromium)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.add_cookies([{"name": "_token", "value": token, "url": airflow_env.api_url(cfg)}])
            page = context.new_page()
            page.goto(f"{airflow_env.api_url(cfg)}/dags/hqms_ingest", wait_until="networkidle")
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


@pytest.mark.slow
def test_up_scheduled_ingest_triggers_marts_and_down_leaves_no_process(
        hqms_home: Path, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQMS_AIRFLOW_PORT", str(_free_port()))
    monkeypatch.setenv("HQMS_WEB_PORT", str(_free_port()))
    monkeypatch.setenv("HQMS_AIRFLOW_LOG_PORT", str(_free_port()))
    monkeypatch.setenv("HQMS_AIRFLOW_DB_URL", pg_url)
    monkeypatch.setenv("HQMS_INGEST_INTERVAL_MINUTES", "1")
    cfg = config.load()
    day = generate_day(tmp_path / "gen", seed=5)
    seen: list[psutil.Process] = []
    try:
        started = _hqms("up")
        assert started.returncode == 0, started.stderr[-3000:]
        rows = {r["name"]: r for r in live.status(cfg)}
        airflow_parts = ("api-server", "scheduler", "dag-processor", "triggerer")
        assert all(rows[name]["healthy"] for name in ("s3", *airflow_parts)), rows
        shown = _hqms("status")
        assert shown.returncode == 0, shown.stdout
        again = _hqms("up")  # idempotent: nothing restarted
        assert again.returncode == 0, again.stderr[-3000:]
        assert {r["name"]: r["pid"] for r in live.status(cfg)} == {n: r["pid"] for n, r in rows.items()}
        assert "hqms down" in started.stdout and airflow_env.api_url(cfg) in started.stdout
        one_shot = _hqms("run")  # the scheduler does the work now; two drivers would race
        assert one_shot.returncode == 2 and "hqms down" in one_shot.stderr

        provision_hospitals(day["org"])
        submitted_at = time.time()
        done = _hqms("submit", str(day["zips"]["flu"]), "--org", day["org"], "--user", "tester")
        assert done.returncode == 0, done.stderr
        upload_id = done.stdout.split()[0]
        registry = Registry.from_config(cfg)
        _wait("the upload to be processed by the live scheduler",
              lambda: registry.get(upload_id)["status"] in ("processed", "partially_accepted"))

        api = Api(cfg)
        ingest = _wait("a successful scheduled hqms_ingest run", lambda: [
            r for r in api.runs("hqms_ingest") if r["run_type"] == "scheduled" and r["state"] == "success"
            and r["start_date"] and _epoch(r["start_date"]) >= submitted_at - 60])
        marts = _wait("hqms_marts_daily triggered by the ingest's Asset", lambda: [
            r for r in api.runs("hqms_marts_daily") if r["run_type"] == "asset_triggered"
            and r["state"] == "success"])
        assert marts and ingest
        # The doctor sees the scheduler's heartbeat and the recent ingest (it warns otherwise).
        assert doctor.check_scheduler(cfg).status == doctor.OK
        assert doctor.check_last_ingest(cfg).status == doctor.OK
        seen = live.processes(cfg)
        assert len(seen) > 4  # the services and the scheduler's LocalExecutor workers

        # Task logs are in the UI (the API reads the same files the UI shows).
        run_id = ingest[0]["dag_run_id"]
        logs = api.get(f"/api/v2/dags/hqms_ingest/dagRuns/{run_id}/taskInstances/claim_uploads/logs/1")
        assert "claim_uploads" in json.dumps(logs)

        ARTEFACTS.mkdir(exist_ok=True)
        shot = ARTEFACTS / "airflow-grid-live.png"
        _screenshot(cfg, api.token, shot)
        assert shot.stat().st_size > 20_000
    finally:
        seen = seen or live.processes(cfg)
        stopped = _hqms("down")
    assert stopped.returncode == 0, stopped.stderr
    assert not [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert live.processes(cfg) == []
    assert not _processes_of_home(hqms_home)
    assert all(not r["running"] for r in live.status(cfg))
    assert doctor.check_scheduler(cfg).status == doctor.WARN


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _processes_of_home(home: Path) -> list[psutil.Process]:
    """Any process (other than this test) whose environment names the home."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get("HQMS_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
def test_up_forgets_asset_triggers_queued_by_one_shot_runs(hqms_home: Path) -> None:
    """``hqms run`` (``dags test``) queues the marts DAGs on the Assets it updates but builds the
    marts itself; a scheduler started later must not build them again. The queue is Airflow's
    ``asset_dag_run_queue`` in the real migrated schema."""
    cfg = config.load()
    airflow_env.prepare(cfg)
    import sqlalchemy as sa

    engine = sa.create_engine(cfg.airflow_db_url)
    with engine.begin() as con:
        con.execute(sa.text("INSERT INTO asset_dag_run_queue (asset_id, target_dag_id, created_at) "
                            "VALUES (1, 'hqms_marts_daily', CURRENT_TIMESTAMP), "
                            "(2, 'hqms_marts_daily', CURRENT_TIMESTAMP)"))
    assert airflow_env.drop_queued_asset_triggers(cfg) == 2
    with engine.connect() as con:
        assert con.execute(sa.text("SELECT count(*) FROM asset_dag_run_queue")).scalar() == 0
    engine.dispose()
    text = airflow_env.cfg_path(cfg).read_text(encoding="utf-8")
    assert "load_examples = False" in text and f"dags_folder = {config.REPO_ROOT / 'dags'}" in text
    assert stat.S_IMODE(airflow_env.cfg_path(cfg).stat().st_mode) == 0o600  # it holds the secrets
