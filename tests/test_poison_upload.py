"""One upload that breaks the ingest must not hold back the others, must not leak into the logs,
and must end in a recorded state (``failed``) instead of being retried for ever."""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from conftest import generate_plan, submit_plan, use_home

from hqms import config, embedded_s3
from hqms.cli import main as hqms
from hqms.ingest import process as process_mod
from hqms.ingest.process import BatchIncomplete
from hqms.ingest.run import claim, process
from hqms.objectstore import ObjectStore
from hqms.registry import Registry

#: What a DuckDB error would quote from the offending CSV line (built, so that no source line of
#: the traceback contains it either).
SECRET = "1101011990" + "03077777"
NAME = "张" + "三"


@pytest.fixture
def home(tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("HQMS_STALE_CLAIM_SECONDS", "0")
    monkeypatch.setenv("HQMS_MAX_ATTEMPTS", "2")
    yield tmp_path
    embedded_s3.stop(config.load())


def _submit(tmp_path: Path) -> list[str]:
    gen = tmp_path / "gen"
    generate_plan(gen, hospitals=3, seed=5)
    return submit_plan(gen)


def test_a_poison_upload_is_isolated_then_marked_failed(home, monkeypatch, caplog):
    ids = _submit(home)
    poison = ids[1]
    real_validate = process_mod.validate_many

    def validate_many(stage, zips, *args, **kwargs):
        if any(key == poison for key, _, _ in zips):
            line = f"{SECRET},{NAME}"
            raise RuntimeError(f"CSV Error on line 7: {line}")
        return real_validate(stage, zips, *args, **kwargs)

    monkeypatch.setattr(process_mod, "validate_many", validate_many)
    caplog.set_level(logging.INFO)
    (batch,) = claim()
    assert sorted(batch) == sorted(ids)
    with pytest.raises(BatchIncomplete, match=poison):
        process(batch)

    registry = Registry.from_config(config.load())
    states = {i: registry.get(i)["status"] for i in ids}
    # handed back at once, charged one failure (it broke a round alone); the others were not
    assert states[poison] == "landed" and registry.get(poison)["failures"] == 1
    assert {registry.get(i)["failures"] for i in ids if i != poison} == {0}
    assert all(s == "processed" for i, s in states.items() if i != poison), states
    assert SECRET not in caplog.text and NAME not in caplog.text
    assert "RuntimeError" in caplog.text and poison in caplog.text

    # second claim (attempt 2 of 2) fails again; the claim after that gives up on it
    assert claim() == [[poison]]
    with pytest.raises(BatchIncomplete):
        process([poison])
    assert claim() == []
    upload = registry.get(poison)
    assert (upload["status"], upload["attempts"], upload["failures"]) == ("failed", 2, 2)
    assert "data team" in upload["message_en"]
    # the hospital's bytes are still there for an operator's reprocess
    cfg = config.load()
    assert upload["object_key"] in set(ObjectStore.from_config(cfg).list(cfg.buckets["landing"]))


def test_missing_keys_stop_the_claim_before_any_attempt_is_spent(home):
    from hqms.keys import KeyringError, keyring_path

    ids = _submit(home)
    keyring_path(config.load()).unlink()
    with pytest.raises(KeyringError):
        claim()
    registry = Registry.from_config(config.load())
    assert {(registry.get(i)["status"], registry.get(i)["attempts"]) for i in ids} == {("landed", 0)}


@pytest.mark.slow
def test_a_damaged_header_is_reported_and_the_batch_goes_on(home, capsys):
    """An unclosed quote on the header line of a file over 128 KiB (a realistic broken export)
    used to raise ``_csv.Error`` out of the batch: now that upload gets its report (row 1, the
    reason), the other hospitals' uploads of the same batch are processed, and ``--dry-run``
    shows the report."""
    import zipfile

    from hqms.intake.submit import submit

    gen = home / "gen"
    plan = generate_plan(gen, hospitals=3, seed=5)
    damaged = home / "damaged.zip"
    with zipfile.ZipFile(gen / plan[1]["zip"]) as zin, zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.rsplit("/", 1)[-1].startswith("flu_"):
                header, _, body = data.partition(b"\r\n")
                first, _, last = header.rpartition(b",")
                data = first + b',"' + last + b"\r\n" + body * (1 + 140_000 // len(body))
            zout.writestr(info, data)
    capsys.readouterr()
    assert hqms(["submit", str(damaged), "--org", plan[1]["org_code"], "--user", plan[1]["uploader"],
                 "--dry-run"]) in (0, 1)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "引号" in out.out
    paths = [gen / r["zip"] for r in plan]
    paths[1] = damaged
    ids = [submit(p, r["org_code"], r["uploader"], received_at=datetime.fromisoformat(r["planned_received_at"])).upload_id
           for p, r in zip(paths, plan)]
    for batch in claim():
        process(batch)
    registry = Registry.from_config(config.load())
    states = [registry.get(i)["status"] for i in ids]
    assert states[0] == states[2] == "processed" and states[1] in ("rejected", "partially_accepted"), states
    errors = [e for e in registry.errors(ids[1]) if e["rule"] == "csv_parse"]
    assert [(e["file_name"].startswith("flu_"), e["row"]) for e in errors] == [(True, 1)]
