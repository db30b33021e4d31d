"""Ingest driven by Airflow itself — the live system (``hqms up``: LocalExecutor, metadata in
PostgreSQL) with the ``hqms_ingest`` pool at one slot and at several, on the DuckLake warehouse
(catalog in PostgreSQL, Parquet in the embedded S3) or the DuckDB file, side by side in one run.

    .venv/bin/python bench/airflow_bench.py                                 # 40 k outpatient pages, pool 1 and 2, lake
    .venv/bin/python bench/airflow_bench.py --pages 120000 --hospitals 18 --keep

``outpatient_bench.py`` drives the workers by hand (N child processes); this one measures what
the data team runs: the scheduler's mapped ``process`` tasks of one ``hqms_ingest`` run, as many
at once as the pool ``hqms_ingest`` has slots (``HQMS_INGEST_WORKERS``), then the monthly marts
DAG that the outpatient Asset triggers.

Per pool size, a fresh home: registry, Airflow metadata and the lake's catalog in three fresh
databases of one ``pgserver`` PostgreSQL under --work; every zip of the month submitted (not
timed) before ``hqms up``, so the first scheduled ``hqms_ingest`` run claims them all, in
``--batches`` batches. Figures, read back from Airflow's own metadata (``dag_run`` and
``task_instance``): the ingest run's wall time (start to end), its ``process`` tasks' summed
durations and how many ran at once, and the ``hqms_marts_monthly`` run it triggered. CPU is the
machine's busy time over the ingest run's window (``/proc/stat`` sampled each second), so the
machine must be otherwise idle for it to mean the pipeline's: the load average before is printed.
Every run's result is checked: all pages in ``dw.mzsy``, all uploads ``processed``.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from outpatient_bench import generate_month, month_arguments, pg_server, submit_month, warehouse_rows

PY = sys.executable
HQMS = str(Path(PY).parent / "hqms")
RUN_TIMEOUT_S = 3600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BusySampler:
    """The machine's busy CPU seconds (all cores, user + system + …), sampled once a second, so
    the busy time of any window found afterwards (the DAG run's, read from Airflow) can be told."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._busy()))
            self._stop.wait(1.0)

    def __enter__(self) -> BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> float:
        """Busy seconds between two epoch times (linear between the samples around them)."""
        def at(when: float) -> float:
            before = [s for s in self.samples if s[0] <= when] or self.samples[:1]
            after = [s for s in self.samples if s[0] >= when] or self.samples[-1:]
            (t0, b0), (t1, b1) = before[-1], after[0]
            return b0 if t1 == t0 else b0 + (b1 - b0) * (when - t0) / (t1 - t0)
        return at(end) - at(start)


@dataclass(frozen=True)
class TaskSpan:
    start: float
    end: float


@dataclass(frozen=True)
class AirflowRun:
    label: str
    slots: int
    ingest_wall: float
    ingest_cpu: float
    tasks: list[TaskSpan]
    marts_wall: float | None
    rows: int
    uploads: int

    @property
    def task_seconds(self) -> float:
        return sum(t.end - t.start for t in self.tasks)

    @property
    def most_at_once(self) -> int:
        edges = sorted([(t.start, 1) for t in self.tasks] + [(t.end, -1) for t in self.tasks])
        running = most = 0
        for _, step in edges:
            running += step
            most = max(most, running)
        return most


def _metadata(url: str, sql: str, **params: object) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as con:
            return [tuple(r) for r in con.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def _finished_run(url: str, dag_id: str, since: float) -> tuple[str, float, float] | None:
    """(run id, start, end) of ``dag_id``'s first successful run that started after ``since``."""
    rows = _metadata(url, "SELECT run_id, start_date, end_date, state FROM dag_run WHERE dag_id = :d "
                          "ORDER BY start_date", d=dag_id)
    for run_id, start, end, state in rows:
        if start and start.timestamp() >= since - 5:
            if state == "failed":
                raise RuntimeError(f"{dag_id} run {run_id} failed; see the task logs of the home")
            if state == "success":
                return run_id, start.timestamp(), end.timestamp()
    return None


def _wait(what: str, probe):
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(2)
    raise RuntimeError(f"timed out waiting for {what}")


def _airflow_run(args: argparse.Namespace, base_env: dict[str, str], gen: Path, server, socket_dir: str,
                 slots: int, sampler: BusySampler) -> AirflowRun:
    label = f"{args.warehouse}-pool{slots}"
    home = args.work / f"home-airflow-{label}"
    shutil.rmtree(home, ignore_errors=True)
    stamp = int(time.time())
    urls = {}
    for part in ("registry", "airflow", "lake"):
        name = f"{part}_{slots}_{stamp}"
        server.psql(f"CREATE DATABASE {name};")
        urls[part] = name
    env = dict(base_env, HQMS_HOME=str(home), HQMS_INGEST_WORKERS=str(slots),
               HQMS_REGISTRY_URL=server.get_uri(urls["registry"]).replace("postgresql://", "postgresql+psycopg2://", 1),
               HQMS_AIRFLOW_DB_URL=server.get_uri(urls["airflow"]).replace("postgresql://", "postgresql+psycopg2://", 1),
               # the first scheduled run starts at once (catchup off); the next one only after the
               # measurement, so nothing but the measured run and the marts run it triggers is busy
               HQMS_INGEST_INTERVAL_MINUTES="60",
               HQMS_AIRFLOW_PORT=str(_free_port()), HQMS_AIRFLOW_LOG_PORT=str(_free_port()),
               HQMS_WEB_PORT=str(_free_port()))
    if args.warehouse == "lake":
        env.update(HQMS_WAREHOUSE=f"ducklake:postgres:dbname={urls['lake']} host={socket_dir} user=postgres",
                   HQMS_WAREHOUSE_DATA_PATH=f"s3://hqms-lake/{label}/")
    airflow_url = env["HQMS_AIRFLOW_DB_URL"]
    subprocess.run([HQMS, "keys", "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        n = submit_month(env, gen)
        env["HQMS_BATCH_MAX_UPLOADS"] = str(max(1, math.ceil(n / args.batches)))
        since = time.time()
        subprocess.run([HQMS, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
        run_id, start, end = _wait("the ingest run", lambda: _finished_run(airflow_url, "hqms_ingest", since))
        spans = [TaskSpan(s.timestamp(), e.timestamp()) for s, e in _metadata(
            airflow_url, "SELECT start_date, end_date FROM task_instance WHERE dag_id = 'hqms_ingest' "
                         "AND run_id = :r AND task_id = 'process' AND state = 'success'", r=run_id)]
        marts_wall = None
        if not args.no_marts:
            _, m_start, m_end = _wait("the monthly marts run", lambda: _finished_run(
                airflow_url, "hqms_marts_monthly", start))
            marts_wall = m_end - m_start
        rows, uploads = warehouse_rows(env)
        result = AirflowRun(label, slots, end - start, sampler.between(start, end), spans, marts_wall, rows, uploads)
        print(f"  {label}: ingest run {result.ingest_wall:.1f} s ({len(spans)} process tasks, at most "
              f"{result.most_at_once} at once), {rows:,} rows of {uploads} processed uploads"
              + (f", monthly marts run {marts_wall:.1f} s" if marts_wall else ""))
        return result
    finally:
        subprocess.run([HQMS, "down"], env=env, stdout=subprocess.DEVNULL)
        logs = home / "logs"
        if logs.is_dir():  # the task logs (per-round timings, lock waits) outlive the home
            shutil.copytree(logs, args.work / f"logs-{label}", dirs_exist_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    month_arguments(ap, pages=40_000, hospitals=24, work="/tmp/hqms-airflow-bench")
    ap.add_argument("--slots", default="1,2", help="pool hqms_ingest slot counts to measure (default 1,2)")
    ap.add_argument("--warehouse", choices=("lake", "file"), default="lake")
    ap.add_argument("--no-marts", action="store_true", help="do not wait for the monthly marts run")
    args = ap.parse_args()
    args.month = args.month.replace(day=1)
    args.work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HQMS_", "AIRFLOW"))}
    env["HQMS_HOME"] = str(args.work / "home-gen")
    env["HQMS_S3_ENDPOINT"] = "embedded"  # the local choice of store: an unset one is refused
    summary, _, _ = generate_month(args, env)
    load = os.getloadavg()
    server, socket_dir = pg_server(args)
    runs: list[AirflowRun] = []
    try:
        with BusySampler() as sampler:
            for slots in (int(s) for s in args.slots.split(",")):
                runs.append(_airflow_run(args, env, args.work / "gen", server, socket_dir, slots, sampler))
    finally:
        server.cleanup()
    records = summary["totals"]["records"]
    print(f"\noutpatient month: {records:,} pages from {args.hospitals} hospitals, {args.batches} batches, "
          f"{args.warehouse} warehouse, Airflow LocalExecutor\n")
    print(f"{'':16s} {'ingest run s':>12s} {'pages/s':>8s} {'busy CPU s':>10s} {'CPU µs/page':>11s} "
          f"{'task s':>7s} {'at once':>7s} {'marts run s':>11s}")
    for run in runs:
        print(f"{run.label:16s} {run.ingest_wall:12.1f} {records / run.ingest_wall:8,.0f} {run.ingest_cpu:10.1f} "
              f"{run.ingest_cpu / records * 1e6:11.1f} {run.task_seconds:7.1f} {run.most_at_once:7d} "
              f"{run.marts_wall or 0:11.1f}")
    print("(busy CPU: the whole machine over the ingest run's window — its tasks, Airflow's services and the "
          "marts runs `hqms up` schedules at once)")
    base = runs[0]
    for run in runs[1:]:
        print(f"{run.label} vs {base.label}: {base.ingest_wall / run.ingest_wall:.2f}x the speed for "
              f"{run.ingest_cpu / base.ingest_cpu:.2f}x the CPU")
    for run in runs:
        print(f"{run.label}: {run.rows:,} rows in dw.mzsy, {run.uploads} uploads processed")
    print("load average (1, 5, 15 min) before the runs {:.1f} {:.1f} {:.1f}, after {:.1f} {:.1f} {:.1f}".format(
        *load, *os.getloadavg()))
    print(f"measured {datetime.now().isoformat(timespec='seconds')} on {os.cpu_count()} cores")
    if not args.keep:
        for path in (args.work / "gen", args.work / "csv", args.work / "dataset.json"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for run in runs:
        shutil.rmtree(args.work / f"home-airflow-{run.label}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
