"""``hqms hospitals load FILE``: the hospital registry (医院信息汇总表) into ``ref.hospitals``.

The registry is deployment data (hospitals join and leave; provinces send it as a spreadsheet),
so it is loaded into the warehouse rather than committed as a dbt seed. The data manager's
name, phone and e-mail stay out of the warehouse: they are personal data the marts never need.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from hqms import config as hqms_config
from hqms.errors import UserError
from hqms.validators import canonical_code, medical_org_code_valid

COLUMNS = ("org_code", "org_code9", "uscc", "licence_no", "name", "province_code", "city_code",
           "city_name", "medicine_type", "category", "level", "grade")
#: Identifier columns stored in canonical upper-case form (:func:`hqms.validators.canonical_code`):
#: a registry typed with ``…3222e`` must match the uploads, which are stored so too.
IDENTIFIERS = ("org_code", "org_code9", "uscc", "licence_no")


def read_registry(path: Path) -> list[tuple[str, ...]]:
    """Rows of a registry CSV (UTF-8, with or without BOM) restricted to :data:`COLUMNS`."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing columns {', '.join(missing)}")
        rows = []
        for n, rec in enumerate(reader, start=1):
            if not medical_org_code_valid(rec["org_code"]):
                raise UserError(f"{path}: row {n}: org_code is not a valid 22-character 医疗机构代码")
            rows.append(tuple(canonical_code(rec[c]) if c in IDENTIFIERS else rec[c].strip() for c in COLUMNS))
    return rows


def load(path: Path, cfg: hqms_config.Config | None = None) -> int:
    """Replace ``ref.hospitals`` with the file's rows; returns the number loaded."""
    from hqms import warehouse_attach
    from hqms.ingest.process import open_warehouse

    rows = read_registry(path)
    cfg = cfg or hqms_config.load()
    with warehouse_attach.write_lock(cfg, "hqms hospitals load"):
        con = open_warehouse(cfg)
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM ref.hospitals")
            con.executemany(f"INSERT INTO ref.hospitals VALUES ({', '.join('?' * len(COLUMNS))})", rows)
            con.execute("COMMIT")
        finally:
            con.close()
    return len(rows)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hospitals", help="hospital registry (医院信息汇总表)")
    verbs = p.add_subparsers(dest="verb", required=True)
    load_p = verbs.add_parser("load", help="replace ref.hospitals with a registry CSV")
    load_p.add_argument("file", type=Path)
    load_p.set_defaults(func=lambda a: print(f"loaded {load(a.file)} hospitals") or 0)
