"""A ``failed`` upload is retried from its landing object, without the offline vault key (issue
16, item 1c), on a real S3 server: only while that object is there and is what intake recorded."""
from __future__ import annotations

import pytest

from conftest import submit_plan
from hqms import config
from hqms.cli import main as hqms
from hqms.registry import Registry


def _failed_upload(tmp_path) -> tuple[Registry, dict]:
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", "9",
                 "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    (uid,) = submit_plan(gen)
    registry = Registry.from_config()
    registry.acquire([uid], "host|run", lambda owner: True, max_attempts=1)
    (failed,) = registry.release({uid: ("崩溃", "crashed")}, max_attempts=1)
    assert (failed["status"], failed["failures"]) == ("failed", 1)
    return registry, failed


def test_a_failed_upload_is_landed_again_from_landing_without_the_key(s3_store, tmp_path, capsys):
    registry, upload = _failed_upload(tmp_path)
    assert hqms(["reprocess", upload["upload_id"]]) == 0
    assert "still in landing, verified" in capsys.readouterr().out
    again = registry.get(upload["upload_id"])
    assert (again["status"], again["failures"], again["suspect"]) == ("landed", 0, 0)
    assert registry.pending() == [upload["upload_id"]]


@pytest.mark.parametrize("damage", ["replaced", "deleted"])
def test_without_a_true_landing_copy_the_key_is_asked_for(s3_store, tmp_path, capsys, damage):
    registry, upload = _failed_upload(tmp_path)
    bucket = config.load().buckets["landing"]
    if damage == "replaced":
        s3_store.put_bytes(bucket, upload["object_key"], b"not what the hospital sent")
    else:
        s3_store.delete(bucket, upload["object_key"])
    assert hqms(["reprocess", upload["upload_id"]]) == 2
    err = capsys.readouterr().err
    assert "--private-key" in err and ("does not match" in err if damage == "replaced" else "is gone" in err)
    assert registry.get(upload["upload_id"])["status"] == "failed"  # nothing changed
