"""Run the real DAGs on the embedded default: an Airflow home under ``HQMS_HOME``.

``hqms run`` uses ``airflow dags test`` (in-process, SQLite metadata) so one command processes
everything pending through the same DAG code the scheduler runs in production.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hqms import config as hqms_config

WAREHOUSE_POOL = ("hqms_warehouse", "1", "DuckDB warehouse writers (ingest merges, dbt builds): one at a time")


def airflow_env(cfg: hqms_config.Config) -> dict[str, str]:
    """Environment for airflow subprocesses: this repo's DAGs, an Airflow home inside HQMS_HOME."""
    root = hqms_config.REPO_ROOT
    env = dict(os.environ)
    env.update({
        "HQMS_HOME": str(cfg.home),
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(cfg.log_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    })
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def airflow_bin() -> str:
    local = Path(sys.executable).parent / "airflow"
    return str(local) if local.exists() else (shutil.which("airflow") or "airflow")


def airflow(cfg: hqms_config.Config, *args: str, log_name: str | None = None) -> subprocess.CompletedProcess:
    """Run ``airflow <args>``; output goes to a log file under HQMS_HOME/logs when named."""
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [airflow_bin(), *args]
    if log_name is None:
        return subprocess.run(cmd, env=airflow_env(cfg), check=False, capture_output=True, text=True)
    with (cfg.log_dir / log_name).open("a", encoding="utf-8") as log:
        return subprocess.run(cmd, env=airflow_env(cfg), check=False, stdout=log, stderr=subprocess.STDOUT,
                              text=True)


def prepare(cfg: hqms_config.Config) -> None:
    """Migrate the metadata DB and create the warehouse pool (both idempotent)."""
    cfg.airflow_home.mkdir(parents=True, exist_ok=True)
    for args in (("db", "migrate"), ("pools", "set", *WAREHOUSE_POOL)):
        done = airflow(cfg, *args, log_name="airflow-setup.log")
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed; see {cfg.log_dir / 'airflow-setup.log'}")


def test_dag(cfg: hqms_config.Config, dag_id: str) -> None:
    """``airflow dags test`` one DAG now; raise if the run did not succeed."""
    log_name = f"dag-{dag_id}.log"
    done = airflow(cfg, "dags", "test", dag_id, log_name=log_name)
    text = (cfg.log_dir / log_name).read_text(encoding="utf-8", errors="replace")
    tail = text[-4000:]
    if done.returncode != 0 or "state=failed" in tail or "DagRunState.FAILED" in tail:
        raise RuntimeError(f"DAG {dag_id} failed; see {cfg.log_dir / log_name}")
