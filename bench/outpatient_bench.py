"""The monthly outpatient page (mzsy_, 122 columns) at a provincial month's shape, end to end,
side by side with the DuckDB floor, and the monthly marts build; optionally on the DuckLake
warehouse with one and with several concurrent ingest workers.

    .venv/bin/python bench/outpatient_bench.py                          # 2 M pages, 300 hospitals
    .venv/bin/python bench/outpatient_bench.py --pages 200000 --keep    # a day-time size; keep the set
    .venv/bin/python bench/outpatient_bench.py --pages 200000 --reuse --lake --workers 1,2
    .venv/bin/python bench/outpatient_bench.py --pages 40000 --hospitals 24 --workers 1,2 --no-marts

The shape is a provincial month: every hospital uploads ONE zip holding its month of visits
(``hqms generate --streams outpatient``; the generator's volume is scaled so the month holds
``--pages`` pages in total), so per-row costs dominate, like the ``bulk`` shape of
``ingest_bench.py``.

Steps (fresh HQMS_HOME under --work per measured run, embedded S3 server):
1. generate the month once (``--keep`` leaves it in --work, ``--reuse`` takes it from there when
   its pages and hospitals match) and its CSVs as UTF-8 for the floor;
2. submit every zip (intake rules, landing in S3, registry) — not timed;
3. floor: plain DuckDB ``read_csv`` of the same bytes into a table of a database file, and the
   read alone as staging does it (declared VARCHAR columns, no sniffing, in memory);
4. ingest: one child claims every upload (in ``--batches`` batches), then N children process
   the batches (download, sha256, vault, transcode, stage, GX, keyed crypto, merge): wall time
   until all are done, the largest child's peak RSS, the children's CPU seconds (``wait4``);
5. ``hqms marts build --select monthly`` (dbt, seeds + staging + outpatient and submission
   marts, data tests) on the warehouse the ingest wrote.

Both warehouses are measured for each worker count of ``--workers``: the DuckDB file (its
merges take turns on the file's write lock, everything else of a batch runs beside them) and,
with ``--lake``, a DuckLake warehouse (PostgreSQL catalog from ``pgserver`` under --work,
Parquet data in the home's embedded S3; its merges take turns on the catalog's advisory lock).
The load average before and after is printed: the machine may be shared.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

PY = sys.executable
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_bench import utf8_copies  # noqa: E402 — the floors read the same UTF-8 copies

#: The read as staging does it: declared VARCHAR columns from the header, no sniffing.
FAST_READ = r"""
import glob
import duckdb
con = duckdb.connect()
con.execute("SET threads = 2")
files = sorted(glob.glob("CSV_DIR/*.csv"))
with open(files[0], encoding="utf-8") as fh:
    names = [h.strip('"') for h in fh.readline().rstrip("\r\n").split(",")]
cols = "{" + ", ".join(f"'{h}': 'VARCHAR'" for h in names) + "}"
con.execute(f"CREATE TABLE mzsy AS SELECT * FROM read_csv(?, delim=',', quote='\"', escape='\"', "
            f"header=true, auto_detect=false, columns={cols})", [files])
"""

FLOOR = r"""
import duckdb
con = duckdb.connect("FLOOR_DB")
con.execute("SET threads = 2")
con.execute("CREATE TABLE mzsy AS SELECT * FROM read_csv('CSV_DIR/*.csv', header=true, all_varchar=true, "
            "union_by_name=true)")
"""

CLAIM = r"""
import json, sys
from hqms.ingest.run import claim
json.dump(claim(), open(sys.argv[1], "w"))
"""

#: The monthly marts and what they are built from. ``hqms marts build --select monthly`` would also
#: run the data tests that join a daily mart (``submission_daily`` → ``hospitals``), which a home
#: holding only outpatient pages never built: tests run only when all their models were selected.
MARTS = r"""
from hqms import config
from hqms.marts import dbt
cfg = config.load()
dbt.prepare_warehouse(cfg)
result = dbt.run(["build", "--select", "+tag:monthly", "--indirect-selection", "cautious",
                  "--exclude-resource-type", "unit_test"], cfg)
if not result.ok:
    raise SystemExit(result.output[-4000:])
"""

PROCESS = r"""
import json, logging, sys
logging.basicConfig(filename=sys.argv[2], level=logging.WARNING, format='%(asctime)s %(process)d %(message)s')
logging.getLogger('hqms.ingest').setLevel(logging.INFO)
logging.getLogger('hqms.warehouse_attach').setLevel(logging.INFO)  # who waits for the write lock
from hqms.ingest.run import process
for batch in json.load(open(sys.argv[1])):
    process(batch)
