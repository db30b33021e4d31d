"""Keyring: generated once, never overwritten, env overrides, 0600, secrets never shown."""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hqms import config, crypto, keys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _all_hex(keyring: keys.Keyring) -> list[str]:
    """Every secret's hex (vault public keys are not secret)."""
    return [keyring.key(p, kid).hex() for p in keys.SECRET_PURPOSES for kid in keyring.key_ids(p)]


def test_demo_keys_generated_once_with_private_permissions(hqms_home: Path) -> None:
    cfg = config.load()
    assert keys.ensure_demo_keys(cfg) is True
    ring_file, private_file = keys.keyring_path(cfg), keys.private_key_path(cfg)
    before = ring_file.read_bytes(), private_file.read_bytes()
    assert _mode(ring_file) == 0o600 and _mode(private_file) == 0o600
    assert _mode(cfg.keys_dir) == 0o700
    assert keys.ensure_demo_keys(cfg) is False
    assert (ring_file.read_bytes(), private_file.read_bytes()) == before

    ring = keys.load_keyring(cfg)
    assert len(ring.pseudonym_key("patient")) == 32 and len(ring.pseudonym_key("record")) == 32
    key_id, field_key = ring.field_key()
    assert key_id == field_key.key_id and len(field_key) == crypto.SM4_KEY_BYTES
    private_hex = private_file.read_text().strip()
    assert crypto.sm2_public_from_private(private_hex) == ring.vault_public_key().public_hex
    assert private_hex not in ring_file.read_text()  # the private key is not in the keyring


def test_existing_private_key_is_never_replaced(hqms_home: Path) -> None:
    cfg = config.load()
    cfg.keys_dir.mkdir(parents=True)
    private_file = keys.private_key_path(cfg)
    private_file.write_text("precious\n")
    with pytest.raises(keys.KeyringError, match="refusing"):
        keys.ensure_demo_keys(cfg)
    assert private_file.read_text() == "precious\n"
    assert not keys.keyring_path(cfg).exists()


