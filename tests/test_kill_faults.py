"""Process deaths (kill -9 of the ingest's process group, an upload that kills the process every
time) charge no innocent upload, are recognised by the next run at once, and leave the warehouse
exactly as a run without faults would (issue 16, item 1)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import clear_hqms_env, submit_plan
from hqms import config, embedded_s3
from hqms.cli import main as hqms
from hqms.registry import Registry

pytestmark = pytest.mark.slow

#: A real ingest run (plan, then process each batch) that stops dead at a chosen moment: it
#: writes the marker file and waits there to be killed (KILL_AT=after_claim|staging|validation|
#: merge), or kills itself whenever the upload POISON is staged.
CHILD = """
import os, signal, sys, time
from pathlib import Path
from hqms import quality
from hqms.ingest import process as process_mod, validate
from hqms.ingest.run import claim, process
from hqms.registry import Registry

moment, marker, poison = os.environ.get("KILL_AT"), os.environ.get("KILL_MARKER"), os.environ.get("POISON")

def stop(where):
    if where == moment:
        Path(marker).write_text(where)
        time.sleep(600)

def after(where, real):
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        stop(where)
        return result
    return wrapped

real_stage = validate.stage_uploads
def stage_uploads(con, zips, work):
    if any(key == poison for key, _, _ in zips):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_stage(con, zips, work)

validate.stage_uploads = after("staging", stage_uploads)
Registry.acquire = after("after_claim", Registry.acquire)
quality.run_tables = after("validation", quality.run_tables)
process_mod.merge_dataset = after("merge", process_mod.merge_dataset)
for batch in claim():
    try:
        process(batch)
    except process_mod.BatchIncomplete as exc:
        print(exc, file=sys.stderr)
"""


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    clear_hqms_env(monkeypatch)
    yield tmp_path


def _use_home(monkeypatch, home: Path) -> config.Config:
    monkeypatch.setenv("HQMS_HOME", str(home))
    return config.load()


def _generate(out: Path, hospitals: int) -> None:
    assert hqms(["generate", "--hospitals", str(hospitals), "--start", "2025-01-06", "--days", "2",
                 "--seed", "16", "--streams", "flu", "--out", str(out), "--quiet"]) == 0


def _child(**env: str) -> subprocess.Popen:
    """A run in its own process group (as Airflow's task runner or a systemd unit runs it)."""
    return subprocess.Popen([sys.executable, "-c", CHILD], env={**os.environ, **env},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run_killed_at(moment: str, marker: Path) -> None:
    """One run, SIGKILLed (its whole process group) once it reaches ``moment``."""
    marker.unlink(missing_ok=True)
    child = _child(KILL_AT=moment, KILL_MARKER=str(marker))
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert child.poll() is None, f"the run ended before {moment}: {child.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"the run never reached {moment}"
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()


def _run_clean() -> None:
    child = _child()
    _, err = child.communicate(timeout=900)
    assert child.returncode == 0, err.decode()[-3000:]


_VOLATILE = ("_loaded_at", "processed_at", "moved_at")


def _warehouse(path: Path) -> dict[str, list[tuple]]:
    """Every dw and ops table as sorted rows, comparable across two installations: upload ids
    (random per submit) replaced by the upload's sha256, load times and SM4-GCM ciphertexts
    (a random nonce each) left out."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_schema IN ('dw', 'ops') ORDER BY 1, 2").fetchall()
        snapshot = {}
        for schema, table in tables:
            names = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND "
                "table_name = ? ORDER BY ordinal_position", [schema, table]).fetchall()]
            cols = []
            for name in names:
                if name in _VOLATILE or name.endswith("_enc"):
                    continue
                if name in ("upload_id", "_upload_id"):
                    cols.append(f'(SELECT u.sha256 FROM ops.uploads u WHERE u.upload_id = t."{name}")')
                else:
                    cols.append(f't."{name}"')
            rows = con.execute(f'SELECT {", ".join(cols)} FROM {schema}."{table}" t').fetchall()
            snapshot[f"{schema}.{table}"] = sorted(rows, key=repr)
    return snapshot


def test_kill_9_at_every_moment_three_times_in_a_row_costs_no_upload_anything(clean_env, monkeypatch):
    gen = clean_env / "gen"
    _generate(gen, hospitals=3)

    # the reference: the same uploads, same keys, processed without a fault
    calm = _use_home(monkeypatch, clean_env / "calm")
    try:
        assert hqms(["keys", "init"]) == 0
        calm_ids = submit_plan(gen)
        _run_clean()
    finally:
        embedded_s3.stop(calm)
    expected = _warehouse(calm.warehouse_path)
    assert sum(len(rows) for name, rows in expected.items() if name.startswith("dw.")) > 0

    cfg = _use_home(monkeypatch, clean_env / "faults")
    shutil.copytree(calm.keys_dir, cfg.keys_dir)
    try:
        ids = submit_plan(gen)
        assert len(ids) == len(calm_ids) >= 6
        registry = Registry.from_config(cfg)
        marker = clean_env / "reached"
        # default stale timeout (2 h) and lease (5 min): every next run must see the death at once
        owed = dict.fromkeys(ids, 0)  # a death is owed by the upload alone in flight, if any
        in_flight_together = 0
        for moment in ("after_claim", "staging", "validation", "merge"):
            _run_killed_at(moment, marker)
            rows = registry.list_uploads()
            assert any(u["status"] == "processing" for u in rows), f"{moment}: the kill came too late"
            flying = [u["upload_id"] for u in rows if u["in_flight"]]
            if len(flying) == 1:
                owed[flying[0]] += 1
            in_flight_together += len(flying) > 1
        assert in_flight_together >= 2, "no kill hit a round of several uploads"
        _run_clean()
        rows = registry.list_uploads()
        assert {u["status"] for u in rows} == {"processed"}, [(u["upload_id"], u["status"]) for u in rows]
        # nobody paid for a death among several; at most the upload that ran alone did
        assert {u["upload_id"]: u["failures"] for u in rows} == owed
        assert max(owed.values()) < cfg.max_attempts
        assert _warehouse(cfg.warehouse_path) == expected
    finally:
        embedded_s3.stop(cfg)


def test_an_upload_that_kills_every_run_ends_failed_alone(clean_env, monkeypatch):
    gen = clean_env / "gen"
    _generate(gen, hospitals=2)
    cfg = _use_home(monkeypatch, clean_env / "home")
    monkeypatch.setenv("HQMS_MAX_ATTEMPTS", "2")
    try:
        assert hqms(["keys", "init"]) == 0
        ids = submit_plan(gen)
        poison = ids[1]
        registry = Registry.from_config(cfg)
        deaths = 0
        for _ in range(8):
            child = _child(POISON=poison)
            child.communicate(timeout=900)
            if child.returncode == 0 and not registry.pending():
                break
            assert child.returncode == -signal.SIGKILL
            deaths += 1
        else:
            pytest.fail("the runs never settled")
        states = {u["upload_id"]: u for u in registry.list_uploads()}
        assert (states[poison]["status"], states[poison]["failures"]) == ("failed", 2)
        assert "data team" in states[poison]["message_en"] and "终止" in states[poison]["message_zh"]
        assert all((u["status"], u["failures"]) == ("processed", 0)
                   for i, u in states.items() if i != poison), states
        # one death in the full round, then halves down to the poison alone, twice
        assert deaths >= 3
        landing = cfg.buckets["landing"]
        from hqms.objectstore import ObjectStore
        assert states[poison]["object_key"] in set(ObjectStore.from_config(cfg).list(landing))
    finally:
        embedded_s3.stop(cfg)
