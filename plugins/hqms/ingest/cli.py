"""``hqms run`` (everything pending, through the real DAGs) and ``hqms ingest`` (one upload, direct)."""
from __future__ import annotations

import argparse
import json

from hqms import config as hqms_config

#: DAGs ``hqms run`` drives, in order (the marts DAGs are Asset-scheduled in production;
#: ``dags test`` does not follow Assets, so they are run explicitly).
RUN_DAGS = ("hqms_ingest", "hqms_marts_daily", "hqms_marts_monthly")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="process every pending upload through the Airflow DAGs, then build the marts")
    p.add_argument("--no-marts", action="store_true", help="run hqms_ingest only")
    p.set_defaults(func=_run)

    p = sub.add_parser("ingest", help="process one landed upload directly (no Airflow; for operators)")
    p.add_argument("upload_id")
    p.set_defaults(func=_ingest)


def bootstrap_local(cfg: hqms_config.Config) -> None:
    """What the embedded default needs before anything runs: folders, demo keys (only for the
    embedded store, and only where no key is configured), the embedded S3 server, buckets.
    Idempotent. Without a configured object store it refuses before making anything (fail
    closed); a home on an external store gets no demo keys — a production host that lost its
    keys must stop at "keys missing" (the ingest's first step), not mint a vault key pair whose
    private half would sit beside the data."""
    from hqms import embedded_s3, keys
    from hqms.objectstore import ObjectStore

    cfg.require_s3()
    cfg.ensure_dirs()
    if cfg.embedded_s3:
        keys.ensure_demo_keys(cfg)
        embedded_s3.ensure_running(cfg)
    ObjectStore.from_config(cfg).ensure_buckets()


def _run(args: argparse.Namespace) -> int:
    from hqms import airflow_env, live
    from hqms.errors import UserError

    cfg = hqms_config.load()
    if live.scheduler_running(cfg):
        raise UserError("the live system (`hqms up`) runs: its scheduler ingests every "
                        f"{cfg.ingest_interval_minutes} min; trigger hqms_ingest in the Airflow UI to run now, "
                        "or `hqms down` first / 实时系统运行中，请在 Airflow 界面触发或先 hqms down")
    bootstrap_local(cfg)
    airflow_env.prepare(cfg)
    dags = RUN_DAGS[:1] if args.no_marts else RUN_DAGS
    for dag_id in dags:
        print(f"hqms run: {dag_id} …", flush=True)
        airflow_env.test_dag(cfg, dag_id)
    return 0


def _ingest(args: argparse.Namespace) -> int:
    """Operators' path: process one upload that is landed (or held by a dead run) right now."""
    from hqms.errors import UserError
    from hqms.ingest.process import process_upload
    from hqms.keys import load_keyring
    from hqms.registry import Registry

    cfg = hqms_config.load()
    load_keyring(cfg)  # a missing key stops here, before the upload is claimed
    registry = Registry.from_config(cfg)
    upload = registry.get(args.upload_id)
    if upload is None or upload["status"] not in ("landed", "processing"):
        state = upload["status"] if upload else "unknown"
        raise UserError(f"upload {args.upload_id} is {state}; only landed or processing uploads can be ingested")
    outcome = process_upload(args.upload_id, cfg)
    if outcome is None:
        raise UserError(f"upload {args.upload_id} is being processed by a live run right now; "
                        "see `hqms uploads` when it ends")
    print(json.dumps(outcome.__dict__, ensure_ascii=False))
    return 0
