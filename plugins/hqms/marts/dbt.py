"""Run dbt against the warehouse in a subprocess.

Why a subprocess: dbt-duckdb keeps its DuckDB connection open for the life of the process (the
in-process ``dbtRunner`` holds the file lock until the adapter closes every connection), and
DuckDB allows one writing process per file. A child process releases the lock when it exits,
whatever happened inside it, so the ingest writer that runs next in the ``hqms_warehouse`` pool
never finds the file locked.

Everything dbt writes at run time (``target/``, logs, partial-parse state) goes under
``HQMS_HOME``, never into the repository, so two homes never share build state.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hqms import config as hqms_config
from hqms import warehouse_attach
from hqms.errors import UserError

PROJECT_DIR = hqms_config.REPO_ROOT / "dbt_project"

#: dbt selections the marts DAGs and ``hqms marts build`` use (tags set in dbt_project.yml).
SELECTIONS = {
    "all": None,
    "daily": "+tag:daily",
    "monthly": "+tag:monthly",
}


class DbtError(RuntimeError):
    """dbt exited non-zero (a model failed to build or a data test failed)."""


@dataclass(frozen=True)
class DbtResult:
    """Outcome of one dbt invocation (``results`` comes from ``run_results.json``)."""

    command: list[str]
    returncode: int
    output: str
    results: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def counts(self) -> dict[str, int]:
        """Number of nodes per status (success, pass, warn, error, fail, skipped)."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def failures(self) -> list[str]:
        return [f"{r['unique_id']}: {r['status']}: {r.get('message') or ''}".strip()
                for r in self.results if r["status"] in ("error", "fail", "runtime error")]


def target_dir(cfg: hqms_config.Config) -> Path:
    return cfg.home / "dbt" / "target"


def dbt_env(cfg: hqms_config.Config) -> dict[str, str]:
    """Environment for the dbt child: the profile reads the warehouse path and DuckDB limits."""
    env = dict(os.environ)
    env.update({
        "HQMS_WAREHOUSE": cfg.warehouse_lake or str(cfg.warehouse_path),
        "HQMS_HOME": str(cfg.home),  # the lake plugin reads the object store's settings from it
        "DBT_TARGET": "lake" if cfg.warehouse_lake else "warehouse",
        "HQMS_DUCKDB_MEMORY_LIMIT": cfg.duckdb_memory_limit,
        "HQMS_DUCKDB_THREADS": str(cfg.duckdb_threads),
        "DBT_PROFILES_DIR": str(PROJECT_DIR),
        "DBT_PROJECT_DIR": str(PROJECT_DIR),
        "DBT_TARGET_PATH": str(target_dir(cfg)),
        "DBT_LOG_PATH": str(cfg.log_dir / "dbt"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "DBT_USE_COLORS": "false",
    })
    return env


def run(args: list[str], cfg: hqms_config.Config | None = None, *, echo: bool = False) -> DbtResult:
    """Run ``dbt <args>`` in a child process; returns its outcome (does not raise on failure)."""
    cfg = cfg or hqms_config.load()
    cfg.ensure_dirs()
    target_dir(cfg).mkdir(parents=True, exist_ok=True)
    # A stale run_results.json must not be mistaken for this run's outcome.
    results_file = target_dir(cfg) / "run_results.json"
    results_file.unlink(missing_ok=True)
    command = [sys.executable, "-c", "from dbt.cli.main import cli; cli()", *args]
    # dbt opens the warehouse for writing: a DuckDB file takes one writer, an ingest merge may hold it
    with warehouse_attach.write_lock(cfg, f"dbt {args[0]}"):
        proc = subprocess.run(command, cwd=PROJECT_DIR, env=dbt_env(cfg), text=True,
                              stdout=None if echo else subprocess.PIPE,
                              stderr=subprocess.STDOUT if not echo else None, check=False)
    results: list[dict] = []
    if results_file.exists():
        results = json.loads(results_file.read_text(encoding="utf-8")).get("results", [])
    return DbtResult(command, proc.returncode, proc.stdout or "", results)


def prepare_warehouse(cfg: hqms_config.Config) -> None:
    """Create the warehouse tables dbt reads (a fresh home builds empty marts, not errors)."""
    try:
        warehouse_attach.connect(cfg).close()
    except warehouse_attach.WarehouseUnavailable as exc:
        raise UserError(str(exc)) from exc


def build(selection: str = "all", *, full_refresh: bool = False, unit_tests: bool = False,
          cfg: hqms_config.Config | None = None, echo: bool = False) -> DbtResult:
    """``dbt build`` (seeds, models, data tests) for one of :data:`SELECTIONS`.

    Unit tests pin the SQL logic, not the data, so scheduled builds skip them (dbt's advice for
    production) and CI runs them (``unit_tests=True``). Raises :class:`DbtError` when anything
    failed, so an Airflow task fails visibly.
    """
    cfg = cfg or hqms_config.load()
    if selection not in SELECTIONS:
        raise UserError(f"unknown selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    prepare_warehouse(cfg)
    args = ["build"]
    if SELECTIONS[selection]:
        # A partial build runs only the data tests whose every parent it builds: a monthly build
        # on a home holding only outpatient pages failed on a test that joins submission_daily,
        # which the monthly selection does not build (dbt's default, eager, pulls such tests in).
        args += ["--select", SELECTIONS[selection], "--indirect-selection", "cautious"]
    if full_refresh:
        args.append("--full-refresh")
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    result = run(args, cfg, echo=echo)
    if not result.ok:
        detail = "\n".join(result.failures()) or result.output[-4000:]
        raise DbtError(f"dbt build ({selection}) failed:\n{detail}")
    return result


def docs_generate(cfg: hqms_config.Config | None = None) -> Path:
    """``dbt docs generate``; returns the folder holding ``index.html`` and ``catalog.json``."""
    cfg = cfg or hqms_config.load()
    prepare_warehouse(cfg)
    result = run(["docs", "generate"], cfg)
    if not result.ok:
        raise DbtError(f"dbt docs generate failed:\n{result.output[-4000:]}")
    return target_dir(cfg)


def freshness(cfg: hqms_config.Config | None = None) -> list[dict]:
    """``dbt source freshness``: per source table, status (pass / warn / error) and the age of
    its newest row. Thresholds are warnings only (sources.yml), so this never fails a build."""
    cfg = cfg or hqms_config.load()
    prepare_warehouse(cfg)
    result = run(["source", "freshness"], cfg)
    path = target_dir(cfg) / "sources.json"
    if not path.exists():
        raise DbtError(f"dbt source freshness failed:\n{result.output[-4000:]}")
    out = []
    for r in json.loads(path.read_text(encoding="utf-8"))["results"]:
        # dbt reports an empty table as loaded at 0001-01-01
        empty = str(r.get("max_loaded_at") or "0001").startswith("0001")
        out.append({"source": r["unique_id"].removeprefix("source.hqms."), "status": r["status"],
                    "max_loaded_at": None if empty else r["max_loaded_at"],
                    "age_hours": None if empty else round(r["max_loaded_at_time_ago_in_s"] / 3600, 1)})
    return out
