"""Vault against a real S3 server (embedded rclone on loopback)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from hqms import cli, config, keys, vault
from hqms.objectstore import ObjectStore

UPLOAD = {"upload_id": "u20260131170000a1b2c3d4", "stream": "flu", "org_code": "TESTORG01",
          "received_at": "2026-01-31T17:00:00+00:00", "file_name": "flu_test.zip"}


def _synthetic_zip(path: Path, rows: int = 2000) -> bytes:
    """A zip like a hospital's, with synthetic random content (nothing realistic)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        lines = [f"{i},{os.urandom(6).hex()},{os.urandom(4).hex()}" for i in range(rows)]
        zf.writestr("flu_test.csv", "P900,P7501,P7502\n" + "\n".join(lines))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture
def setup(hqms_home: Path, s3_store: ObjectStore, tmp_path: Path):
    cfg = config.load()
    keys.ensure_demo_keys(cfg)
    s3_store.ensure_buckets()
    local = tmp_path / "upload.zip"
    data = _synthetic_zip(local)
    upload = {**UPLOAD, "sha256": hashlib.sha256(data).hexdigest()}
    private_hex = keys.private_key_path(cfg).read_text().strip()
    return cfg, s3_store, upload, local, data, private_hex


def test_store_verify_restore_round_trip(setup, tmp_path: Path) -> None:
    cfg, store, upload, local, data, private_hex = setup
    record = vault.store_original(store, cfg, upload, local)
    bucket = cfg.buckets["vault"]
    # 17:00 UTC on 31 January is 1 February in China
    base = "flu/TESTORG01/2026/02/u20260131170000a1b2c3d4"
    assert (record.object_key, record.manifest_key) == (base + ".zip.sm4", base + ".manifest.json")
    assert record.written and record.plaintext_sha256 == upload["sha256"]
    assert sorted(store.list(bucket)) == sorted([record.object_key, record.manifest_key])

    stored = store.get_bytes(bucket, record.object_key)
    assert data[100:132] not in stored and len(stored) == len(data) + 28
    manifest = json.loads(store.get_bytes(bucket, record.manifest_key))
    assert manifest["plaintext_sha256"] == upload["sha256"]
    assert manifest["ciphertext_sha256"] == hashlib.sha256(stored).hexdigest()
    assert manifest["wrap_key_id"] == keys.load_keyring(cfg).vault_public_key().key_id
    assert {"data", "key_wrap", "digest"} <= set(manifest["cipher_suite"])
    assert private_hex not in json.dumps(manifest)

    assert vault.verify(store, cfg, upload["upload_id"]).ciphertext_sha256 == record.ciphertext_sha256
    out = tmp_path / "restored.zip"
    vault.restore(store, cfg, upload["upload_id"], private_hex, out)
    assert out.read_bytes() == data


def test_second_run_finds_verified_copy_and_writes_nothing(setup) -> None:
    cfg, store, upload, local, _, _ = setup
    first = vault.store_original(store, cfg, upload, local)
    bucket = cfg.buckets["vault"]
    before = {k: store.get_bytes(bucket, k) for k in store.list(bucket)}
    again = vault.store_original(store, cfg, upload, local)
    assert not again.written
    assert (again.object_key, again.ciphertext_sha256) == (first.object_key, first.ciphertext_sha256)
    assert {k: store.get_bytes(bucket, k) for k in store.list(bucket)} == before


def test_refuses_a_different_file_for_a_stored_upload(setup, tmp_path: Path) -> None:
    cfg, store, upload, local, _, _ = setup
    vault.store_original(store, cfg, upload, local)
    other = tmp_path / "other.zip"
    data = _synthetic_zip(other, rows=10)
    with pytest.raises(vault.VaultError, match="different file"):
        vault.store_original(store, cfg, {**upload, "sha256": hashlib.sha256(data).hexdigest()}, other)
    with pytest.raises(vault.VaultError, match="sha256 differs"):  # record and file disagree
        vault.store_original(store, cfg, {**upload, "upload_id": "u20260131170000ffffffff"}, other)


