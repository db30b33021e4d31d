"""End to end through the real pieces: generator → submit → ``airflow dags test hqms_ingest``.

One module-level run (a fresh HQMS_HOME with the embedded rclone S3 server, SQLite registry and
Airflow metadata, DuckDB warehouse) over a generated day with injected defects, then assertions on
what hospitals and analysts would see.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from conftest import csv_bytes, make_zip, provision_plan
from hqms import config, embedded_s3, spec
from hqms.cli import main as hqms
from hqms.registry import Registry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: The zero report's zip (under the generator's output, keyed like the plan's zips).
ZERO_REPORT = "zero/flu_20250108.zip"
#: Columns whose plaintext must never reach the warehouse, logs or XComs.
PERSONAL = {"P4": "name", "P13": "id_number", "P802": "phone", "P7502": "visit card", "P7000": "visit serial",
            "XM": "name", "ZJHM": "id_number", "LXDH": "phone", "JZKH": "visit card", "P3": "record number"}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HQMS_", "AIRFLOW"))}
    env.update(HQMS_HOME=str(home), HQMS_S3_ENDPOINT=config.EMBEDDED_S3)
    return env


def _submit(path: Path, row: dict[str, str]) -> str:
    """``hqms submit`` in a child process, as the plan's ``row`` says; returns the upload id."""
    out = subprocess.run([sys.executable, "-m", "hqms.cli", "submit", str(path), "--org", row["org_code"],
                          "--user", row["uploader"], "--received-at", row["planned_received_at"]],
                         capture_output=True, text=True, env=dict(os.environ), check=True)
    return out.stdout.split()[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Generate 4 hospitals × 2 days with defects, submit everything plus a zero report (the flu
    stream's files with their header and no record, the next day), ingest through Airflow."""
    home = tmp_path_factory.mktemp("home")
    gen = tmp_path_factory.mktemp("gen") / "out"
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_env(home))
    cfg = config.load()  # kept: a test below unsets HQMS_HOME, teardown must stop THIS home's server
    try:
        assert hqms(["generate", "--hospitals", "4", "--start", "2025-01-06", "--days", "2", "--seed", "7",
                     "--errors", "0.03", "--out", str(gen), "--quiet"]) == 0
        assert hqms(["keys", "init"]) == 0
        provision_plan(gen / "upload_plan.csv")
        with (gen / "upload_plan.csv").open(encoding="utf-8") as fh:
            plan = list(csv.DictReader(fh))
        uploads = {row["zip"]: _submit(gen / row["zip"], row) for row in plan}
        flu = next(row for row in plan if row["stream"] == "flu")
        zero = make_zip(gen / ZERO_REPORT, {f"{ds.prefix}20250108.csv": csv_bytes(ds.prefix, flu["org_code"], rows=0)
                                            for ds in spec.stream_datasets("flu")})
        uploads[ZERO_REPORT] = _submit(zero, {**flu, "planned_received_at": "2025-01-08T21:00:00+08:00"})
        assert hqms(["run", "--no-marts"]) == 0
        yield {"home": home, "gen": gen, "uploads": uploads, "cfg": cfg}
    finally:
        embedded_s3.stop(cfg)
        os.environ.clear()
        os.environ.update(saved)


def _warehouse(run) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(run["cfg"].warehouse_path), read_only=True)


