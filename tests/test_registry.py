"""Upload registry on a real SQLite file and a real PostgreSQL server (the ``registry_url``
fixture): life cycle, duplicates, claims, errors, concurrency."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from hqms.validators import make_id_card
from hqms.registry import (AlreadyAccepted, ErrorRecord, Registry, looks_identifying, make_upload_id, mask_value,
                           redact_identifiers, shown_value)


@pytest.fixture
def registry(registry_url: str) -> Registry:
    return Registry.from_config()


def _new(registry: Registry, sha: str = "a" * 64, org: str = "ORG1", status: str = "landed",
         received_at: datetime | None = None, **kw) -> str:
    return registry.new_upload(org_code=org, uploader="tester", channel="web",
                               file_name="flu_1.zip", sha256=sha, size_bytes=10, status=status,
                               stream="flu", received_at=received_at, **kw)


#: a valid ID number made here (nothing realistic is committed)
SYNTHETIC_ID = make_id_card("510104", date(1990, 1, 2), "001")


@pytest.mark.parametrize("value", [
    "顾霞宁", SYNTHETIC_ID, f"{SYNTHETIC_ID[:10]} {SYNTHETIC_ID[10:14]} {SYNTHETIC_ID[14:]}", "138-1234-5678", "13820121201", "0012345678",
    "Zhang San", "四川省成都市武侯区", "x" * 41])
def test_values_that_may_identify_someone_are_masked_in_any_column(value: str) -> None:
    assert looks_identifying(value) and shown_value(value, personal=False) == mask_value(value)


@pytest.mark.parametrize("value", [
    "3", "99", "J10.1", "35.0", "1,234.50", "2026-12-01", "2026/12/1 08:00", "20261201", "20261201083000",
    "2026-12-01T08:00:00.0", "12345"])
def test_ordinary_failing_values_are_shown_as_sent(value: str) -> None:
    assert not looks_identifying(value) and shown_value(value, personal=False) == value
    assert shown_value(value, personal=True) == mask_value(value)


@pytest.mark.parametrize(("name", "stored"), [
    (f"flu_20261101_林冲_{SYNTHETIC_ID}.zip", f"flu_20261101_林冲_{mask_value(SYNTHETIC_ID)}.zip"),
    ("lis_20250106_13912345678.csv", "lis_20250106_1*********8.csv"),
    ("12510000450717411F_flu_20261101.zip", "12510000450717411F_flu_20261101.zip"),  # a credit code
    ("flu_20261101083000123.csv", "flu_20261101083000123.csv"),  # no valid ID: kept
    ("fever_20261101(1).csv", "fever_20261101(1).csv"),
])
def test_file_names_are_stored_with_id_and_mobile_numbers_masked(name: str, stored: str) -> None:
    assert redact_identifiers(name) == stored


def test_mask_value() -> None:
    assert mask_value("张三丰") == "张*丰"
    assert mask_value("110101199001011234") == "1" + "*" * 16 + "4"
    assert mask_value("李四") == "**"
    assert mask_value("x") == "*"
    assert mask_value("") == ""


def test_upload_id_sorts_by_receipt_time() -> None:
    early = make_upload_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = make_upload_id(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.startswith("u20260102030405") and len(early) == 1 + 14 + 8
    assert early < late


def test_record_round_trip_and_listing(registry: Registry) -> None:
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    first = _new(registry, sha="1" * 64, received_at=t0)
    second = _new(registry, sha="2" * 64, org="ORG2", received_at=t0 + timedelta(hours=1))
    third = _new(registry, sha="3" * 64, status="rejected", received_at=t0 + timedelta(hours=2),
                 message_zh="不是zip文件", message_en="not a zip file")

    rec = registry.get(first)
    assert rec["status"] == "landed" and rec["stage"] == "intake" and rec["attempts"] == 0
    assert rec["received_at"] == "2026-03-01T08:00:00+00:00"
    assert registry.get("u-none") is None
    assert [u["upload_id"] for u in registry.list_uploads()] == [third, second, first]
    assert [u["upload_id"] for u in registry.list_uploads(org="ORG1")] == [third, first]
    assert [u["upload_id"] for u in registry.list_uploads(status="rejected")] == [third]
    assert [u["upload_id"] for u in registry.list_uploads(since=t0 + timedelta(minutes=30))] \
        == [third, second]
    assert [u["upload_id"] for u in registry.list_uploads(limit=1)] == [third]


def test_accepted_sha_is_unique_per_org(registry: Registry) -> None:
    original = _new(registry)
    assert registry.find_by_sha("ORG1", "a" * 64)["upload_id"] == original
    assert registry.find_by_sha("ORG2", "a" * 64) is None
    with pytest.raises(AlreadyAccepted) as info:
        _new(registry)
    assert info.value.original["upload_id"] == original
    # Duplicates, rejections and other orgs may share the bytes.
    _new(registry, status="duplicate", duplicate_of=original)
    _new(registry, status="rejected")
    _new(registry, org="ORG2")
    # Once ingest rejects the upload, the same bytes may be submitted (and judged) again.
    registry.set_status(original, "rejected", message_zh="无达标记录", message_en="none conform")
    assert registry.find_by_sha("ORG1", "a" * 64) is None
    _new(registry)


def test_claim_pending_oldest_first_and_stale_reclaim(registry: Registry) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    newer = _new(registry, sha="1" * 64, received_at=t0 + timedelta(minutes=5))
    older = _new(registry, sha="2" * 64, received_at=t0)
    _new(registry, sha="3" * 64, status="rejected")

    claimed = registry.claim_pending(limit=1)
    assert [c["upload_id"] for c in claimed] == [older]
    assert claimed[0]["status"] == "processing" and claimed[0]["attempts"] == 1
    assert [c["upload_id"] for c in registry.claim_pending()] == [newer]
    assert registry.claim_pending() == []  # fresh claims are not handed out twice
    again = registry.claim_pending(stale_after=timedelta(0))  # every claim is now "stale"
    assert {c["upload_id"] for c in again} == {older, newer}
    assert registry.get(older)["attempts"] == 2

    registry.set_status(older, "processed", message_zh="全部符合", message_en="all conform",
                        record_count=5, conforming_count=5)
    rec = registry.get(older)
    assert (rec["status"], rec["stage"], rec["record_count"], rec["conforming_count"]) \
        == ("processed", "ingest", 5, 5)
    assert older not in {c["upload_id"] for c in registry.claim_pending(stale_after=timedelta(0))}
    with pytest.raises(ValueError):
        registry.set_status(older, "done")
    with pytest.raises(KeyError):
        registry.set_status("u-none", "processed")


def test_replace_errors_is_idempotent(registry: Registry) -> None:
    upload = _new(registry)
    errors = [ErrorRecord("flu_1.csv", row, "P7502", "required", "必填", "required",
                          check_id="flu.P7502.required", value_masked=None)
              for row in range(1, 100_001)]
    errors.append(ErrorRecord("flu_1.csv", None, None, "missing_column", "缺列", "missing column",
                              severity="warning"))
    registry.replace_errors(upload, errors)
    registry.replace_errors(upload, iter(errors))  # a repeated ingest replaces, never appends
    stored = registry.errors(upload)
    assert len(stored) == 100_001
    assert stored[0]["row"] == 1 and stored[0]["column"] == "P7502" and stored[0]["seq"] == 1
    assert stored[-1]["row"] is None and stored[-1]["severity"] == "warning"
    registry.replace_errors(upload, [])
    assert registry.errors(upload) == []


def test_concurrent_writers_and_readers(registry_url: str) -> None:
    """Several processes insert and claim at once; nothing is lost or claimed twice."""
    code = (
        "import sys\n"
        "from hqms.registry import Registry\n"
        "r = Registry.from_config()\n"
        "n = int(sys.argv[1])\n"
        "for i in range(25):\n"
        "    r.new_upload(org_code='ORG', uploader='p', channel='tran', file_name='f.zip',\n"
        "                 sha256=f'{n:02d}{i:062d}', size_bytes=1, status='landed', stream='flu')\n"
        "    r.list_uploads(limit=5)\n"
        "print(','.join(u['upload_id'] for u in r.claim_pending(limit=10)))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    claimed: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        claimed += [c for c in out.strip().split(",") if c]
    registry = Registry(registry_url)
    assert len(registry.list_uploads()) == 100
    assert len(claimed) == len(set(claimed)) == 40



def test_first_connection_waits_for_a_writer_on_a_fresh_file(tmp_path: Path) -> None:
    """A registry file still in rollback mode, another process mid-write: SQLite refuses the
    switch to WAL at once (no busy wait); the registry waits for the writer instead of failing."""
    path = tmp_path / "fresh.db"
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("CREATE TABLE other (a)")
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO other VALUES (1)")
        holding.set()
        release.wait(10)
        con.execute("COMMIT")
        con.close()

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(10)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    registry = Registry(f"sqlite:///{path}")
    thread.join()
    assert time.monotonic() - started >= 0.4  # it waited for the writer
    assert registry.list_uploads() == []
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
