"""A DuckLake warehouse (PostgreSQL catalog from pgserver, Parquet in the embedded S3) written by
several ingest workers at once: the result equals one worker's, also when a worker is killed
(kill -9) inside its merge transaction and the next run completes its uploads."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import provision_plan
from hqms import config, embedded_s3, warehouse_attach
from hqms.cli import main as hqms
from hqms.registry import TERMINAL, Registry

pytestmark = pytest.mark.slow

CLAIM = ("import json, sys\nfrom hqms.ingest.run import claim\n"
         "json.dump(claim(), open(sys.argv[1], 'w'))\n")
PROCESS = ("import json, sys\nfrom hqms.ingest.run import process\n"
           "for batch in json.load(open(sys.argv[1])):\n    process(batch)\n")
#: A worker that stops inside its merge transaction — every dw and ops statement done, COMMIT
#: not yet — says so with a marker file and waits to be killed.
STOPS_IN_MERGE = ("import json, sys, time\nfrom pathlib import Path\nimport hqms.ingest.process as p\n"
                  "real = p.record_ops\n"
                  "def record_ops(con, records):\n"
                  "    real(con, records)\n"
                  "    Path(sys.argv[2]).touch()\n"
                  "    time.sleep(600)\n"
                  "p.record_ops = record_ops\n"
                  "from hqms.ingest.run import process\n"
                  "for batch in json.load(open(sys.argv[1])):\n    process(batch)\n")
PROCESS_ALL = "from hqms.ingest.run import claim, process\nfor b in claim():\n    process(b)\n"
#: A worker that keeps its merge transaction open — every dw and ops statement done — until
#: the test lets it commit (file ``<marker>.go``), so another worker's merge overlaps it.
HOLDS_ITS_MERGE = ("import json, sys, time\nfrom pathlib import Path\nimport hqms.ingest.process as p\n"
                   "real = p.record_ops\n"
                   "def record_ops(con, records):\n"
                   "    real(con, records)\n"
                   "    Path(sys.argv[2]).touch()\n"
                   "    go = Path(sys.argv[2] + '.go')\n"
                   "    while not go.exists():\n"
                   "        time.sleep(0.05)\n"
                   "p.record_ops = record_ops\n"
                   "from hqms.ingest.run import process\n"
                   "for batch in json.load(open(sys.argv[1])):\n    process(batch)\n")


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory):
    """A real PostgreSQL server for the lakes' catalogs (one database per lake)."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(generated uploads, a keys folder every run shares): two hospitals' week of flu uploads
    with the 7-day re-send (so later uploads replace earlier ones' records) and fever packages."""
    root = tmp_path_factory.mktemp("lake_uploads")
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("HQMS_")]:
            mp.delenv(name)
        mp.setenv("HQMS_HOME", str(root / "keyhome"))
        mp.setenv("HQMS_KEYS_DIR", str(root / "keys"))
        assert hqms(["generate", "--hospitals", "2", "--start", "2025-01-06", "--days", "5", "--seed", "3",
                     "--streams", "flu,fever", "--out", str(root / "gen"), "--quiet"]) == 0
        assert hqms(["keys", "init"]) == 0
    return root / "gen", root / "keys"