def test_upload_errors_are_exactly_the_injected_defects(run):
    manifest = [json.loads(line) for line in (run["gen"] / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) > 20
    expected = {(run["uploads"][m["zip"]], m["file"], m["row"], m["column"], m["rule"]) for m in manifest}
    with _warehouse(run) as con:
        got = set(con.execute("""SELECT upload_id, file_name, "row", column_code, rule FROM ops.upload_errors
                                 WHERE severity = 'error'""").fetchall())
    assert got - expected == set(), "false positives"
    assert expected - got == set(), "missed defects"


def test_conforming_counts_match_records_minus_defective_rows(run):
    summary = json.loads((run["gen"] / "summary.json").read_text())
    manifest = [json.loads(line) for line in (run["gen"] / "manifest.jsonl").read_text().splitlines()]
    bad_rows = Counter(run["uploads"][m["zip"]] for m in {(m["zip"], m["file"], m["row"]): m
                                                          for m in manifest}.values())
    with _warehouse(run) as con:
        rows = con.execute("SELECT upload_id, record_count, conforming_count, status FROM ops.uploads").fetchall()
    assert len(rows) == len(run["uploads"])
    total = sum(r[1] for r in rows)
    assert total == summary["totals"]["records"]
    for upload_id, records, conforming, status in rows:
        assert conforming == records - bad_rows[upload_id]
        assert status == ("processed" if conforming == records else "partially_accepted")
    # the registry (what `hqms uploads` shows) agrees with the warehouse
    out = subprocess.run([sys.executable, "-m", "hqms.cli", "uploads", "--json"], capture_output=True, text=True,
                         env=_env(run["home"]), check=True)
    listed = {u["upload_id"]: (u["record_count"], u["conforming_count"]) for u in json.loads(out.stdout)}
    assert listed == {r[0]: (r[1], r[2]) for r in rows}


def test_a_header_only_upload_is_a_processed_zero_report(run):
    """零报告: a day without cases is reported, not rejected (the marts count ``processed`` as
    received); its report holds the empty_file warning only."""
    upload_id = run["uploads"][ZERO_REPORT]
    upload = Registry.from_config().get(upload_id)
    assert (upload["status"], upload["record_count"], upload["conforming_count"]) == ("processed", 0, 0)
    assert upload["message_zh"] == "零报告：文件只有表头，没有记录"
    assert {(e["rule"], e["severity"]) for e in Registry.from_config().errors(upload_id)} == {("empty_file", "warning")}
    with _warehouse(run) as con:
        assert con.execute("SELECT status, record_count, conforming_count FROM ops.uploads WHERE upload_id = ?",
                           [upload_id]).fetchall() == [("processed", 0, 0)]


def _plaintext_identifiers(gen: Path) -> set[str]:
    values: set[str] = set()
    for path in gen.rglob("*.zip"):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                text = zf.read(info).decode("gb18030")
                for rec in csv.DictReader(io.StringIO(text)):
                    values.update(v for k, v in rec.items() if k in PERSONAL and v and len(v) >= 2 and v != "-")
    return values


def test_no_plaintext_identifier_in_warehouse_logs_or_xcom(run):
    secrets = _plaintext_identifiers(run["gen"])
    assert len(secrets) > 100
    with _warehouse(run) as con:
        con.execute("CREATE TEMP TABLE secrets (v VARCHAR)")
        con.executemany("INSERT INTO secrets VALUES (?)", [(s,) for s in secrets])
        columns = con.execute("""SELECT table_schema, table_name, column_name FROM information_schema.columns
                                 WHERE data_type = 'VARCHAR' AND table_catalog = current_database()""").fetchall()
        assert len(columns) > 100
        for schema, table, column in columns:
            hits = con.execute(f'SELECT count(*) FROM "{schema}"."{table}" t JOIN secrets s '
                               f'ON t."{column}" = s.v OR contains(t."{column}", s.v) AND length(s.v) >= 6'
                               ).fetchone()[0]
            assert hits == 0, f"plaintext identifier in {schema}.{table}.{column}"
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in run["cfg"].log_dir.rglob("*")
             if p.is_file()]
    xcom = sqlite3.connect(run["cfg"].airflow_home / "airflow.db").execute("SELECT value FROM xcom").fetchall()
    texts += [str(v) for (v,) in xcom]
    assert xcom, "the run pushed XComs"
    blob = "\n".join(texts)
    leaked = [s for s in secrets if len(s) >= 6 and s in blob]
    assert leaked == []


def test_landing_is_empty_and_every_original_is_in_the_vault(run, tmp_path):
    from hqms.objectstore import ObjectStore

    assert os.environ["HQMS_HOME"] == str(run["home"])  # set by the module's run fixture
    store = ObjectStore.from_config(run["cfg"])
    assert list(store.list(run["cfg"].buckets["landing"])) == []
    zip_rel, upload_id = next(iter(run["uploads"].items()))
    out = tmp_path / "restored.zip"
    key = run["cfg"].keys_dir / "vault_sm2_private.hex"
    assert hqms(["vault", "decrypt", upload_id, "--private-key", str(key), "--out", str(out)]) == 0
    assert out.read_bytes() == (run["gen"] / zip_rel).read_bytes()


def test_one_row_per_natural_key_and_lineage(run):
    with _warehouse(run) as con:
        for table in ("flu", "fever", "lis", "pdr", "mzsy"):
            n, distinct, no_lineage = con.execute(
                f"SELECT count(*), count(DISTINCT _nk), count(*) FILTER (WHERE _upload_id IS NULL) FROM dw.{table}"
            ).fetchone()
            assert n > 0 and n == distinct and no_lineage == 0, table


def test_error_summary_groups_every_error_of_an_upload(run, capsys):
    """`hqms errors ID --summary`: one line per (file, column, rule), counts adding up to the list."""
    registry = Registry.from_config()
    upload_id = max(run["uploads"].values(), key=lambda u: len(registry.errors(u)))
    errors = registry.errors(upload_id)
    assert len(errors) >= 2
    assert hqms(["errors", upload_id, "--summary", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert sum(g["count"] for g in groups) == len(errors)
    keys = {(e["file_name"], e["column"], e["rule"], e["check_id"]) for e in errors}
    assert {(g["file_name"], g["column"], g["rule"], g["check_id"]) for g in groups} == keys
    for g in groups:
        rows = sorted(e["row"] for e in errors if e["check_id"] == g["check_id"]
                      and e["file_name"] == g["file_name"] and e["row"] is not None)
        assert g["first_rows"] == rows[:10]
    assert hqms(["errors", upload_id, "--summary"]) == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) == len(groups) + 1  # the upload's header line, then one per group
