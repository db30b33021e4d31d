"""``hqms doctor`` against real components: the embedded S3 server, a real keyring, DuckDB files
held by another process, an S3 endpoint nobody listens on."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hqms import cli, config, doctor, embedded_s3, keys
from hqms.doctor import FAIL, OK, WARN


def by_name(results: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {r.name: r for r in results}


@pytest.fixture
def ready_home(hqms_home: Path, s3_store) -> config.Config:
    """The embedded default as `hqms run` leaves it: server up, buckets, demo keys."""
    cfg = config.load()
    s3_store.ensure_buckets()
    keys.ensure_demo_keys(cfg)
    return cfg


def test_all_green_on_the_embedded_default(ready_home: config.Config,
                                           capsys: pytest.CaptureFixture) -> None:
    results = by_name(doctor.run_checks())
    assert list(results) == [name for name, _ in doctor.CHECKS]
    assert {r.status for n, r in results.items() if n not in LIVE} == {OK}, [r.line() for r in results.values()]
    assert "SM4-GCM" in results["keys"].message
    # No live system runs here (no `hqms up`): the doctor says so, with the fix.
    assert all(results[n].status == WARN and "hqms up" in results[n].fix for n in LIVE)
    assert cli.main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(doctor.CHECKS)
    assert all(line.startswith("OK ") for line in lines if line.split()[1] not in LIVE)


#: Checks of the live system (scheduler heartbeat, last successful ingest): see tests/test_live.py.
LIVE = ("scheduler", "last-ingest")


def test_open_permissions_are_named_with_the_fix(ready_home: config.Config) -> None:
    assert doctor.check_permissions(ready_home).status == OK
    ready_home.keys_dir.chmod(0o755)
    (ready_home.embedded_s3_dir / "credentials.json").chmod(0o644)
    check = doctor.check_permissions(ready_home)
    assert check.status == WARN and "chmod -R go-rwx" in check.fix
    assert f"{ready_home.keys_dir} (0755)" in check.message and "credentials.json (0644)" in check.message


def test_vault_private_key_on_a_server_is_a_warning(ready_home: config.Config,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_vault_private_key(ready_home).status == OK  # the embedded demo's key
    monkeypatch.setenv("HQMS_S3_ENDPOINT", "http://minio.internal:9000")
    check = doctor.check_vault_private_key(config.load())
    assert check.status == WARN and "offline" in check.fix
    keys.private_key_path(ready_home).unlink()
    assert doctor.check_vault_private_key(config.load()).status == OK


def test_stopped_s3_is_reported_not_restarted(ready_home: config.Config,
                                              capsys: pytest.CaptureFixture) -> None:
    assert embedded_s3.stop(ready_home)
    results = by_name(doctor.run_checks())
    s3 = results["s3"]
    assert s3.status == FAIL
    assert "S3 unreachable" in s3.message and "not running" in s3.message
    assert "hqms s3 start" in s3.fix
    assert all(r.status == OK for name, r in results.items() if name not in ("s3", "orphans", *LIVE))
    assert results["orphans"].status == WARN and "not checked" in results["orphans"].message
    assert not embedded_s3.status(ready_home)["running"], "the doctor must not restart the server"
    assert cli.main(["doctor"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL s3")


def test_external_endpoint_nobody_listens_on(hqms_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HQMS_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HQMS_S3_ACCESS_KEY", "doctor-probe-access")
    monkeypatch.setenv("HQMS_S3_SECRET_KEY", "doctor-probe-secret-0123456789")
    s3 = by_name(doctor.run_checks())["s3"]
    assert s3.status == FAIL and f"unreachable at 127.0.0.1:{port}" in s3.message
    assert "HQMS_S3_ENDPOINT" in s3.fix


def test_missing_bucket_and_keys_say_how_to_fix(shared_s3_env, hqms_home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQMS_BUCKET_VAULT", "hqms-doctor-absent-vault")
    results = by_name(doctor.run_checks())
    assert results["s3"].status == FAIL
    assert "bucket(s) missing: hqms-doctor-absent-vault" in results["s3"].message
    assert results["keys"].status == FAIL and "hqms keys init" in results["keys"].fix
    assert not (hqms_home / "keys" / "keyring.json").exists(), "the doctor must not create keys"
    assert "hqms-doctor-absent-vault" not in [b.name for b in shared_s3_env._client.list_buckets()]


def test_wrong_credentials_are_told_apart_from_an_outage(shared_s3_env,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQMS_S3_SECRET_KEY", "not-the-secret-0123456789abcdefghijklmn")
    s3 = by_name(doctor.run_checks())["s3"]
    assert s3.status == FAIL and "refused the request" in s3.message
    assert "HQMS_S3_SECRET_KEY" in s3.fix


def test_tampered_keyring_fails(ready_home: config.Config) -> None:
    keyring = keys.keyring_path(ready_home)
    keyring.chmod(0o644)  # readable by others: the keyring refuses to load
    check = by_name(doctor.run_checks())["keys"]
    assert check.status == FAIL and "chmod 600" in check.message


def test_warehouse_locked_by_a_writer_is_said_so(ready_home: config.Config) -> None:
    path = ready_home.warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        check = by_name(doctor.run_checks())["warehouse"]
        assert check.status == WARN and "locked by a writer" in check.message
    finally:
        holder.kill()
        holder.wait()
    check = by_name(doctor.run_checks())["warehouse"]
    assert check.status == OK and "writable" in check.message


def test_broken_registry_and_airflow_db(ready_home: config.Config, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "not-a-database.sqlite"
    garbage.write_bytes(b"this is not an SQLite file" * 100)
    monkeypatch.setenv("HQMS_REGISTRY_URL", f"sqlite:///{garbage}")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{garbage}")
    results = by_name(doctor.run_checks())
    assert results["airflow-db"].status == FAIL and "unreachable" in results["airflow-db"].message
    # a damaged registry file is named as such, with the way back (issue 16: registry loss)
    assert results["registry"].status == FAIL and "damaged" in results["registry"].message
    assert "hqms registry recover" in results["registry"].fix
    assert results["orphans"].status == WARN and "registry unreadable" in results["orphans"].message
    assert "SQL_ALCHEMY_CONN" in results["airflow-db"].fix


def test_migrated_airflow_db_is_found(ready_home: config.Config) -> None:
    """An airflow.db with alembic_version in the Airflow home counts as initialised."""
    import sqlite3

    ready_home.airflow_home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(ready_home.airflow_home / "airflow.db")
    db.execute("create table other (x int)")
    db.commit()
    assert by_name(doctor.run_checks())["airflow-db"].status == WARN
    db.execute("create table alembic_version (version_num varchar(32))")
    db.commit()
    db.close()
    assert by_name(doctor.run_checks())["airflow-db"].status == OK
