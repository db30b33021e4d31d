"""The warehouse write lock on a DuckDB file: only the merge holds the warehouse.

Two ingest batches in two processes on one DuckDB file (real embedded S3): the second stages,
validates and computes its keyed crypto while the first sits inside its merge, then waits for
the lock (seen in /proc/locks) and merges after it; the result equals one worker's. A holder
killed with SIGKILL inside its merge frees the lock at once (the kernel drops the flock), and
the next run completes the dead one's uploads without waiting for a stale timeout."""
from __future__ import annotations

import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import WORKER_HOLDS_ITS_MERGE, WORKER_PROCESS_ALL, WORKER_STOPS_IN_MERGE, IngestHome
from hqms import config, warehouse_attach
from hqms.registry import TERMINAL, Registry

HOLDS_THE_LOCK = ("import sys, time\nfrom pathlib import Path\nfrom hqms import config, warehouse_attach\n"
                  "with warehouse_attach.write_lock(config.load(), 'a test holder'):\n"
                  "    Path(sys.argv[1]).touch()\n"
                  "    time.sleep(600)\n")


def _blocked_on_flock(pid: int) -> bool:
    """Whether ``pid`` waits for an flock (the kernel lists waiters as ``->`` in /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK" and fields[5] == str(pid):
            return True
    return False


def _wait_for(predicate, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_writer_waits_for_the_holder_and_a_killed_holder_frees_the_lock(hqms_home: Path, tmp_path: Path,
                                                                           caplog) -> None:
    cfg = config.load()
    marker = tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", HOLDS_THE_LOCK, str(marker)])
    try:
        _wait_for(marker.exists, "the holder never took the lock", 60)
        assert stat.S_IMODE(warehouse_attach.lock_path(cfg).stat().st_mode) == 0o600
        got = threading.Event()

        def writer() -> None:
            with warehouse_attach.write_lock(cfg, "the test's writer"):
                got.set()

        caplog.set_level("INFO", logger="hqms.warehouse_attach")
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(1.0)
        assert not got.is_set(), "a second writer got the lock while the first held it"
        assert "the test's writer" in caplog.text and "a test holder" in caplog.text
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        thread.join(timeout=30)
        assert got.is_set(), "the lock of a killed holder was not freed"
    finally:
        holder.kill()
        holder.wait()


def test_readers_share_the_lock_and_a_writer_reenters_its_own(hqms_home: Path) -> None:
    cfg = config.load()
    with warehouse_attach.read_lock(cfg), warehouse_attach.read_lock(cfg):
        pass  # two readers at once (two file descriptions in one process, as two processes)
    with warehouse_attach.write_lock(cfg):
        con = warehouse_attach.connect(cfg)  # re-enters: does not wait for itself
        con.close()
        with warehouse_attach.read_lock(cfg):
            pass


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, resend_week) -> dict[str, list[tuple]]:
    """One worker, every upload in claim order, on a DuckDB file: what concurrent runs must equal."""
    with IngestHome(tmp_path_factory.mktemp("serial"), resend_week) as home:
        return home.serial()


def _second_waits_for_the_first(home: IngestHome, held_code: str):
    """The newer half's batch inside its merge (``held_code``); the older half's batch started
    only then fetches, vaults, stages, validates and computes its keyed crypto while the first
    holds the warehouse, and then waits for the write lock, its uploads not merged."""
    first, second, older, newer = home.two_workers(held_code, other_after_merge=True)
    _wait_for(lambda: _blocked_on_flock(second.pid) or second.poll() is not None,
              "the second batch never reached the write lock")
    assert second.poll() is None, "the second batch merged while the first held the warehouse"
    assert {Registry.from_config().get(i)["status"] for i in older} == {"processing"}
    return first, second, older, newer


@pytest.mark.slow
def test_the_second_batch_stages_while_the_first_merges_then_merges_after_it(tmp_path: Path, resend_week,
                                                                             serial) -> None:
    with IngestHome(tmp_path, resend_week) as home:
        holder, other, older, newer = _second_waits_for_the_first(home, WORKER_HOLDS_ITS_MERGE)
        registry = Registry.from_config()
        (tmp_path / "held.in_merge.go").touch()
        assert [holder.wait(timeout=900), other.wait(timeout=900)] == [0, 0]
        assert {registry.get(i)["status"] for i in older + newer} <= set(TERMINAL)
        assert home.result() == serial


@pytest.mark.slow
def test_a_batch_killed_in_its_merge_frees_the_warehouse_and_is_completed_next(tmp_path: Path, resend_week,
                                                                               serial) -> None:
    with IngestHome(tmp_path, resend_week) as home:
        victim, other, _, second = _second_waits_for_the_first(home, WORKER_STOPS_IN_MERGE)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # the kernel dropped the dead merge's flock and DuckDB's file lock: the other merges
        assert other.wait(timeout=900) == 0
        registry = Registry.from_config()
        assert {registry.get(i)["status"] for i in second} == {"processing"}
        # the next run sees the dead owner's folder lock gone and takes its uploads back at once
        # (no stale-claim timeout), and the result equals one worker's
        assert home.child(WORKER_PROCESS_ALL).wait(timeout=900) == 0
        assert home.result() == serial
