"""``hqms submit`` / ``uploads`` / ``errors`` against a real rclone S3 server and registry."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BAD_ZIP_CASES, csv_bytes, make_zip, provision_hospitals, synthetic_org_code

from hqms import cli, config, spec
from hqms.intake.policy import PUT_ACTIONS, landing_policy
from hqms.objectstore import ObjectStore
from hqms.registry import Registry


@pytest.fixture(autouse=True)
def _hospital_accounts(hqms_home: Path, org_code: str) -> None:
    """Intake accepts uploads only for orgs with an active hospital account."""
    provision_hospitals(org_code, synthetic_org_code(3))


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _landing(store: ObjectStore) -> list[str]:
    return list(store.list(store.buckets["landing"]))


@pytest.fixture
def good_zip(tmp_path: Path, org_code: str) -> Path:
    return make_zip(tmp_path / "flu_upload.zip", {"flu_20260101.csv": csv_bytes("flu_", org_code)})


@pytest.mark.parametrize("case", BAD_ZIP_CASES)
def test_bad_zip_refused_and_nothing_lands(case: str, bad_zips: dict, shared_s3_env: ObjectStore,
                                           org_code: str, capsys: pytest.CaptureFixture) -> None:
    path, rule = bad_zips[case]
    code, out, err = _run(capsys, "submit", str(path), "--org", org_code, "--user", "admin")
    assert code == 1
    assert "Traceback" not in err and f"[{rule}]" in err
    assert _landing(shared_s3_env) == []
    [record] = Registry.from_config().list_uploads()
    assert (record["status"], record["stage"], record["object_key"]) == ("rejected", "intake", None)
    [error] = Registry.from_config().errors(record["upload_id"])
    assert error["rule"] == rule and error["row"] is None


def test_bad_org_code_refused(good_zip: Path, shared_s3_env: ObjectStore,
                              capsys: pytest.CaptureFixture) -> None:
    bad_org = synthetic_org_code(2)[:-1] + "7"  # last character must be 1, 2 or 9
    code, _, err = _run(capsys, "submit", str(good_zip), "--org", bad_org, "--user", "admin")
    assert code == 1 and "[bad_org_code]" in err and "Traceback" not in err
    assert _landing(shared_s3_env) == []


def test_a_lower_case_org_code_lands_under_the_canonical_one(good_zip: Path, s3_store: ObjectStore, org_code: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Case and blanks of --org never make another hospital: one prefix, one registry code."""
    code, out, err = _run(capsys, "submit", str(good_zip), "--org", f" {org_code.lower()} ", "--user", "admin")
    assert code == 0, err
    record = Registry.from_config().get(out.strip())
    assert record["org_code"] == org_code and record["object_key"].startswith(f"flu/{org_code}/")
    assert any(c.isalpha() for c in org_code)
    [statement] = landing_policy(org_code.lower(), "b")["Statement"]
    assert statement["Resource"][0] == f"arn:aws:s3:::b/{spec.STREAMS[0]}/{org_code}/*"


def test_good_zip_lands_with_metadata(good_zip: Path, s3_store: ObjectStore, org_code: str,
                                      capsys: pytest.CaptureFixture) -> None:
    # 23:30 UTC on 1 January is 07:30 on 2 January in China: the key uses the China date.
    code, out, err = _run(capsys, "submit", str(good_zip), "--org", org_code, "--user", "王管理",
                          "--received-at", "2026-01-01T23:30:00+00:00")
    assert code == 0, err
    upload_id = out.strip()
    record = Registry.from_config().get(upload_id)
    assert record["status"] == "landed" and record["stream"] == "flu"
    assert record["object_key"] == f"flu/{org_code}/2026/01/02/{upload_id}.zip"
    assert upload_id.startswith("u20260101233000")
    info = s3_store.stat(s3_store.buckets["landing"], record["object_key"])
    assert info.size == good_zip.stat().st_size
    assert info.metadata["sha256"] == record["sha256"]
    assert (info.metadata["org"], info.metadata["uploader"], info.metadata["upload_id"]) \
        == (org_code, "王管理", upload_id)
    assert s3_store.sha256(s3_store.buckets["landing"], record["object_key"]) == record["sha256"]