class Lake:
    """One fresh home (embedded S3, registry) on a fresh lake; same uploads and keys every time."""

    def __init__(self, root: Path, pg, uploads: tuple[Path, Path], name: str) -> None:
        self.root, (self.gen, keys) = root, uploads
        pg.psql(f"CREATE DATABASE {name};")
        socket = pg.get_postmaster_info().socket_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HQMS_")}
        self.env.update(HQMS_HOME=str(root / "home"), HQMS_KEYS_DIR=str(keys),
                        HQMS_WAREHOUSE=f"ducklake:postgres:dbname={name} host={socket} user=postgres",
                        HQMS_WAREHOUSE_DATA_PATH=f"s3://hqms-lake/{name}/")

    def __enter__(self) -> Lake:
        self._old = {k: os.environ.get(k) for k in self.env if k.startswith("HQMS_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("HQMS_")})
        return self

    def __exit__(self, *exc) -> None:
        embedded_s3.stop(config.load())
        for k, v in self._old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v

    def submit_all(self) -> list[str]:
        from hqms.intake.submit import submit

        provision_plan(self.gen / "upload_plan.csv")
        with (self.gen / "upload_plan.csv").open(encoding="utf-8") as fh:
            return [submit(self.gen / r["zip"], r["org_code"], r["uploader"],
                           received_at=datetime.fromisoformat(r["planned_received_at"])).upload_id
                    for r in csv.DictReader(fh)]

    def child(self, code: str, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, *args], env={**self.env, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def claim(self, batches: int, n: int) -> list[list[str]]:
        out = self.root / "batches.json"
        size = str(math.ceil(n / batches))
        assert self.child(CLAIM, str(out), HQMS_BATCH_MAX_UPLOADS=size).wait(timeout=120) == 0
        return json.loads(out.read_text())

    def worker(self, batches: list[list[str]], name: str, code: str = PROCESS) -> subprocess.Popen:
        share = self.root / f"{name}.json"
        share.write_text(json.dumps(batches))
        return self.child(code, str(share), str(self.root / f"{name}.in_merge"))

    def two_workers(self, held_code: str) -> tuple[subprocess.Popen, subprocess.Popen, list[str], list[str]]:
        """Submit everything, claim it in an older and a newer half, start the newer half's
        worker running ``held_code`` and the older half's plainly; return once the first is
        inside its merge transaction: (held worker, other worker, older ids, newer ids)."""
        older, newer = self.claim(2, len(self.submit_all()))
        held = self.worker([newer], "held", held_code)
        other = self.worker([older], "other")
        deadline = time.monotonic() + 600
        while not (self.root / "held.in_merge").exists():
            assert held.poll() is None and time.monotonic() < deadline, "the worker never reached its merge"
            time.sleep(0.05)
        return held, other, older, newer

    def result(self) -> dict[str, list[tuple]]:
        """Every dw row and ops record, upload ids replaced by the upload's file name (ids differ
        between homes) and without what differs by nature: load times and the SM4-GCM
        ciphertext (a fresh nonce each time)."""
        statuses = {u["status"] for u in Registry.from_config().list_uploads()}
        assert statuses <= set(TERMINAL), statuses
        con = warehouse_attach.connect(config.load(), read_only=True)
        try:
            out = {}
            for table in ("flu", "fever", "drug", "lab", "examine"):
                cols = [c for (c,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'warehouse' "
                    "AND table_schema = 'dw' AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()
                        if c not in ("_upload_id", "_loaded_at") and not c.endswith("_enc")]
                out[table] = con.execute(
                    f"SELECT u.file_name, {', '.join(f't.{c}' for c in cols)} FROM dw.{table} t "
                    "JOIN ops.uploads u ON u.upload_id = t._upload_id ORDER BY ALL").fetchall()
            out["uploads"] = con.execute(
                "SELECT * EXCLUDE (upload_id, processed_at) FROM ops.uploads ORDER BY ALL").fetchall()
            for table in ("upload_files", "upload_errors"):
                out[table] = con.execute(f"SELECT u.file_name, t.* EXCLUDE (upload_id) FROM ops.{table} t "
                                         "JOIN ops.uploads u USING (upload_id) ORDER BY ALL").fetchall()
            keys = con.execute("SELECT count(*), count(DISTINCT _nk) FROM dw.flu").fetchone()
            assert keys[0] == keys[1], "a natural key is in the warehouse twice"
            return out
        finally:
            con.close()


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, pg, uploads) -> dict[str, list[tuple]]:
    """One worker, every upload in claim order: what concurrent runs must equal."""
    with Lake(tmp_path_factory.mktemp("serial"), pg, uploads, "lake_serial") as lake:
        ids = lake.submit_all()
        assert lake.child(PROCESS_ALL).wait(timeout=900) == 0
        result = lake.result()
    assert len(result["uploads"]) == len(ids) >= 10
    assert result["flu"] and result["fever"]
    return result


def _waiting_for_lock(pg, database: str) -> bool:
    """Whether a session of ``database`` waits for an advisory lock (the merge lock)."""
    out = pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                  f"WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = '{database}';")
    return int(out.split("\n")[2].strip()) > 0


def test_two_workers_at_once_equal_one(tmp_path: Path, pg, uploads, serial) -> None:
    """The newer half of the week sits in its open merge transaction while the older half's
    worker merges the same natural keys: the second merge must wait for the first (on a
    snapshot of its own it would insert its older versions beside the newer ones)."""
    with Lake(tmp_path, pg, uploads, "lake_two") as lake:
        holder, other, older, newer = lake.two_workers(HOLDS_ITS_MERGE)
        deadline = time.monotonic() + 600
        while other.poll() is None and not _waiting_for_lock(pg, "lake_two"):
            assert time.monotonic() < deadline, "the other worker neither merged nor waited"
            time.sleep(0.1)
        (tmp_path / "held.in_merge.go").touch()
        assert [holder.wait(timeout=900), other.wait(timeout=900)] == [0, 0]
        registry = Registry.from_config()
        assert {registry.get(i)["status"] for i in older + newer} <= set(TERMINAL)
        assert lake.result() == serial


def test_a_worker_killed_in_its_merge_is_completed_by_the_next_run(tmp_path: Path, pg, uploads,
                                                                    serial) -> None:
    with Lake(tmp_path, pg, uploads, "lake_kill") as lake:
        victim, other, _, second = lake.two_workers(STOPS_IN_MERGE)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # the dead worker's merge lock went with its PostgreSQL session: the other one finishes
        assert other.wait(timeout=900) == 0
        registry = Registry.from_config()
        assert {registry.get(i)["status"] for i in second} == {"processing"}
        # the next run reclaims the dead claims (stale timeout 0 here) and completes them
        assert lake.child(PROCESS_ALL, HQMS_STALE_CLAIM_SECONDS="0").wait(timeout=900) == 0
        assert lake.result() == serial


def test_a_missing_catalog_database_is_a_clear_error_without_the_password(tmp_path: Path, pg,
                                                                          monkeypatch) -> None:
    for name in [k for k in os.environ if k.startswith("HQMS_")]:
        monkeypatch.delenv(name)
    socket = pg.get_postmaster_info().socket_dir
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HQMS_WAREHOUSE", f"ducklake:postgres:dbname=no_such_lake host={socket} user=postgres "
                                         "password=not-for-logs")
    monkeypatch.setenv("HQMS_WAREHOUSE_DATA_PATH", str(tmp_path / "lake"))
    for read_only in (True, False):
        with pytest.raises(warehouse_attach.WarehouseUnavailable) as caught:
            warehouse_attach.connect(config.load(), read_only=read_only)
        assert "DuckLake (catalog no_such_lake" in str(caught.value) and "does not exist" in str(caught.value)
        assert "not-for-logs" not in str(caught.value)
