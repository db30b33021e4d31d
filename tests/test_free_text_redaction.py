"""An ID or phone number a hospital typed into free text, or into a file name, never reaches the
warehouse or the upload records in plain text."""
from __future__ import annotations

import csv
import zipfile
from datetime import datetime
from pathlib import Path

import duckdb

from hqms import config
from hqms.cli import main as hqms
from hqms.ingest.run import claim, process
from hqms.intake.submit import submit
from hqms.registry import Registry
from conftest import edit_csv_in_zip, provision_plan

ID_NUMBER = "11010519491231002X"   # valid check character
PHONE = "13912345678"


def test_identifiers_in_free_text_and_file_names_are_redacted(s3_store, tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", "3",
                 "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    assert hqms(["keys", "init"]) == 0
    plan = next(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")))
    provision_plan(gen / "upload_plan.csv")

    def type_identifiers(rows: list[list[str]]) -> None:
        at = rows[0].index("P8003")
        rows[1][at] = f"阳性 患者身份证{ID_NUMBER} 电话 139-1234-5678"
        rows[2][at] = f"复核电话{PHONE}"

    edited = edit_csv_in_zip(gen / plan["zip"], tmp_path / "edited.zip", "lis_", type_identifiers)
    named = tmp_path / f"flu_20250106_{ID_NUMBER}.zip"
    with zipfile.ZipFile(edited) as zin, zipfile.ZipFile(named, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():  # the lis file named after the patient, as a re-send might be
            name = info.filename.replace("lis_20250106", f"lis_20250106_{PHONE}")
            zout.writestr(name, zin.read(info))
    upload_id = submit(named, plan["org_code"], plan["uploader"],
                       received_at=datetime.fromisoformat("2025-01-07T09:00:00+08:00")).upload_id
    for batch in claim():
        process(batch)

    cfg = config.load()
    con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    texts = [t for (t,) in con.execute("SELECT result_text FROM dw.lis WHERE _upload_id = ? AND result_text "
                                       "LIKE '%已脱敏%' ORDER BY _source_row", [upload_id]).fetchall()]
    assert texts == ["阳性 患者身份证[已脱敏] 电话 [已脱敏]", "复核电话[已脱敏]"]
    dumped = []
    for (schema, table) in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall():
        dumped += [repr(r) for r in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()]
    dumped += [repr(Registry.from_config(cfg).get(upload_id)), repr(Registry.from_config(cfg).errors(upload_id))]
    text = "\n".join(dumped)
    assert ID_NUMBER not in text and PHONE not in text and "139-1234-5678" not in text
    assert "lis_20250106_1*********8.csv" in text  # the name is kept, its number masked
