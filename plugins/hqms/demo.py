"""``hqms demo``: the main job on the embedded default, end to end.

Generate a week of uploads for a few dozen synthetic hospitals, load their registry, open a
hospital account for each (intake accepts uploads only from orgs with one), submit every zip at its planned receive time (so reporting timeliness has something to measure), process
everything through the real Airflow DAGs (``hqms run``), then print a short summary of the marts.
Re-running with the same seed submits the same bytes again: the uploads are recorded as
duplicates and nothing is processed twice.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter
from datetime import date, datetime

from hqms import config as hqms_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: generate, submit, ingest and build marts on the embedded default")
    p.add_argument("--hospitals", type=int, default=30)
    p.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 6))
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--errors", type=float, default=0.01, help="share of rows with one injected defect")
    p.set_defaults(func=run)


def _step(text: str) -> float:
    print(f"==> {text}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    from hqms import embedded_s3, hospitals
    from hqms.cli import main as hqms_main
    from hqms.ingest.cli import bootstrap_local
    from hqms.intake.submit import submit

    cfg = hqms_config.load()
    embedded_s3.choose(cfg)  # the main job runs on the embedded default unless HQMS_S3_ENDPOINT says otherwise
    bootstrap_local(cfg)

    out = cfg.home / "demo" / f"seed{args.seed}-{args.hospitals}h-{args.start}-{args.days}d"
    t = _step(f"generate {args.hospitals} hospitals × {args.days} days from {args.start} into {out}")
    if not (out / "upload_plan.csv").exists():
        code = hqms_main(["generate", "--hospitals", str(args.hospitals), "--start", str(args.start),
                          "--days", str(args.days), "--seed", str(args.seed), "--errors", str(args.errors),
                          "--out", str(out), "--quiet"])
        if code:
            return code
    print(f"    done in {time.perf_counter() - t:.1f} s")

    t = _step("load the hospital registry (医院信息汇总表)")
    print(f"    {hospitals.load(out / 'registry' / 'hospitals.csv', cfg)} hospitals")

    t = _step("open hospital accounts (intake accepts uploads only from active hospital accounts)")
    print(f"    {provision_accounts(out, cfg)}")

    t = _step("submit every zip at its planned receive time")
    statuses: Counter[str] = Counter()
    with (out / "upload_plan.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            result = submit(out / row["zip"], row["org_code"], row["uploader"],
                            received_at=datetime.fromisoformat(row["planned_received_at"]), cfg=cfg)
            statuses[result.status] += 1
    print(f"    {dict(statuses)} in {time.perf_counter() - t:.1f} s")

    t = _step("process everything through Airflow (hqms_ingest, hqms_marts_daily, hqms_marts_monthly)")
    code = hqms_main(["run"])
    if code:
        return code
    print(f"    done in {time.perf_counter() - t:.1f} s")

    _step("summary")
    _print_uploads(cfg)
    code = hqms_main(["marts", "summary"])
    _print_still_running(cfg)
    return code


def _print_still_running(cfg: hqms_config.Config) -> None:
    """The main job leaves the embedded S3 server up (``hqms uploads``/``errors`` and a later run
    reuse it): say so, where, and how to stop it."""
    from hqms import live

    message = live.still_running(cfg)
    if message:
        print(message + "\n    watch the DAGs live: `hqms up` (Airflow UI and scheduler), then `hqms status`")


def provision_accounts(out, cfg: hqms_config.Config) -> str:
    """One hospital account per generated hospital (login = the plan's uploader, region = its
    city) and a national administrator; initial passwords go to a 0600 file, never the screen."""
    from hqms.accounts import Accounts, write_private_csv

    with (out / "registry" / "hospitals.csv").open(encoding="utf-8-sig", newline="") as fh:
        hospitals = {r["org_code"]: r for r in csv.DictReader(fh)}
    with (out / "upload_plan.csv").open(encoding="utf-8", newline="") as fh:
        logins = {r["org_code"]: r["uploader"] for r in csv.DictReader(fh)}
    accounts = Accounts(cfg)
    wanted = [(login, "hospital", org, hospitals.get(org, {}).get("city_code") or None,
               hospitals.get(org, {}).get("name")) for org, login in sorted(logins.items())]
    wanted.append(("nhc_admin", "national_admin", None, None, "国家级管理员（演示）"))
    created = [(login, accounts.add(login, role, org_code=org, region_code=region, display_name=name))
               for login, role, org, region, name in wanted if accounts.get(login) is None]
    path = cfg.home / "demo" / "initial_passwords.csv"
    if created:
        write_private_csv(path, ("login", "initial_password"), created)
    return f"{len(created)} accounts opened ({len(wanted) - len(created)} existed); initial passwords: {path}"


def _print_uploads(cfg: hqms_config.Config) -> None:
    from hqms.registry import Registry

    uploads = Registry.from_config(cfg).list_uploads()
    by_status = Counter(u["status"] for u in uploads)
    records = sum(u["record_count"] or 0 for u in uploads)
    conforming = sum(u["conforming_count"] or 0 for u in uploads)
    print(json.dumps({"uploads": dict(by_status), "records": records, "conforming_records": conforming,
                      "warehouse": str(cfg.warehouse_path),
                      "marts_snapshot": str(cfg.marts_dir / "hqms_marts.duckdb")}, ensure_ascii=False, indent=2))
    print("    try: hqms uploads | head;  hqms errors <upload_id>")