"""


@dataclass(frozen=True)
class Timing:
    wall: float
    peak_mb: float
    cpu: float


def _timed_child(env: dict[str, str], code: str, log: Path) -> Timing:
    """Run ``code`` in a fresh interpreter (its stderr to ``log``): wall, the child's peak RSS
    (its own children included: dbt runs in one) and CPU seconds, from ``wait4``."""
    t = time.perf_counter()
    with log.open("ab") as err:
        child = subprocess.Popen([PY, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"bench child failed; see {log}")
    return Timing(time.perf_counter() - t, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def _hqms(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, "-m", "hqms.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL)


def _scale_for(pages: int, hospitals: int, month: date, seed: int) -> float:
    """Generator ``--scale`` whose expected month holds ``pages`` pages: the outpatient
    simulation draws Poisson(BASE_OUTPATIENT × hospital size × scale × weekday factor) per day."""
    import numpy as np

    from hqms.generate import epidemic
    from hqms.generate.registry import build_registry

    nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    days = np.arange(np.datetime64(month), np.datetime64(nxt), dtype="datetime64[D]")
    per_scale = sum(h.size for h in build_registry(hospitals, seed)) * epidemic.BASE_OUTPATIENT \
        * float(epidemic.weekday_factor(days).sum())
    return pages / per_scale


def generate_month(args: argparse.Namespace, env: dict[str, str]) -> tuple[dict, Path, int]:
    """The month's uploads and their CSVs as UTF-8 (generated, or reused when they match)."""
    gen, csv_dir = args.work / "gen", args.work / "csv"
    wanted = {"pages": args.pages, "hospitals": args.hospitals, "month": args.month.isoformat(), "seed": args.seed}
    stamp = args.work / "dataset.json"
    if args.reuse and stamp.exists() and json.loads(stamp.read_text())["args"] == wanted:
        done = json.loads(stamp.read_text())
        print(f"reusing {done['records']:,} pages generated earlier in {args.work}")
        return json.loads((gen / "summary.json").read_text()), csv_dir, done["csv_bytes"]
    for path in (gen, csv_dir, stamp):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    t = time.perf_counter()
    nxt = (args.month.replace(day=28) + timedelta(days=4)).replace(day=1)
    scale = _scale_for(args.pages, args.hospitals, args.month, args.seed)
    _hqms(env, "generate", "--hospitals", str(args.hospitals), "--start", args.month.isoformat(),
          "--days", str((nxt - args.month).days), "--seed", str(args.seed), "--streams", "outpatient",
          "--scale", f"{scale:.6f}", "--out", str(gen), "--quiet")
    summary = json.loads((gen / "summary.json").read_text())
    print(f"generated {summary['totals']['records']:,} pages (scale {scale:.3f}) in {time.perf_counter() - t:.1f} s")
    raw = utf8_copies(gen, csv_dir)
    stamp.write_text(json.dumps({"args": wanted, "records": summary["totals"]["records"], "csv_bytes": raw}))
    return summary, csv_dir, raw


def submit_month(env: dict[str, str], gen: Path) -> int:
    code = ("import csv\nfrom datetime import datetime\nfrom pathlib import Path\n"
            "from hqms.intake.submit import submit\n"
            "from hqms import config\nfrom hqms.demo import provision_accounts\n"
            f"gen = Path({str(gen)!r})\nn = 0\n"
            "provision_accounts(gen, config.load())  # intake accepts only orgs with an account\n"
            "for r in csv.DictReader((gen / 'upload_plan.csv').open(encoding='utf-8')):\n"
            "    submit(gen / r['zip'], r['org_code'], r['uploader'], "
            "received_at=datetime.fromisoformat(r['planned_received_at']))\n    n += 1\n"
            "print(n)\n")
    out = subprocess.run([PY, "-c", code], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1])


