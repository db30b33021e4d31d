"""A DuckLake warehouse (PostgreSQL catalog from pgserver, Parquet in the embedded S3) written by
several ingest workers at once: the result equals one worker's, also when a worker is killed
(kill -9) inside its merge transaction and the next run completes its uploads."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from conftest import (WORKER_HOLDS_ITS_MERGE, WORKER_PROCESS_ALL, WORKER_STOPS_IN_MERGE, IngestHome, use_home)
from hqms import config, warehouse_attach
from hqms.registry import TERMINAL, Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory):
    """A real PostgreSQL server for the lakes' catalogs (one database per lake)."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    yield server
    server.cleanup()


def lake_home(root: Path, pg, uploads: tuple[Path, Path], name: str) -> IngestHome:
    """A fresh home on a fresh lake (its own catalog database, Parquet in the embedded S3)."""
    pg.psql(f"CREATE DATABASE {name};")
    socket = pg.get_postmaster_info().socket_dir
    return IngestHome(root, uploads, HQMS_WAREHOUSE=f"ducklake:postgres:dbname={name} host={socket} user=postgres",
                      HQMS_WAREHOUSE_DATA_PATH=f"s3://hqms-lake/{name}/")


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, pg, resend_week) -> dict[str, list[tuple]]:
    """One worker, every upload in claim order: what concurrent runs must equal."""
    with lake_home(tmp_path_factory.mktemp("serial"), pg, resend_week, "lake_serial") as lake:
        return lake.serial()


def _waiting_for_lock(pg, database: str) -> bool:
    """Whether a session of ``database`` waits for an advisory lock (the merge lock)."""
    out = pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                  f"WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = '{database}';")
    return int(out.split("\n")[2].strip()) > 0


def test_two_workers_at_once_equal_one(tmp_path: Path, pg, resend_week, serial) -> None:
    """The newer half of the week sits in its open merge transaction while the older half's
    worker merges the same natural keys: the second merge must wait for the first (on a
    snapshot of its own it would insert its older versions beside the newer ones)."""
    with lake_home(tmp_path, pg, resend_week, "lake_two") as lake:
        holder, other, older, newer = lake.two_workers(WORKER_HOLDS_ITS_MERGE)
        deadline = time.monotonic() + 600
        while other.poll() is None and not _waiting_for_lock(pg, "lake_two"):
            assert time.monotonic() < deadline, "the other worker neither merged nor waited"
            time.sleep(0.1)
        (tmp_path / "held.in_merge.go").touch()
        assert [holder.wait(timeout=900), other.wait(timeout=900)] == [0, 0]
        registry = Registry.from_config()
        assert {registry.get(i)["status"] for i in older + newer} <= set(TERMINAL)
        assert lake.result() == serial


def test_a_worker_killed_in_its_merge_is_completed_by_the_next_run(tmp_path: Path, pg, resend_week,
                                                                    serial) -> None:
    with lake_home(tmp_path, pg, resend_week, "lake_kill") as lake:
        victim, other, _, second = lake.two_workers(WORKER_STOPS_IN_MERGE)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # the dead worker's merge lock went with its PostgreSQL session: the other one finishes
        assert other.wait(timeout=900) == 0
        registry = Registry.from_config()
        assert {registry.get(i)["status"] for i in second} == {"processing"}
        # the next run reclaims the dead claims (stale timeout 0 here) and completes them
        assert lake.child(WORKER_PROCESS_ALL, HQMS_STALE_CLAIM_SECONDS="0").wait(timeout=900) == 0
        assert lake.result() == serial


def test_a_missing_catalog_database_is_a_clear_error_without_the_password(tmp_path: Path, pg,
                                                                          monkeypatch) -> None:
    use_home(monkeypatch, tmp_path / "home")
    socket = pg.get_postmaster_info().socket_dir
    monkeypatch.setenv("HQMS_WAREHOUSE", f"ducklake:postgres:dbname=no_such_lake host={socket} user=postgres "
                                         "password=not-for-logs")
    monkeypatch.setenv("HQMS_WAREHOUSE_DATA_PATH", str(tmp_path / "lake"))
    for read_only in (True, False):
        with pytest.raises(warehouse_attach.WarehouseUnavailable) as caught:
            warehouse_attach.connect(config.load(), read_only=read_only)
        assert "DuckLake (catalog no_such_lake" in str(caught.value) and "does not exist" in str(caught.value)
        assert "not-for-logs" not in str(caught.value)
