"""An S3 outage after the outcomes are recorded (issue 16, item 8): the run's summary and log
must say what happened — every upload processed, landing objects left for the sweep — not
"N uploads left for retry"; the next run's sweep removes the landing objects."""
from __future__ import annotations

import logging

import pytest

from conftest import generate_plan, submit_plan
from hqms import config, embedded_s3
from hqms.ingest.run import claim, process
from hqms.objectstore import ObjectStore
from hqms.registry import Registry

pytestmark = pytest.mark.slow


def test_an_outage_while_recording_is_reported_truthfully(s3_store, tmp_path, monkeypatch, caplog):
    gen = tmp_path / "gen"
    generate_plan(gen, hospitals=3, seed=8)
    ids = submit_plan(gen)
    cfg = config.load()

    # the S3 server goes down (really: its process is stopped) once the first outcome is recorded
    real_set_status = Registry.set_status

    def set_status(self, upload_id, status, *args, **kwargs):
        real_set_status(self, upload_id, status, *args, **kwargs)
        if status != "processing" and embedded_s3.status(cfg)["running"]:
            assert embedded_s3.stop(cfg)

    monkeypatch.setattr(Registry, "set_status", set_status)
    caplog.set_level(logging.INFO)
    (batch,) = claim()
    outcomes = process(batch)  # no BatchIncomplete: nothing is left for retry

    assert sorted(o["upload_id"] for o in outcomes) == sorted(ids)
    registry = Registry.from_config(cfg)
    assert {registry.get(i)["status"] for i in ids} == {"processed"}
    assert "left for retry" not in caplog.text and "handed back" not in caplog.text
    assert caplog.text.count("its landing object stays until the next sweep (S3 unavailable)") == len(ids)

    # S3 back: the next run's sweep removes what the outage left in landing
    monkeypatch.setattr(Registry, "set_status", real_set_status)
    embedded_s3.ensure_running(cfg)
    assert claim() == []
    assert list(ObjectStore.from_config(cfg).list(cfg.buckets["landing"])) == []
