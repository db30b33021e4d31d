"""The marts DAGs: wiring (schedules, pool, order) and a real run through Airflow.

The end-to-end test runs ``airflow dags test hqms_marts_daily`` (the path ``hqms run`` uses) on
a temporary Airflow home with SQLite, against a warehouse populated with synthetic rows and the
embedded S3 server of the test's HQMS_HOME, then checks what analysts get: Parquet objects in the
marts bucket and the read-only snapshot.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from hqms import airflow_env
from hqms import config as hqms_config
from hqms.marts import publish
from test_dbt_marts import populate

ROOT = Path(__file__).resolve().parents[1]


def _dag_info(tmp_path: Path) -> dict:
    code = """
import json, os
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER'])
out = {"errors": {k: str(v)[:500] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id in ("hqms_marts_daily", "hqms_marts_monthly"):
    dag = bag.dags.get(dag_id)
    if dag is None:
        continue
    tt = dag.timetable
    cond = tt.asset_condition
    assets = sorted(a.name for a in getattr(cond, "objects", [cond]))
    out["dags"][dag_id] = {
        "timetable": type(tt).__name__,
        "cron": tt.timetable.expression, "tz": str(tt.timetable.timezone),
        "condition": type(cond).__name__, "assets": assets,
        "tasks": {t.task_id: {"pool": t.pool, "downstream": sorted(t.downstream_task_ids)} for t in dag.tasks},
    }
print(json.dumps(out))
"""
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"), HQMS_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_marts_dags_schedules_pool_and_order(tmp_path: Path) -> None:
    info = _dag_info(tmp_path)
    assert info["errors"] == {}
    daily, monthly = info["dags"]["hqms_marts_daily"], info["dags"]["hqms_marts_monthly"]
    for dag in (daily, monthly):
        assert dag["timetable"] == "AssetOrTimeSchedule"
        assert dag["tz"] == "Asia/Shanghai"
    assert monthly["tasks"] == {"dbt_build": {"pool": "hqms_warehouse", "downstream": ["publish"]},
                                "publish": {"pool": "hqms_warehouse", "downstream": []}}
    # the daily DAG then builds the weekly bulletin (once a week's reports are all due)
    assert daily["tasks"] == {"dbt_build": {"pool": "hqms_warehouse", "downstream": ["publish"]},
                              "publish": {"pool": "hqms_warehouse", "downstream": ["bulletin"]},
                              "bulletin": {"pool": "hqms_warehouse", "downstream": []}}
    # daily: flu OR fever (either stream's ingest triggers it), plus a daily cron
    assert daily["condition"] == "AssetAny" and daily["assets"] == ["hqms_dw_fever", "hqms_dw_flu"]
    assert daily["cron"] == "30 2 * * *"
    # monthly: the 16th (pages due by the 15th), or late outpatient data
    assert monthly["assets"] == ["hqms_dw_outpatient"]
    assert monthly["cron"] == "30 2 16 * *"


@pytest.mark.slow
def test_daily_dag_builds_and_publishes_through_airflow(s3_store, hqms_home: Path) -> None:
    cfg = hqms_config.load()
    populate(cfg.warehouse_path)
    airflow_env.prepare(cfg)

    airflow_env.test_dag(cfg, "hqms_marts_daily")

    bucket = cfg.buckets["marts"]
    keys = set(s3_store.list(bucket))
    for mart in ("agg_flu", "agg_fever", "agg_reporting", "dim_epi_week", "hospitals"):
        assert f"{mart}/{mart}.parquet" in keys
    assert not any(k.startswith("flu_daily/") for k in keys)  # hospital-level: not for analysts
    assert f"snapshot/{publish.SNAPSHOT_NAME}" in keys
    snapshot = cfg.marts_dir / publish.SNAPSHOT_NAME
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        flu_rows = con.execute("SELECT count(*) FROM marts.agg_flu").fetchone()[0]
    finally:
        con.close()
    assert flu_rows > 0
    # the dbt child process has exited: the warehouse is free for the next writer
    duckdb.connect(str(cfg.warehouse_path)).close()