def test_corrupted_object_fails_restore_clearly_and_rerun_repairs_it(setup, tmp_path: Path) -> None:
    cfg, store, upload, local, data, private_hex = setup
    record = vault.store_original(store, cfg, upload, local)
    bucket = cfg.buckets["vault"]
    damaged = bytearray(store.get_bytes(bucket, record.object_key))
    damaged[len(damaged) // 2] ^= 0x01
    store.put_bytes(bucket, record.object_key, bytes(damaged))
    out = tmp_path / "restored.zip"
    with pytest.raises(vault.VaultError, match="does not verify.*sha256"):
        vault.restore(store, cfg, upload["upload_id"], private_hex, out)
    assert not out.exists()
    with pytest.raises(vault.VaultError, match="does not verify"):
        vault.verify(store, cfg, upload["upload_id"])

    repaired = vault.store_original(store, cfg, upload, local)  # landing copy still there
    assert repaired.written
    vault.restore(store, cfg, upload["upload_id"], private_hex, out)
    assert out.read_bytes() == data


def test_tampered_object_with_matching_manifest_fails_authentication(setup, tmp_path: Path) -> None:
    """An attacker who rewrites object and manifest hash still cannot forge the GCM tag."""
    cfg, store, upload, local, _, private_hex = setup
    record = vault.store_original(store, cfg, upload, local)
    bucket = cfg.buckets["vault"]
    damaged = bytearray(store.get_bytes(bucket, record.object_key))
    damaged[40] ^= 0x01
    store.put_bytes(bucket, record.object_key, bytes(damaged))
    manifest = json.loads(store.get_bytes(bucket, record.manifest_key))
    manifest["ciphertext_sha256"] = hashlib.sha256(bytes(damaged)).hexdigest()
    store.put_bytes(bucket, record.manifest_key, json.dumps(manifest).encode())
    out = tmp_path / "restored.zip"
    with pytest.raises(vault.VaultError, match="failed authentication"):
        vault.restore(store, cfg, upload["upload_id"], private_hex, out)
    assert not out.exists()


def test_wrong_private_key_is_named(setup, tmp_path: Path) -> None:
    from hqms import crypto

    cfg, store, upload, local, _, _ = setup
    record = vault.store_original(store, cfg, upload, local)
    other_private, _ = crypto.sm2_generate_keypair()
    with pytest.raises(vault.VaultError, match=f"does not belong to vault key {record.wrap_key_id}"):
        vault.restore(store, cfg, upload["upload_id"], other_private, tmp_path / "x.zip")


def test_unknown_upload(setup) -> None:
    cfg, store, *_ = setup
    with pytest.raises(vault.VaultError, match="no vault copy"):
        vault.verify(store, cfg, "u20990101000000deadbeef")


def test_cli_decrypt(setup, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg, store, upload, local, data, _ = setup
    vault.store_original(store, cfg, upload, local)
    out = tmp_path / "cli.zip"
    key_file = keys.private_key_path(cfg)
    umask = os.umask(0o022)  # a shell's usual umask: the plaintext zip must still be private
    try:
        assert cli.main(["vault", "decrypt", upload["upload_id"], "--private-key", str(key_file),
                         "--out", str(out)]) == 0
    finally:
        os.umask(umask)
    assert out.read_bytes() == data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "verified" in capsys.readouterr().out
    assert cli.main(["vault", "decrypt", upload["upload_id"], "--private-key", str(key_file),
                     "--out", str(out)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err
    wrong = tmp_path / "wrong.hex"
    wrong.write_text("1" * 64)
    assert cli.main(["vault", "decrypt", upload["upload_id"], "--private-key", str(wrong),
                     "--out", str(tmp_path / "w.zip")]) == 2
    err = capsys.readouterr().err
    assert "does not belong" in err and "Traceback" not in err
    assert cli.main(["vault", "verify", upload["upload_id"]]) == 0
