"""Claims, deaths and who pays for them (issue 16, item 1), on a real SQLite registry and real
folder locks: a death charges only the upload alone in flight, uploads in flight together become
suspects, a dead owner is recognised at once on its host and by its heartbeat elsewhere."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from hqms import config
from hqms.registry import DIED_ALONE, Registry
from hqms.workdir import owner_alive, run_folder, run_owner

LONG = timedelta(hours=2)


@pytest.fixture
def registry(hqms_home: Path) -> Registry:
    return Registry.from_config()


def _new(registry: Registry, n: int) -> list[str]:
    """``n`` landed uploads, in the order the registry hands them out (same second: by id)."""
    return sorted(registry.new_upload(org_code="ORG1", uploader="tester", channel="web", file_name=f"flu_{i}.zip",
                                sha256=f"{i:064x}", size_bytes=10, status="landed", stream="flu")
            for i in range(n))


def _dead(owner: str) -> bool | None:
    return False


def _alive(owner: str) -> bool | None:
    return True


def _unknown(owner: str) -> bool | None:
    return None


def test_a_death_among_several_charges_none_and_makes_them_suspects(registry: Registry) -> None:
    ids = _new(registry, 4)
    assert [u["upload_id"] for u in registry.acquire(ids, "host|run-a", _alive, 3)] == ids
    registry.set_in_flight(ids[:3], True)
    released = registry.release_dead(_dead, 3, lease=LONG, stale_after=LONG)
    assert {u["upload_id"] for u in released} == set(ids)
    rows = {i: registry.get(i) for i in ids}
    assert {(u["status"], u["failures"], u["claimed_by"], u["in_flight"]) for u in rows.values()} \
        == {("landed", 0, None, False)}
    assert [rows[i]["suspect"] for i in ids] == [3, 3, 3, 0]
    assert registry.pending() == ids


def test_a_death_alone_charges_that_upload_and_exhaustion_fails_it(registry: Registry) -> None:
    ids = _new(registry, 2)
    for n in (1, 2):
        registry.acquire(ids, f"host|run-{n}", _alive, 2)
        registry.set_in_flight([ids[0]], True)
        registry.release_dead(_dead, 2, lease=LONG, stale_after=LONG)
    poison, innocent = registry.get(ids[0]), registry.get(ids[1])
    assert (poison["status"], poison["failures"], poison["attempts"]) == ("failed", 2, 2)
    assert poison["message_zh"].startswith(DIED_ALONE[0]) and "data team" in poison["message_en"]
    assert (innocent["status"], innocent["failures"]) == ("landed", 0)
    assert registry.pending() == [ids[1]]


def test_live_claims_stay_and_dead_ones_are_taken_over(registry: Registry) -> None:
    ids = _new(registry, 2)
    registry.acquire(ids, "host|run-a", _alive, 3)
    # its host says the owner lives, or (another host) its heartbeat is fresh: nothing released
    assert registry.release_dead(_alive, 3, lease=LONG, stale_after=LONG) == []
    assert registry.release_dead(_unknown, 3, lease=LONG, stale_after=LONG) == []
    assert registry.acquire(ids, "host|run-b", _alive, 3) == []  # a live run's uploads are skipped
    assert registry.heartbeat("host|run-a") == 2
    # no heartbeat within the lease: another host's run is presumed dead
    assert len(registry.release_dead(_unknown, 3, lease=timedelta(0), stale_after=LONG)) == 2
    # a dead run's uploads, in flight together, taken over directly (a retried task): no charge
    registry.acquire(ids, "host|run-c", _alive, 3)
    registry.set_in_flight(ids, True)
    taken = registry.acquire(ids, "host|run-d", _dead, 3)
    assert [(u["claimed_by"], u["failures"], u["suspect"], u["in_flight"]) for u in taken] \
        == [("host|run-d", 0, 2, False)] * 2
    # an outcome ends the claim
    registry.set_status(ids[0], "processed", record_count=1, conforming_count=1)
    assert registry.get(ids[0])["claimed_by"] is None


def test_a_live_run_hands_back_what_it_could_not_finish(registry: Registry) -> None:
    ids = _new(registry, 3)
    registry.acquire(ids, "host|run-a", _alive, 2)
    released = registry.release({ids[0]: None, ids[1]: ("放不下", "did not fit")}, 2)
    assert [(u["status"], u["failures"]) for u in released] == [("landed", 0), ("landed", 1)]
    assert registry.get(ids[1])["message_en"] == "did not fit; it will be retried — there is no need to send it again"
    registry.acquire([ids[1]], "host|run-b", _alive, 2)
    (again,) = registry.release({ids[1]: ("放不下", "did not fit")}, 2)
    assert again["status"] == "failed" and again["message_en"].startswith("did not fit; ")
    registry.reset_for_reprocess(ids[1], "重新处理", "reprocess")
    assert (registry.get(ids[1])["status"], registry.get(ids[1])["failures"]) == ("landed", 0)


def test_owner_liveness_is_the_run_folders_lock(hqms_home: Path) -> None:
    cfg = config.load()
    with run_folder(cfg, "u1+0") as work:
        owner = run_owner(work)
        assert owner_alive(owner) is True
        # another process sees the same: the lock is the kernel's, not this process's memory
        probe = ("import sys; from hqms.workdir import owner_alive;"
                 "print(owner_alive(sys.argv[1]))")
        out = subprocess.run([sys.executable, "-c", probe, owner], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "True"
    assert owner_alive(owner) is False
    # a folder left by a run that died (no lock on it) is dead too
    (dead := cfg.work_dir / "runs" / "u2+0.dead").mkdir(parents=True)
    assert owner_alive(run_owner(dead)) is False
    assert owner_alive("another-host|u3+0.x") is None


def test_an_older_registry_file_gets_the_new_columns(hqms_home: Path) -> None:
    """A registry created before claims had owners: its table gains the columns in place."""
    path = hqms_home / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE uploads (upload_id VARCHAR(32) PRIMARY KEY, stream VARCHAR(16), "
                "org_code VARCHAR(64) NOT NULL, uploader VARCHAR(128) NOT NULL, channel VARCHAR(8) NOT NULL, "
                "file_name VARCHAR(255) NOT NULL, sha256 VARCHAR(64) NOT NULL, size_bytes BIGINT NOT NULL, "
                "received_at VARCHAR(32) NOT NULL, object_key VARCHAR(512), status VARCHAR(24) NOT NULL, "
                "stage VARCHAR(8) NOT NULL, message_zh TEXT, message_en TEXT, record_count INTEGER, "
                "conforming_count INTEGER, duplicate_of VARCHAR(32), attempts INTEGER NOT NULL, "
                "updated_at VARCHAR(32) NOT NULL)")
    con.execute("INSERT INTO uploads VALUES ('u20260101000000aaaaaaaa', 'flu', 'ORG1', 't', 'web', 'f.zip', "
                "'ab', 1, '2026-01-01T00:00:00+00:00', 'k', 'processing', 'ingest', NULL, NULL, NULL, NULL, "
                "NULL, 1, '2026-01-01T00:00:00+00:00')")
    con.commit()
    con.close()
    registry = Registry(f"sqlite:///{path}")
    old = registry.get("u20260101000000aaaaaaaa")
    assert (old["failures"], old["suspect"], old["in_flight"], old["claimed_by"]) == (0, 0, False, None)
    # its stale claim (no owner, no heartbeat) is handed back
    assert len(registry.release_dead(_unknown, 3, lease=timedelta(minutes=5), stale_after=LONG)) == 1