def test_concurrent_first_runs_agree_on_one_keyring(hqms_home: Path) -> None:
    code = ("from hqms import keys, config; import json; cfg = config.load(); keys.ensure_demo_keys(cfg);"
            "r = keys.load_keyring(cfg); print(json.dumps({p: r.active_id(p) for p in keys.PURPOSES}))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=os.environ.copy()) for _ in range(4)]
    outputs = {p.communicate(timeout=60)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outputs) == 1


def test_missing_keys_fail_clearly_and_are_never_invented(hqms_home: Path) -> None:
    cfg = config.load()
    with pytest.raises(keys.KeyringError) as excinfo:
        keys.load_keyring(cfg)
    message = str(excinfo.value)
    assert "HQMS_KEY_PATIENT" in message and "hqms keys init" in message and "docs/keys.md" in message
    assert not keys.keyring_path(cfg).exists()


def test_env_keys_only_production(hqms_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patient, record, field_key = os.urandom(32), os.urandom(32), os.urandom(16)
    _, public_hex = crypto.sm2_generate_keypair()
    monkeypatch.setenv("HQMS_KEY_PATIENT", f"patient-2027a:{patient.hex()}")
    monkeypatch.setenv("HQMS_KEY_RECORD", record.hex())
    monkeypatch.setenv("HQMS_KEY_FIELD", field_key.hex())
    monkeypatch.setenv("HQMS_VAULT_PUBLIC_KEY", public_hex)
    cfg = config.load()
    assert keys.ensure_demo_keys(cfg) is False  # provisioned by configuration: generate nothing
    assert not cfg.keys_dir.exists() or not any(cfg.keys_dir.iterdir())
    ring = keys.load_keyring(cfg)
    assert ring.pseudonym_key("patient") == patient
    assert ring.active_id("patient") == "patient-2027a"
    assert ring.active_id("record") == keys.key_id_for("record", record)  # same in every process
    assert ring.field_key() == (keys.key_id_for("field", field_key), field_key)
    assert ring.vault_public_key().public_hex == public_hex


def test_env_override_becomes_active_and_file_versions_stay_readable(
        hqms_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.load()
    keys.ensure_demo_keys(cfg)
    old_id = keys.load_keyring(cfg).active_id("patient")
    monkeypatch.setenv("HQMS_KEY_PATIENT", "ab" * 32)
    ring = keys.load_keyring(config.load())  # a configuration is read when loaded
    assert ring.pseudonym_key("patient") == bytes.fromhex("ab" * 32)
    assert ring.pseudonym_key("patient", old_id).key_id == old_id


@pytest.mark.parametrize("name,value,match", [
    ("HQMS_KEY_FIELD", "00" * 15, "16 bytes"),
    ("HQMS_KEY_PATIENT", "00" * 8, "at least 16"),
    ("HQMS_KEY_RECORD", "secret-but-not-hex", "not valid hex"),
    ("HQMS_VAULT_PUBLIC_KEY", "04" + "22" * 64, "on the SM2 curve"),
])
def test_malformed_env_keys_are_refused_without_echoing_them(
        hqms_home: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str) -> None:
    keys.ensure_demo_keys(config.load())
    monkeypatch.setenv(name, value)
    with pytest.raises(keys.KeyringError, match=match) as excinfo:
        keys.load_keyring(config.load())
    assert name in str(excinfo.value) and value not in str(excinfo.value)


def test_group_readable_keyring_is_refused(hqms_home: Path) -> None:
    cfg = config.load()
    keys.ensure_demo_keys(cfg)
    keys.keyring_path(cfg).chmod(0o644)
    with pytest.raises(keys.KeyringError, match="chmod 600"):
        keys.load_keyring(cfg)


def test_keyring_file_location_override(hqms_home: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "secure" / "ring.json"
    monkeypatch.setenv("HQMS_KEYRING_FILE", str(elsewhere))
    cfg = config.load()
    keys.ensure_demo_keys(cfg)
    assert elsewhere.exists() and not (cfg.keys_dir / "keyring.json").exists()
    assert keys.load_keyring(cfg).path == elsewhere


def test_secrets_never_show_in_repr_str_logs_or_pickles(
        hqms_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.load()
    with caplog.at_level(logging.DEBUG):
        keys.ensure_demo_keys(cfg)
        keys.add_key_version(cfg, "field")
    ring = keys.load_keyring(cfg)
    secrets_hex = _all_hex(ring)
    private_hex = keys.private_key_path(cfg).read_text().strip()
    key = ring.pseudonym_key("patient")
    shown = " ".join([repr(key), str(key), f"{key}", "%s %r" % (key, key), repr(ring),
                      repr(ring.field_key()), json.dumps(ring.describe()), caplog.text])
    for secret in (*secrets_hex, private_hex):
        assert secret not in shown
    assert key.key_id in repr(key) and "hidden" in repr(key)
    for thing in (key, ring):
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(thing)
    with pytest.raises(AttributeError):
        key.key_id = "other"  # type: ignore[misc]


def test_rotation_adds_active_version_keeps_old_and_retires_it(hqms_home: Path) -> None:
    cfg = config.load()
    keys.ensure_demo_keys(cfg)
    old = keys.load_keyring(cfg).pseudonym_key("patient")
    new_id = keys.add_key_version(cfg, "patient")
    ring = keys.load_keyring(cfg)
    assert ring.active_id("patient") == new_id != old.key_id
    assert ring.pseudonym_key("patient", old.key_id) == old
    with pytest.raises(keys.KeyringError, match="active"):
        keys.retire_key_version(cfg, "patient", new_id)
    keys.retire_key_version(cfg, "patient", old.key_id)
    assert keys.load_keyring(cfg).key_ids("patient") == [new_id]
    staged = keys.add_key_version(cfg, "record", activate=False)
    assert keys.load_keyring(cfg).active_id("record") != staged
    keys.activate_key_version(cfg, "record", staged)
    assert keys.load_keyring(cfg).active_id("record") == staged
    assert _mode(keys.keyring_path(cfg)) == 0o600
    with pytest.raises(keys.KeyringError, match="public"):
        keys.add_key_version(cfg, "vault")  # its private key must be made offline
    _, public_hex = crypto.sm2_generate_keypair()
    vault_id = keys.add_key_version(cfg, "vault", public_hex)
    assert keys.load_keyring(cfg).vault_public_key().key_id == vault_id


def test_cli_status_and_rotate_print_ids_only(hqms_home: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    keys.register(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> str:
        args = parser.parse_args(list(argv))
        assert args.func(args) == 0
        return capsys.readouterr().out

    assert "DEMO ONLY" in run("keys", "init")
    new_id = run("keys", "rotate", "record").strip()
    status = json.loads(run("keys", "status", "--json"))
    assert status["keys"]["record"]["active"] == new_id
    assert len(status["keys"]["record"]["versions"]) == 2
    text = run("keys", "status")
    for secret in _all_hex(keys.load_keyring(config.load())):
        assert secret not in text and secret not in json.dumps(status)
