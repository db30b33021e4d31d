"""Fail closed: the embedded S3 store is a choice, never what an unset ``HQMS_S3_ENDPOINT`` means.

A production host that lost its environment must refuse — no upload recorded, landed, claimed or
charged, no private rclone server, no demo keys — with the doctor's message: the missing setting
and how to choose the embedded store for local use. The local tooling's choice (``hqms s3 start``,
``hqms demo``, ``hqms up``) is recorded in the home, so later commands need no setting.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import csv_bytes, make_zip, provision_hospitals

from hqms import cli, config, doctor, embedded_s3
from hqms.registry import Registry


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _refused_with_the_doctors_message(code: int, err: str) -> None:
    assert code == 2, err  # a configuration error, like every UserError
    assert "Traceback" not in err
    assert err.startswith("hqms: HQMS_S3_ENDPOINT is not set")
    assert "HQMS_S3_ENDPOINT=embedded" in err and "hqms s3 start" in err


@pytest.fixture
def unchosen(hqms_home: Path, org_code: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with a hospital account whose process has no S3 setting and no recorded choice."""
    provision_hospitals(org_code)
    monkeypatch.delenv("HQMS_S3_ENDPOINT")
    return hqms_home


def test_submit_without_a_store_refuses_and_records_nothing(unchosen: Path, org_code: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    upload = make_zip(tmp_path / "flu_upload.zip", {"flu_20260101.csv": csv_bytes("flu_", org_code)})
    code, err = _run(capsys, "submit", str(upload), "--org", org_code, "--user", "admin")
    _refused_with_the_doctors_message(code, err)
    assert Registry.from_config().list_uploads() == []
    assert not (unchosen / "s3").exists(), "no private store was made or started"
    # an org without an account is not even answered "rejected": nothing is recorded at all
    code, err = _run(capsys, "submit", str(upload), "--org", org_code[:-2] + "X9", "--user", "admin")
    _refused_with_the_doctors_message(code, err)
    assert Registry.from_config().list_uploads() == []


def test_run_without_a_store_refuses_before_making_keys(unchosen: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _run(capsys, "run")
    _refused_with_the_doctors_message(code, err)
    assert not any((unchosen / "keys").glob("*")), "no demo keys on a host without a store"
    assert not (unchosen / "s3").exists()


def test_a_process_that_lost_the_setting_claims_nothing(s3_store, org_code: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    """Landed while the home's process chose the embedded store; a later process without the
    setting (and no choice recorded in the home) must not claim, fetch or charge the upload."""
    provision_hospitals(org_code)
    assert cli.main(["keys", "init"]) == 0
    upload = make_zip(tmp_path / "flu_upload.zip", {"flu_20260101.csv": csv_bytes("flu_", org_code)})
    assert cli.main(["submit", str(upload), "--org", org_code, "--user", "admin"]) == 0
    [landed] = Registry.from_config().list_uploads()
    capsys.readouterr()
    monkeypatch.delenv("HQMS_S3_ENDPOINT")
    code, err = _run(capsys, "ingest", landed["upload_id"])
    _refused_with_the_doctors_message(code, err)
    after = Registry.from_config().get(landed["upload_id"])
    assert (after["status"], after["attempts"]) == ("landed", 0)


def test_doctor_names_the_setting_and_the_local_choice(unchosen: Path) -> None:
    checks = {c.name: c for c in doctor.run_checks(config.load())}
    for name in ("config", "s3"):
        assert checks[name].status == doctor.FAIL
        assert "HQMS_S3_ENDPOINT is not set" in checks[name].message
        assert "HQMS_S3_ENDPOINT=embedded" in checks[name].fix and "hqms s3 start" in checks[name].fix


def test_s3_start_records_the_choice_for_later_processes(unchosen: Path, org_code: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    cfg = config.load()
    assert not cfg.s3_configured
    try:
        assert cli.main(["s3", "start"]) == 0
        assert (unchosen / "s3" / "chosen").stat().st_mode & 0o077 == 0
        assert config.load().embedded_s3, "a later process without the setting finds the home's choice"
        upload = make_zip(tmp_path / "flu_upload.zip", {"flu_20260101.csv": csv_bytes("flu_", org_code)})
        assert cli.main(["submit", str(upload), "--org", org_code, "--user", "admin"]) == 0
        assert [u["status"] for u in Registry.from_config().list_uploads()] == ["landed"]
        # a setting naming another server wins over the recorded choice
        monkeypatch.setenv("HQMS_S3_ENDPOINT", "http://minio.internal:9000")
        assert not config.load().embedded_s3
    finally:
        embedded_s3.stop(cfg)


def test_the_setting_chooses_in_any_spelling(hqms_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQMS_S3_ENDPOINT", " Embedded ")
    cfg = config.load()
    assert cfg.embedded_s3 and cfg.s3_configured
    assert cfg.as_dict()["s3"]["embedded"] is True
    monkeypatch.delenv("HQMS_S3_ENDPOINT")
    assert config.load().as_dict()["s3"]["endpoint"] == "not configured"


def test_a_home_on_an_external_store_gets_no_demo_keys(shared_s3_env, hqms_home: Path) -> None:
    """Demo keys belong to the embedded store: a production home (external S3) without
    provisioned keys stops at "keys missing" instead of minting a vault key pair beside the data."""
    from hqms import keys
    from hqms.ingest.cli import bootstrap_local
    from hqms.ingest.run import claim

    cfg = config.load()
    assert not cfg.embedded_s3
    bootstrap_local(cfg)
    assert not keys.keyring_path(cfg).exists() and not keys.private_key_path(cfg).exists()
    with pytest.raises(keys.KeyringError):
        claim()