def test_duplicate_is_recorded_not_landed(good_zip: Path, s3_store: ObjectStore, org_code: str,
                                          tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = _run(capsys, "submit", str(good_zip), "--org", org_code, "--user", "a")[1].strip()
    renamed = tmp_path / "again.zip"
    renamed.write_bytes(good_zip.read_bytes())
    code, out, _ = _run(capsys, "submit", str(renamed), "--org", org_code, "--user", "b", "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["status"], result["duplicate_of"]) == ("duplicate", first)
    assert len(_landing(s3_store)) == 1
    # Another hospital sending the same bytes is not a duplicate of the first one.
    other = synthetic_org_code(3)
    code, out, _ = _run(capsys, "submit", str(good_zip), "--org", other, "--user", "c",
                        "--stream", "flu")
    assert code == 0 and Registry.from_config().get(out.strip())["status"] == "landed"


def test_uploads_and_errors_cli(good_zip: Path, bad_zips: dict, s3_store: ObjectStore,
                                org_code: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    landed = _run(capsys, "submit", str(good_zip), "--org", org_code, "--user", "admin",
                  "--received-at", "2026-02-01T09:00:00")[1].strip()
    _run(capsys, "submit", str(bad_zips["zip_slip"][0]), "--org", org_code, "--user", "admin",
         "--received-at", "2026-02-03T09:00:00")
    rejected = Registry.from_config().list_uploads(status="rejected")[0]["upload_id"]

    code, out, _ = _run(capsys, "uploads")
    assert code == 0
    header = out.splitlines()[0]
    for column in ("文件名", "上传时间", "上传用户", "处理状态", "错误信息", "数据包记录数", "接口标准达标数"):
        assert column in header
    assert out.index(rejected) < out.index(landed)  # newest first
    assert "2026-02-01 09:00:00" in out  # shown in China time, as given

    rows = json.loads(_run(capsys, "uploads", "--json", "--org", org_code)[1])
    assert [r["upload_id"] for r in rows] == [rejected, landed]
    assert {"upload_id", "stream", "org_code", "uploader", "file_name", "received_at", "status",
            "message", "record_count", "conforming_count"} <= set(rows[0])
    assert rows[1]["received_at"] == "2026-02-01T01:00:00+00:00"
    since = json.loads(_run(capsys, "uploads", "--json", "--since", "2026-02-02")[1])
    assert [r["upload_id"] for r in since] == [rejected]
    assert json.loads(_run(capsys, "uploads", "--json", "--org", synthetic_org_code(9))[1]) == []

    code, out, _ = _run(capsys, "errors", rejected, "--json", "--csv", str(tmp_path / "e.csv"))
    [error] = json.loads(out)
    assert error["rule"] == "unsafe_path" and error["row"] is None
    assert {"file_name", "row", "column", "rule", "message", "message_en", "severity",
            "value_masked"} <= set(error)
    raw = (tmp_path / "e.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert len(table) == 2 and table[1][3] == "unsafe_path"
    out = _run(capsys, "errors", rejected)[1]
    assert "错误 1  警告 0" in out.splitlines()[0]
    code, _, err = _run(capsys, "errors", "u-does-not-exist")
    assert code == 2 and "Traceback" not in err


@pytest.mark.slow  # imports DuckDB + Great Expectations: 5-10 s on a 2-core machine
def test_dry_run_validates_rows_and_lands_nothing(tmp_path: Path, s3_store: ObjectStore,
                                                  org_code: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    path = make_zip(tmp_path / "dry.zip", {"flu_1.csv": csv_bytes("flu_", org_code, rows=3)})
    code, out, err = _run(capsys, "submit", str(path), "--org", org_code, "--user", "a",
                          "--dry-run", "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["record_count"] == 3 and report["error_count"] > 0
    assert {e["row"] for e in report["errors"] if e["rule"] == "required"} == {1, 2, 3}
    assert _landing(s3_store) == [] and Registry.from_config().list_uploads() == []


def test_store_unavailable_records_nothing(good_zip: Path, hqms_home: Path, org_code: str,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HQMS_S3_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("HQMS_S3_ACCESS_KEY", "k" * 20)
    monkeypatch.setenv("HQMS_S3_SECRET_KEY", "s" * 40)
    code, _, err = _run(capsys, "submit", str(good_zip), "--org", org_code, "--user", "a")
    assert code == 3 and "Traceback" not in err
    assert Registry.from_config().list_uploads() == []


@pytest.mark.slow  # five CLI processes start in parallel
def test_concurrent_submits_while_warehouse_is_locked(tmp_path: Path, s3_store: ObjectStore,
                                                      org_code: str) -> None:
    """Submits never touch DuckDB: they succeed while another process holds the write lock."""
    cfg = config.load()
    cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time\n"
         f"con = duckdb.connect({str(cfg.warehouse_path)!r})\n"
         "con.execute('CREATE TABLE IF NOT EXISTS t(x INT)'); con.execute('BEGIN')\n"
         "con.execute('INSERT INTO t VALUES (1)')\n"
         "print('locked', flush=True); time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        probe = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(cfg.warehouse_path)!r})"],
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "lock" in probe.stderr.lower()  # the lock is real

        zips = [make_zip(tmp_path / f"z{i}.zip", {f"flu_{i}.csv": csv_bytes("flu_", org_code, i + 1)})
                for i in range(4)]
        zips.append(zips[0])  # the same bytes twice at once: one lands, one is a duplicate
        started = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "hqms.cli", "submit", str(z), "--org",
                                   org_code, "--user", f"u{i}", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, z in enumerate(zips)]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            results.append(json.loads(out))
        assert time.monotonic() - started < 60
    finally:
        holder.kill()
        holder.wait()
    statuses = sorted(r["status"] for r in results)
    assert statuses == ["duplicate", "landed", "landed", "landed", "landed"]
    assert len(_landing(s3_store)) == 4
    assert len(Registry.from_config().list_uploads()) == 5


def test_policy_confines_a_hospital_to_its_prefix(hqms_home: Path, org_code: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "policy", "--org", org_code)
    assert code == 0
    policy = json.loads(out)
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert set(statement["Action"]) == set(PUT_ACTIONS)  # no Get, List or Delete
    bucket = config.load().buckets["landing"]
    assert statement["Resource"] == [f"arn:aws:s3:::{bucket}/{s}/{org_code}/*" for s in spec.STREAMS]

    read_back = landing_policy(org_code, "b", read_back=True)["Statement"][1]
    assert read_back["Action"] == ["s3:GetObject"]
    assert read_back["Resource"] == [
        f"arn:aws:s3:::b/{s}/{org_code}/*" for s in spec.STREAMS]
    code, _, err = _run(capsys, "policy", "--org", "*")  # would open every hospital's space
    assert code == 2 and "Traceback" not in err


@pytest.mark.parametrize(("user", "said"), [("", "empty"), ("   ", "empty"), ("u" * 65, "longer than 64"),
                                            ("admin\x1b[2J", "control"), ("a\nb", "control")])
def test_a_bad_uploader_is_a_permanent_refusal_not_an_outage(good_zip: Path, s3_store: ObjectStore,
                                                              org_code: str, capsys, user: str, said: str) -> None:
    """An over-long --user used to fail in S3 (metadata over 2 KB) and was reported as an outage
    (exit 3, retried for ever by the front-end machine)."""
    for extra in ([], ["--dry-run"]):
        code, out, err = _run(capsys, "submit", str(good_zip), "--org", org_code, "--user", user, *extra)
        assert code == 2 and said in err and "Traceback" not in err
    assert _landing(s3_store) == [] and Registry.from_config().list_uploads() == []
    assert _run(capsys, "submit", str(good_zip), "--org", org_code, "--user", "u" * 64)[0] == 0


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "9999-12-31",
                                  "1999-12-31", "2999-01-01"])
def test_an_extreme_received_at_is_a_clear_error(good_zip: Path, s3_store: ObjectStore, org_code: str,
                                                 capsys, when: str) -> None:
    code, out, err = _run(capsys, "submit", str(good_zip), "--org", org_code, "--user", "u",
                          "--received-at", when)
    assert code == 2 and "--received-at" in err and "Traceback" not in err
    assert _landing(s3_store) == []
