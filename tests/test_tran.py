"""Front-end machine mode against a real S3 server that the tests stop and restart."""
from __future__ import annotations

import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import csv_bytes, provision_hospitals, synthetic_org_code

from hqms import cli, config, embedded_s3, tran
from hqms.objectstore import ObjectStore
from hqms.registry import Registry


@pytest.fixture(autouse=True)
def _hospital_accounts(hqms_home: Path, org_code: str) -> None:
    """Intake accepts uploads only for orgs with an active hospital account."""
    provision_hospitals(org_code, synthetic_org_code(3))


@pytest.fixture
def remote(tmp_path: Path, hqms_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[config.Config]:
    """An S3 server of its own (another home's embedded server) used as the external endpoint,
    so tests can stop it without the client restarting it. Yields that server's config."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HQMS_HOME", str(tmp_path / "remote_home"))
        remote_cfg = config.load()
    endpoint, access, secret = embedded_s3.ensure_running(remote_cfg)
    monkeypatch.setenv("HQMS_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("HQMS_S3_ACCESS_KEY", access)
    monkeypatch.setenv("HQMS_S3_SECRET_KEY", secret)
    try:
        yield remote_cfg
    finally:
        embedded_s3.stop(remote_cfg)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def _opts(inbox: Path, org: str, **kw) -> tran.Options:
    return tran.Options(watch_dir=inbox, org_code=org, user="前置机", settle=0.2, retries=2,
                        backoff=0.05, **kw)


def _landing_keys() -> list[str]:
    store = ObjectStore.from_config()
    return list(store.list(store.buckets["landing"]))


def _uploads() -> list[dict]:
    return Registry.from_config().list_uploads()


def test_stable_rule_skips_files_still_being_written(remote: config.Config, inbox: Path,
                                                     org_code: str) -> None:
    (inbox / "flu_done.csv").write_bytes(csv_bytes("flu_", org_code))
    growing = inbox / "flu_growing.csv"
    growing.write_bytes(csv_bytes("flu_", org_code))
    stop = threading.Event()

    def writer() -> None:
        with growing.open("ab") as fh:
            while not stop.is_set():
                fh.write(b"\r\n")
                fh.flush()
                time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = tran.run_once(_opts(inbox, org_code))
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0 and len(result.uploaded) == 1
    assert sorted(p.name for p in inbox.iterdir()) == ["flu_growing.csv"]
    [upload] = _uploads()
    got = inbox.parent / "got.zip"
    store = ObjectStore.from_config()
    store.get_file(store.buckets["landing"], upload["object_key"], got)
    with zipfile.ZipFile(got) as zf:
        assert zf.namelist() == ["flu_done.csv"]


def test_unknown_files_untouched_and_logged(remote: config.Config, inbox: Path, org_code: str,
                                            hqms_home: Path) -> None:
    strangers = {"readme.txt": b"x", "abc_1.csv": b"a,b\r\n", "~$flu_1.csv": b"lock",
                 "flu_1.csv.tmp": b"partial"}
    for name, data in strangers.items():
        (inbox / name).write_bytes(data)
    (inbox / "flu_1.csv").write_bytes(csv_bytes("flu_", org_code))

    result = tran.run_once(_opts(inbox, org_code))

    assert sorted(result.unknown) == sorted(strangers)
    assert {p.name: p.read_bytes() for p in inbox.iterdir()} == strangers
    log = (hqms_home / "logs" / "tran" / f"{org_code}.log").read_text(encoding="utf-8")
    assert all(name in log for name in strangers)
    assert "delivered" in log


def test_bundles_per_stream_within_limit_and_keep(remote: config.Config, inbox: Path,
                                                  org_code: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQMS_MAX_ZIP_BYTES", "40000")
    for i in range(5):  # ~30 KB of hex each, ~15 KB deflated: two fit in one 40 KB bundle
        (inbox / f"flu_{i}.csv").write_text("P900\r\n" + os.urandom(15000).hex(), encoding="ascii")
    (inbox / "fever_1.csv").write_bytes(csv_bytes("fever_", org_code))
    keep = tmp_path / "delivered"

    result = tran.run_once(_opts(inbox, org_code, keep_dir=keep))

    uploads = _uploads()
    assert result.exit_code == 0 and len(uploads) == len(result.uploaded) == 4  # 3 flu + 1 fever
    assert {u["channel"] for u in uploads} == {"tran"}
    assert sorted(u["stream"] for u in uploads) == ["fever", "flu", "flu", "flu"]
    assert all(u["size_bytes"] <= 40000 and u["status"] == "landed" for u in uploads)
    assert list(inbox.iterdir()) == []
    assert sorted(p.name for p in keep.iterdir()) == ["fever_1.csv"] + [f"flu_{i}.csv" for i in range(5)]


def test_store_down_deletes_nothing_then_uploads_exactly_once(remote: config.Config, inbox: Path,
                                                              org_code: str) -> None:
    names = ["flu_a.csv", "flu_b.csv", "fever_a.csv"]
    for name in names:
        (inbox / name).write_bytes(csv_bytes(name.split("_")[0] + "_", org_code))
    embedded_s3.stop(remote)

    down = tran.run_once(_opts(inbox, org_code))
    assert down.exit_code == 3 and down.pending == 2
    assert sorted(p.name for p in inbox.iterdir()) == sorted(names)
    assert _uploads() == []

    embedded_s3.ensure_running(remote)  # same port: the configured endpoint works again
    up = tran.run_once(_opts(inbox, org_code))
    assert up.exit_code == 0 and len(up.uploaded) == 2
    assert list(inbox.iterdir()) == []
    assert len(_uploads()) == 2 and len(_landing_keys()) == 2
    assert tran.run_once(_opts(inbox, org_code)).uploaded == []  # nothing left to send


def test_server_killed_between_upload_and_delete(remote: config.Config, inbox: Path,
                                                 org_code: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (inbox / "flu_a.csv").write_bytes(csv_bytes("flu_", org_code))
    real_submit = tran.submit

    def submit_then_server_dies(*args, **kwargs):
        result = real_submit(*args, **kwargs)
        embedded_s3.stop(remote)
        return result

    monkeypatch.setattr(tran, "submit", submit_then_server_dies)
    first = tran.run_once(_opts(inbox, org_code))
    assert first.exit_code == 3
    assert (inbox / "flu_a.csv").exists()  # landed, but not verified: nothing deleted
    assert [u["status"] for u in _uploads()] == ["landed"]

    monkeypatch.setattr(tran, "submit", real_submit)
    embedded_s3.ensure_running(remote)
    second = tran.run_once(_opts(inbox, org_code))
    assert second.exit_code == 0 and len(second.uploaded) == 1
    assert not (inbox / "flu_a.csv").exists()
    assert [u["status"] for u in _uploads()] == ["landed"]  # no second upload, no duplicate record


def test_crash_before_upload_id_journalled_adopts_the_landed_upload(
        remote: config.Config, inbox: Path, org_code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (inbox / "flu_a.csv").write_bytes(csv_bytes("flu_", org_code))
    real_submit = tran.submit

    def submit_then_power_cut(*args, **kwargs):
        real_submit(*args, **kwargs)
        raise SystemExit("power cut")

    monkeypatch.setattr(tran, "submit", submit_then_power_cut)
    with pytest.raises(SystemExit):
        tran.run_once(_opts(inbox, org_code))
    monkeypatch.setattr(tran, "submit", real_submit)

    result = tran.run_once(_opts(inbox, org_code))
    assert result.exit_code == 0 and not (inbox / "flu_a.csv").exists()
    assert [u["status"] for u in _uploads()] == ["landed"]


def test_refused_bundle_keeps_originals_and_is_not_resent(remote: config.Config, inbox: Path,
                                                          org_code: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQMS_MAX_ZIP_BYTES", "3000")
    (inbox / "flu_big.csv").write_bytes(os.urandom(6000))  # too big even alone
    first = tran.run_once(_opts(inbox, org_code))
    assert first.exit_code == 1 and (inbox / "flu_big.csv").exists()
    [upload] = _uploads()
    assert (upload["status"], upload["channel"]) == ("rejected", "tran")
    assert Registry.from_config().errors(upload["upload_id"])[0]["rule"] == "zip_too_large"
    assert tran.run_once(_opts(inbox, org_code)).exit_code == 0
    assert len(_uploads()) == 1 and _landing_keys() == []


def test_cli_once(remote: config.Config, inbox: Path, org_code: str, hqms_home: Path,
                  capsys: pytest.CaptureFixture) -> None:
    (inbox / "flu_a.csv").write_bytes(csv_bytes("flu_", org_code))
    code = cli.main(["tran", "watch", str(inbox), "--org", org_code, "--user", "tran", "--once",
                     "--settle", "0.2"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err and "delivered" in err
    assert list(inbox.iterdir()) == []
    assert (hqms_home / "logs" / "tran" / f"{org_code}.log").exists()


def test_hostile_file_names_cannot_forge_run_log_lines_or_reach_the_terminal_raw(
        remote: config.Config, inbox: Path, org_code: str, hqms_home: Path, capsys) -> None:
    forged = "x.txt\n2026-01-01 00:00:00,000 INFO 上传成功 delivered all\x1b[2J\u202e"
    (inbox / forged).write_bytes(b"x")
    result = tran.run_once(_opts(inbox, org_code))
    assert result.unknown == [forged]
    log = (hqms_home / "logs" / "tran" / f"{org_code}.log").read_text(encoding="utf-8")
    assert "\x1b" not in log and "\u202e" not in log and "\\x1b[2J" in log
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in log.splitlines())
    assert "\x1b" not in capsys.readouterr().err
