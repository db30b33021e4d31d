"""Operations: reprocess an upload from its real vault copy on a real S3 server; backfill periods."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import csv_bytes, make_zip
from hqms import config, crypto, keys, ops, vault
from hqms.errors import UserError
from hqms.intake.zipcheck import sha256_file
from hqms.registry import Registry


@pytest.fixture
def vaulted_upload(hqms_home: Path, s3_store, org_code: str, tmp_path: Path) -> dict:
    """A processed upload as ingest leaves it: original in the vault, landing copy deleted."""
    cfg = config.load()
    s3_store.ensure_buckets()
    keys.ensure_demo_keys(cfg)
    original = make_zip(tmp_path / "flu_upload.zip", {"flu_20260102.csv": csv_bytes("flu_", org_code)})
    registry = Registry.from_config(cfg)
    received = datetime.now(UTC) - timedelta(days=3)
    key = f"flu/{org_code}/k-original.zip"
    upload_id = registry.new_upload(org_code=org_code, uploader="tester", channel="web",
                                    file_name=original.name, sha256=sha256_file(original),
                                    size_bytes=original.stat().st_size, status="landed",
                                    stream="flu", received_at=received, object_key=key)
    vault.store_original(s3_store, cfg, registry.get(upload_id), original)
    registry.set_status(upload_id, "processed")
    return {"cfg": cfg, "store": s3_store, "registry": registry, "upload_id": upload_id,
            "key": key, "sha256": sha256_file(original)}


def private_key(cfg: config.Config) -> str:
    return keys.private_key_path(cfg).read_text(encoding="ascii").strip()


def test_reprocess_relands_the_verified_original(vaulted_upload: dict) -> None:
    cfg, store, registry = vaulted_upload["cfg"], vaulted_upload["store"], vaulted_upload["registry"]
    bucket = cfg.buckets["landing"]
    assert store.stat(bucket, vaulted_upload["key"]) is None
    done = ops.reprocess(vaulted_upload["upload_id"], private_key(cfg), cfg)
    assert done.previous_status == "processed"
    assert store.sha256(bucket, vaulted_upload["key"]) == vaulted_upload["sha256"]
    record = registry.get(vaulted_upload["upload_id"])
    assert record["status"] == "landed" and "vault" in record["message_en"]
    assert not list(cfg.work_dir.glob("*reprocess*")), "no plaintext copy left in the work dir"
    # landed again: the ingest claim hands it out
    assert [u["upload_id"] for u in registry.claim_pending()] == [vaulted_upload["upload_id"]]


def test_reprocess_with_the_wrong_private_key_changes_nothing(vaulted_upload: dict) -> None:
    cfg, store, registry = vaulted_upload["cfg"], vaulted_upload["store"], vaulted_upload["registry"]
    other_private, _ = crypto.sm2_generate_keypair()
    with pytest.raises(UserError, match="does not belong to vault key"):
        ops.reprocess(vaulted_upload["upload_id"], other_private, cfg)
    assert registry.get(vaulted_upload["upload_id"])["status"] == "processed"
    assert store.stat(cfg.buckets["landing"], vaulted_upload["key"]) is None


def test_reprocess_refuses_uploads_that_were_never_landed(vaulted_upload: dict, org_code: str) -> None:
    cfg, registry = vaulted_upload["cfg"], vaulted_upload["registry"]
    refused = registry.new_upload(org_code=org_code, uploader="tester", channel="web",
                                  file_name="broken.zip", sha256="0" * 64, size_bytes=1,
                                  status="rejected", stage="intake")
    with pytest.raises(UserError, match="never landed"):
        ops.reprocess(refused, private_key(cfg), cfg)
    with pytest.raises(UserError, match="unknown upload"):
        ops.reprocess("u-does-not-exist", private_key(cfg), cfg)


def test_backfill_periods() -> None:
    assert ops.parse_month("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    with pytest.raises(UserError):
        ops.parse_month("2024-13")
    assert ops.selections_for(date(2025, 1, 1), date(2025, 1, 31)) == ("daily", "monthly")
    with pytest.raises(UserError, match="after"):
        ops.selections_for(date(2025, 2, 1), date(2025, 1, 1))
    with pytest.raises(UserError, match="future"):
        ops.selections_for(date.today() + timedelta(days=2), date.today() + timedelta(days=3))
