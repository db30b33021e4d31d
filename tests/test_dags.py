"""DAG files parse cleanly, cheaply, and wire what the issues promise."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Packages a DAG file must not import at parse time (the scheduler parses DAG files constantly).
HEAVY_PACKAGES = ("great_expectations", "duckdb", "dbt", "minio", "gmssl", "pyarrow")
HEAVY_MODULES = ("hqms.ingest.process", "hqms.quality", "hqms.marts.dbt")


def _airflow_python(code: str, tmp_path: Path) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"), HQMS_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (ROOT / "dags").glob("*.py")))
def test_dag_file_parses_without_heavy_imports(dag_file: str, tmp_path: Path) -> None:
    code = f"""
import json, runpy, sys, time
import airflow.sdk  # the scheduler has this loaded already; what counts is the DAG file's own cost
before = set(sys.modules)
t = time.perf_counter()
runpy.run_path({str(ROOT / 'dags' / dag_file)!r})
elapsed = time.perf_counter() - t
heavy = sorted(m for m in set(sys.modules) - before
               if m.split('.')[0] in {list(HEAVY_PACKAGES)!r} or m in {list(HEAVY_MODULES)!r})
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""
    result = _airflow_python(code, tmp_path)
    assert result["heavy"] == [], f"{dag_file} imports heavy modules at parse time: {result['heavy']}"
    print(f"{dag_file}: parsed in {result['seconds']:.3f} s")


def test_dagbag_has_no_import_errors_and_ingest_wiring(tmp_path: Path) -> None:
    code = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=__import__('os').environ['AIRFLOW__CORE__DAGS_FOLDER'])
ingest = bag.dags.get('hqms_ingest')
info = {"errors": {k: str(v)[:500] for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
if ingest:
    info["process_pool"] = ingest.get_task('process').pool
    info["outlets"] = sorted(a.name for t in ingest.tasks for a in getattr(t, 'outlets', []) or [])
print(json.dumps(info))
"""
    info = _airflow_python(code, tmp_path)
    assert info["errors"] == {}
    assert "hqms_ingest" in info["dags"]
    assert info["process_pool"] == "hqms_ingest"  # only the merge holds the warehouse (its write lock)
    assert info["outlets"] == ["hqms_dw_fever", "hqms_dw_flu", "hqms_dw_outpatient"]
