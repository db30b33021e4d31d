"""Exactly once under the 7-day rolling re-send, re-uploads, and a kill -9 in the middle of ingest."""
from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from conftest import provision_plan, use_home

from hqms import config, embedded_s3
from hqms.cli import main as hqms
from hqms.workdir import runs_dir, sweep_work
from hqms.registry import TERMINAL, Registry

pytestmark = pytest.mark.slow

PROCESS_ALL = ("from hqms.ingest.run import claim, process\n"
               "for batch in claim():\n"
               "    process(batch)\n")
#: A run that stays alive in its run folder (made as process_batch makes it) until killed.
LIVE_RUN = ("import time\n"
            "from hqms import config\n"
            "from hqms.workdir import run_folder\n"
            "with run_folder(config.load(), 'live+0') as work:\n"
            "    (work / 'live.csv').write_text('plaintext of a live run')\n"
            "    time.sleep(600)\n")


def _flu_keys(gen: Path) -> set[tuple[str, str, str, str]]:
    """Distinct (org, P7501, P7502, P7506) over every flu_ file the hospitals sent."""
    keys = set()
    for path in gen.rglob("*.zip"):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.rsplit("/", 1)[-1].startswith("flu_"):
                    for rec in csv.DictReader(io.StringIO(zf.read(info).decode("gb18030"))):
                        keys.add((rec["P900"], rec["P7501"], rec["P7502"], rec["P7506"]))
    return keys


@pytest.fixture
def home(tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "home")
    yield tmp_path
    embedded_s3.stop(config.load())


def _submit_all(gen: Path) -> list[str]:
    from hqms.intake.submit import submit

    provision_plan(gen / "upload_plan.csv")
    ids = []
    with (gen / "upload_plan.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            res = submit(gen / row["zip"], row["org_code"], row["uploader"],
                         received_at=datetime.fromisoformat(row["planned_received_at"]))
            ids.append(res.upload_id)
    return ids


def _python(code: str, **extra: str) -> subprocess.Popen:
    env = {**os.environ, "HQMS_BATCH_MAX_UPLOADS": "3", **extra}
    return subprocess.Popen([sys.executable, "-c", code], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(found: Callable[[], list[Path]], child: subprocess.Popen, timeout: float = 300) -> list[Path]:
    """Poll until ``found()`` is not empty (returned), failing if ``child`` exits first."""
    deadline = time.monotonic() + timeout
    while not (paths := found()):
        assert child.poll() is None and time.monotonic() < deadline, "the child never got there"
        time.sleep(0.02)
    return paths


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_a_killed_runs_plaintext_is_swept_and_a_live_runs_is_not(home):
    """kill -9 while the upload's plaintext sits in its work folder; the upload is then reclaimed
    in a batch with another upload (another run id). That run must remove the dead run's folder,
    leave a live run's folder and whatever else lives in the work dir alone."""
    gen = home / "gen"
    assert hqms(["generate", "--hospitals", "2", "--start", "2025-01-06", "--days", "1", "--seed", "4",
                 "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    assert hqms(["keys", "init"]) == 0
    assert len(_submit_all(gen)) == 2
    cfg = config.load()

    def plaintext() -> list[Path]:
        return [p for p in cfg.work_dir.rglob("*") if p.suffix in (".zip", ".csv")]

    victim = _python(PROCESS_ALL, HQMS_BATCH_MAX_UPLOADS="1")  # its first run: <first id>+0
    left = _wait_for(plaintext, victim)
    _kill(victim)
    assert all(p.exists() for p in left), "the dead run left its plaintext behind"

    live = _python(LIVE_RUN)
    try:
        held = _wait_for(lambda: list(runs_dir(cfg).glob("live+0.*/live.csv")), live)
        others = [cfg.work_dir / "duckdb_tmp" / "spill.tmp", cfg.work_dir / "notes.zip"]  # not run folders
        for path in others:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not a run folder")
        # both uploads reclaimed in one batch: run id <first id>+1, not the dead run's
        assert _python(PROCESS_ALL, HQMS_STALE_CLAIM_SECONDS="0").wait(timeout=600) == 0
        assert {u["status"] for u in Registry.from_config().list_uploads()} <= set(TERMINAL)
        assert [p for p in plaintext() if p not in held + others] == [], "a dead run's plaintext survived"
        assert all(p.exists() for p in held + others), "a live run's folder or a non-run entry was swept"
    finally:
        _kill(live)
    assert sweep_work(cfg) == 1 and list(runs_dir(cfg).iterdir()) == []


def test_seven_day_resends_and_a_kill_9_leave_one_row_per_key(home):
    gen = home / "gen"
    assert hqms(["generate", "--hospitals", "2", "--start", "2025-01-06", "--days", "7", "--seed", "3",
                 "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    assert hqms(["keys", "init"]) == 0
    ids = _submit_all(gen)
    assert len(ids) >= 10

    # first attempt dies hard part-way through: right after its first batch finished
    registry = Registry.from_config()
    victim = _python(PROCESS_ALL, HQMS_BATCH_MAX_UPLOADS="2")
    deadline = time.monotonic() + 300
    while victim.poll() is None and time.monotonic() < deadline:
        if any(u["status"] in TERMINAL for u in registry.list_uploads()):
            break
        time.sleep(0.05)
    _kill(victim)
    # unfinished work left behind: uploads the dead run held (processing) or had yet to take (landed)
    assert any(u["status"] not in TERMINAL for u in registry.list_uploads()), "kill came too late to test"

    # the next run reclaims the dead claims (stale timeout 0 here) and completes everything
    # (rounds of one upload each: every round is its own staging database and transaction)
    done = _python(PROCESS_ALL, HQMS_STALE_CLAIM_SECONDS="0", HQMS_BATCH_MAX_BYTES="1")
    assert done.wait(timeout=900) == 0
    statuses = {u["upload_id"]: u["status"] for u in registry.list_uploads()}
    assert set(statuses) == set(ids) and all(s in TERMINAL for s in statuses.values())

    cfg = config.load()
    expected = _flu_keys(gen)
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT _nk) FROM dw.flu").fetchone()
        ops = con.execute("SELECT count(*), count(DISTINCT upload_id) FROM ops.uploads").fetchone()
    assert n == distinct == len(expected)
    assert ops == (len(ids), len(ids))

    # the same bytes again: recorded as duplicates, nothing processed twice
    again = _submit_all(gen)
    assert {registry.get(i)["status"] for i in again} == {"duplicate"}
    assert _python(PROCESS_ALL).wait(timeout=300) == 0
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dw.flu").fetchone()[0] == len(expected)