def _ingest(env: dict[str, str], work: Path, workers: int) -> Timing:
    """Claim in one child, then ``workers`` children process the batches round robin, all at
    once: wall until the last ends, the largest peak RSS, the sum of CPU seconds."""
    batches_file = work / "batches.json"
    subprocess.run([PY, "-c", CLAIM, str(batches_file)], env=env, check=True)
    batches = json.loads(batches_file.read_text())
    t = time.perf_counter()
    children = []
    for w in range(workers):
        share = work / f"worker{w + 1}.json"
        share.write_text(json.dumps(batches[w::workers]))
        children.append(subprocess.Popen([PY, "-c", PROCESS, str(share), str(work / "ingest.log")], env=env))
    peak = cpu = 0.0
    failed = []
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status):
            failed.append(child.pid)
        peak = max(peak, usage.ru_maxrss / 1024)
        cpu += usage.ru_utime + usage.ru_stime
    wall = time.perf_counter() - t
    if failed:
        raise RuntimeError(f"ingest workers {failed} failed; see {work / 'ingest.log'}")
    return Timing(wall, peak, cpu)


def warehouse_rows(env: dict[str, str]) -> tuple[int, int]:
    """(dw.mzsy rows, processed uploads in ops.uploads): the run's result, read back."""
    code = ("from hqms import config, warehouse_attach as wa\n"
            "cfg = config.load()\n"
            "with wa.read_lock(cfg, 'bench'):  # a live system's marts runs may be writing\n"
            "    con = wa.connect(cfg, read_only=True)\n"
            "    print(*con.execute(\"SELECT (SELECT count(*) FROM dw.mzsy), (SELECT count(*) FROM ops.uploads \"\n"
            "                       \"WHERE status = 'processed')\").fetchone())\n")
    out = subprocess.run([PY, "-c", code], env=env, check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


@dataclass(frozen=True)
class Run:
    label: str
    ingest: Timing
    marts: Timing | None
    rows: int
    uploads: int


def _measured_run(args: argparse.Namespace, base_env: dict[str, str], gen: Path, label: str, workers: int,
                  lake: str | None) -> Run:
    """One fresh home: submit, ingest with ``workers`` children, build the monthly marts."""
    home = args.work / f"home-{label}"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(base_env, HQMS_HOME=str(home))
    if lake:
        env.update(HQMS_WAREHOUSE=lake, HQMS_WAREHOUSE_DATA_PATH=f"s3://hqms-lake/{label}/")
    _hqms(env, "keys", "init")
    try:
        n = submit_month(env, gen)
        env["HQMS_BATCH_MAX_UPLOADS"] = str(max(1, math.ceil(n / args.batches)))
        work = home / "bench"
        work.mkdir()
        ingest = _ingest(env, work, workers)
        marts = None
        if not args.no_marts:
            marts = _timed_child(env, MARTS, work / "marts.log")
        rows, uploads = warehouse_rows(env)
        shutil.copy(work / "ingest.log", args.work / f"ingest-{label}.log")  # the home goes at the end
        print(f"  {label}: ingest {ingest.wall:.1f} s, {rows:,} rows of {uploads} processed uploads"
              + (f", marts {marts.wall:.1f} s" if marts else ""))
        return Run(label, ingest, marts, rows, uploads)
    finally:
        _hqms(env, "s3", "stop")


def pg_server(args: argparse.Namespace) -> tuple[object, str]:
    """A PostgreSQL server (pgserver) under --work, and the socket folder to reach it by."""
    import pgserver

    server = pgserver.get_server(str(args.work / "pg"), cleanup_mode="stop")
    return server, str(server.get_postmaster_info().socket_dir)


def month_arguments(ap: argparse.ArgumentParser, *, pages: int, hospitals: int, work: str) -> None:
    """The generated month's options (sizes, seed, where it is kept), shared by the benches that
    ingest it, so ``--keep`` / ``--reuse`` mean one thing."""
    ap.add_argument("--pages", type=int, default=pages, help=f"outpatient pages in the month (default {pages:,})")
    ap.add_argument("--hospitals", type=int, default=hospitals)
    ap.add_argument("--month", type=date.fromisoformat, default=date(2025, 1, 1), help="first day of the month")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=Path(work))
    ap.add_argument("--keep", action="store_true", help="keep the generated month in --work for --reuse")
    ap.add_argument("--reuse", action="store_true", help="reuse a month generated earlier with the same sizes")
    ap.add_argument("--batches", type=int, default=4, help="ingest batches the month is claimed in")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    month_arguments(ap, pages=2_000_000, hospitals=300, work="/tmp/hqms-outpatient-bench")
    ap.add_argument("--lake", action="store_true", help="also measure on a DuckLake warehouse (pgserver + S3)")
    ap.add_argument("--workers", default="1,2", help="concurrent ingest workers, file and lake (default 1,2)")
    ap.add_argument("--no-file", action="store_true", help="skip the DuckDB-file warehouse run")
    ap.add_argument("--no-marts", action="store_true", help="skip the marts builds")
    args = ap.parse_args()
    args.month = args.month.replace(day=1)
    args.work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HQMS_")}
    env["HQMS_HOME"] = str(args.work / "home-gen")
    env["HQMS_S3_ENDPOINT"] = "embedded"  # the local choice of store: an unset one is refused

    summary, csv_dir, raw = generate_month(args, env)
    records = summary["totals"]["records"]
    gen = args.work / "gen"
    floor = _timed_child(env, FLOOR.replace("FLOOR_DB", str(args.work / "floor.duckdb"))
                         .replace("CSV_DIR", str(csv_dir)), args.work / "floor.log")
    (args.work / "floor.duckdb").unlink(missing_ok=True)
    fast = _timed_child(env, FAST_READ.replace("CSV_DIR", str(csv_dir)), args.work / "floor.log")

    runs: list[Run] = []
    worker_counts = [int(w) for w in args.workers.split(",")]
    load = os.getloadavg()
    if not args.no_file:
        runs += [_measured_run(args, env, gen, f"file-{workers}", workers, None) for workers in worker_counts]
    if args.lake:
        server, host = pg_server(args)
        try:
            for workers in worker_counts:
                dbname = f"lake_{workers}_{int(time.time())}"  # a fresh catalog per run
                server.psql(f"CREATE DATABASE {dbname};")
                runs.append(_measured_run(args, env, gen, f"lake-{workers}", workers,
                                          f"ducklake:postgres:dbname={dbname} host={host} user=postgres"))
        finally:
            server.cleanup()
    _report(args, records, raw, summary, floor, fast, runs)
    print("load average (1, 5, 15 min) before the runs {:.1f} {:.1f} {:.1f}, after {:.1f} {:.1f} {:.1f}".format(
        *load, *os.getloadavg()))
    if not args.keep:
        for path in (gen, csv_dir, args.work / "dataset.json"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for run in runs:
        shutil.rmtree(args.work / f"home-{run.label}", ignore_errors=True)
    return 0


def _report(args: argparse.Namespace, records: int, raw: int, summary: dict, floor: Timing, fast: Timing,
            runs: list[Run]) -> None:
    mb = raw / 1e6
    uploads = summary["totals"].get("uploads") or summary["totals"].get("zips")
    print(f"\noutpatient month: {records:,} pages from {args.hospitals} hospitals, {mb:,.1f} MB of CSV (GBK), "
          f"{uploads} uploads, claimed in {args.batches} batches\n")
    print(f"{'':34s} {'seconds':>9s} {'pages/s':>9s} {'MB/s':>7s} {'peak MB':>8s} {'CPU s':>7s} {'CPU µs/page':>12s}")

    def line(label: str, secs: float, mem: float, used: float) -> None:
        print(f"{label:34s} {secs:9.1f} {records / secs:9,.0f} {mb / secs:7.1f} {mem:8.0f} {used:7.1f} "
              f"{used / records * 1e6:12.1f}")

    line("DuckDB read_csv floor (file)", floor.wall, floor.peak_mb, floor.cpu)
    line("  read only, as staged", fast.wall, fast.peak_mb, fast.cpu)
    for run in runs:
        line(f"ingest, {run.label} worker(s)", run.ingest.wall, run.ingest.peak_mb, run.ingest.cpu)
    for run in runs:
        if run.marts:
            line(f"monthly marts build, {run.label}", run.marts.wall, run.marts.peak_mb, run.marts.cpu)
    for run in runs:
        # each run beside the first run on the same warehouse kind (file-1 for file-2, …)
        base = next(r for r in runs if r.label.split("-")[0] == run.label.split("-")[0])
        print(f"{run.label}: {run.rows:,} rows in dw.mzsy, {run.uploads} uploads processed; ingest / floor "
              f"{run.ingest.wall / floor.wall:.1f}x" + (f"; vs {base.label} {base.ingest.wall / run.ingest.wall:.2f}x "
                                                       f"the speed for {run.ingest.cpu / base.ingest.cpu:.2f}x the CPU"
                                                       if run is not base else ""))
    print(f"measured {datetime.now().isoformat(timespec='seconds')} on {os.cpu_count()} cores")


if __name__ == "__main__":
    raise SystemExit(main())
