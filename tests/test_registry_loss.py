"""Registry loss is noticed and repaired (issue 16, item 6): with the registry deleted, the
doctor and the ingest DAG's claim step report the uploads the object store still holds,
``hqms registry recover`` re-registers them (landed ones from S3 metadata, processed ones from
vault manifests and the warehouse's ops rows), and a damaged registry file is a clear error."""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import generate_plan, submit_plan
from hqms import config, doctor
from hqms import registry as registry_module
from hqms.cli import main as hqms
from hqms.ingest.run import claim, process
from hqms.objectstore import ObjectStore
from hqms import recover
from hqms.recover import GRACE, find_orphans
from hqms.registry import Registry, RegistryCorrupt

pytestmark = pytest.mark.slow

#: What a re-registered upload must carry over (the uploader of a processed one is not stored
#: anywhere but the registry; its record says it was recovered).
KEPT = ("upload_id", "stream", "org_code", "channel", "file_name", "sha256", "size_bytes", "received_at",
        "object_key", "status", "record_count", "conforming_count", "message_zh", "message_en")


def _registry_file(cfg: config.Config) -> Path:
    return Path(cfg.registry_url.removeprefix("sqlite:///"))


def _lose_registry(cfg: config.Config) -> None:
    """Delete the registry file as an operator (or a restore) would, between processes: every
    CLI command and Airflow task is a new process, which creates its tables anew."""
    path = _registry_file(cfg)
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (path.parent / name).unlink(missing_ok=True)
    registry_module._ensure_schema.cache_clear()


def test_a_lost_registry_is_noticed_and_rebuilt(s3_store, tmp_path, capsys, caplog, monkeypatch):
    gen = tmp_path / "gen"
    generate_plan(gen, hospitals=2, seed=6, days=2)
    ids = submit_plan(gen)
    process(ids[:2])  # two processed (vault + warehouse), two still landed
    cfg = config.load()
    registry = Registry.from_config(cfg)
    before = {i: registry.get(i) for i in ids}
    errors_before = {i: registry.errors(i) for i in ids}
    assert {before[i]["status"] for i in ids[2:]} == {"landed"}
    assert all(before[i]["status"] != "landed" for i in ids[:2])

    _lose_registry(cfg)  # (a restore from an older backup looks the same)
    later = datetime.now(UTC) + GRACE + timedelta(seconds=1)
    store = ObjectStore.from_config(cfg)
    orphans = find_orphans(cfg, store, Registry.from_config(cfg).known, vault=True, now=later)
    assert {(o.upload_id, o.bucket) for o in orphans} == \
        {(i, "landing") for i in ids[2:]} | {(i, "vault") for i in ids[:2]}
    # young landing objects are a submit in progress, not orphans
    assert find_orphans(cfg, store, Registry.from_config(cfg).known, vault=False) == []

    # the doctor fails on them (an empty registry with a full vault: the vault is listed too)
    check = {c.name: c for c in doctor.run_checks(cfg)}["orphans"]
    assert check.status == doctor.FAIL and "hqms registry recover" in check.fix
    assert all(i in check.message for i in ids[:2])

    monkeypatch.setattr(recover, "GRACE", timedelta(0))  # the landing objects are seconds old here
    assert hqms(["registry", "recover", "--dry-run"]) == 0
    assert Registry.from_config(cfg).list_uploads() == []
    assert hqms(["registry", "recover"]) == 0
    out = capsys.readouterr().out
    assert "4 upload(s) re-registered" in out
    after = {i: Registry.from_config(cfg).get(i) for i in ids}
    for i in ids:
        assert {k: after[i][k] for k in KEPT if k not in ("message_zh", "message_en")} == \
            {k: before[i][k] for k in KEPT if k not in ("message_zh", "message_en")}, i
    for i in ids[:2]:  # processed: the recorded outcome and error list, from the warehouse
        assert (after[i]["message_zh"], after[i]["message_en"]) == (before[i]["message_zh"], before[i]["message_en"])
        assert [{k: e[k] for k in ("row", "column", "rule", "message_zh", "value_masked")}
                for e in Registry.from_config(cfg).errors(i)] == \
            [{k: e[k] for k in ("row", "column", "rule", "message_zh", "value_masked")} for e in errors_before[i]]
    for i in ids[2:]:  # landed: from the object's metadata, uploader included
        assert after[i]["uploader"] == before[i]["uploader"]
    assert hqms(["registry", "orphans"]) == 0

    # and the landed ones are processed as usual
    caplog.set_level(logging.INFO)
    for batch in claim():
        process(batch)
    assert {Registry.from_config(cfg).get(i)["status"] for i in ids} <= {"processed", "partially_accepted"}
    assert "unknown to the registry" not in caplog.text


def test_the_ingest_claim_step_alerts_on_orphans(s3_store, tmp_path, caplog, monkeypatch):
    gen = tmp_path / "gen"
    generate_plan(gen, hospitals=1, seed=6)
    (uid,) = submit_plan(gen)
    cfg = config.load()
    _lose_registry(cfg)
    monkeypatch.setattr(recover, "GRACE", timedelta(0))  # the object is seconds old here
    caplog.set_level(logging.INFO)
    assert claim() == []  # the registry knows nothing to process …
    assert "1 landing objects are unknown to the registry" in caplog.text and uid in caplog.text
    # … and the alert went out (the log channel at least)
    assert "ALERT" in caplog.text and "1 landed upload(s) unknown to the registry" in caplog.text


def test_a_damaged_registry_is_a_clear_error(s3_store, capsys):
    assert hqms(["keys", "init"]) == 0
    cfg = config.load()
    Registry.from_config(cfg)
    path = _registry_file(cfg)
    for name in (path.name + "-wal", path.name + "-shm"):
        (path.parent / name).unlink(missing_ok=True)
    path.write_bytes(b"\x00garbage, not SQLite\xff" * 512)
    assert hqms(["uploads"]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "hqms registry recover" in err and "Traceback" not in err
    with pytest.raises(RegistryCorrupt, match="damaged"):  # the DAG's claim task fails with it
        claim()
    check = {c.name: c for c in doctor.run_checks(cfg)}["registry"]
    assert check.status == doctor.FAIL and "damaged" in check.message
