"""Hospital service under load: N concurrent ~1 MB uploads over loopback (not a timed test).

A fresh HQMS_HOME (embedded S3, SQLite registry), N hospital accounts with an API token each, N
distinct zips of about 1 MB (CSV text that compresses like real exports, not like a bomb). Then,
side by side in one run:

* **web** — ``hqms serve`` (one uvicorn process, warmed up by one upload) and N client threads
  posting at once to
  ``POST /api/v1/uploads`` (Bearer token; streamed receipt, intake, S3 landing, registry record);
* **floor** — the same intake (:func:`hqms.intake.submit.submit`) called directly from N threads in
  one process on N other zips of the same size: what the upload costs without HTTP.

Printed: wall time, throughput (uploads/s and MB/s), p50 / p95 / max latency, the server's peak
RSS (VmHWM) and its RSS growth over the idle server, and the ratio web / floor.

    .venv/bin/python bench/web_bench.py                 # 50 × 1 MB
    .venv/bin/python bench/web_bench.py --uploads 20    # a quick look
"""
from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _org(n: int) -> str:
    from hqms import validators

    return validators.make_medical_org_code(validators.make_org_code(f"{9200_0000 + n:08d}"),
                                            "110105", "11", "A100", "1")


def _zip(org: str, target_bytes: int, salt: int) -> bytes:
    """A fever zip of about ``target_bytes``: the spec's header, rows with random text."""
    from hqms import spec

    ds = spec.stream_datasets("fever")[0]
    other = [c for c in ds.codes if c != ds.org_column][:3]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        lines = [",".join(ds.codes)]
        size = 0
        while size < target_bytes * 2.7:  # this text deflates ≈ 2.7:1
            row = ",".join(_org_or_noise(c, ds.org_column, org, other) for c in ds.codes)
            lines.append(row)
            size += len(row) + 2
        zf.writestr(f"fever_20250106_{salt}.csv", ("\r\n".join(lines) + "\r\n").encode("gbk"))
    return buf.getvalue()


def _org_or_noise(code: str, org_column: str, org: str, noisy: list[str]) -> str:
    if code == org_column:
        return org
    return os.urandom(8).hex() if code in noisy else ""


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--mb", type=float, default=1.0, help="zip size in MB (1)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hqms-web-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HQMS_")}
    env["HQMS_HOME"] = str(home)
    env["HQMS_S3_ENDPOINT"] = "embedded"  # the local choice of store: an unset one is refused
    os.environ.clear()
    os.environ.update(env)
    from hqms import config, embedded_s3
    from hqms.accounts import Accounts
    from hqms.intake.submit import submit

    cfg = config.load()
    accounts = Accounts(cfg)
    n = args.uploads
    tokens = []
    for i in range(2 * n + 1):  # web, floor, and one warm-up upload
        accounts.add(f"bench{i}", "hospital", org_code=_org(i), password="Bench-pass-123")
        tokens.append(accounts.create_token(f"bench{i}"))
    target = int(args.mb * 1024 * 1024)
    zips = [_zip(_org(i), target, i) for i in range(2 * n + 1)]
    work = home / "zips"
    work.mkdir()
    paths = []
    for i, data in enumerate(zips):
        paths.append(work / f"fever_{i}.zip")
        paths[-1].write_bytes(data)
    total_mb = sum(len(z) for z in zips[:n]) / 1024 / 1024
    embedded_s3.ensure_running(cfg)

    log = home / "serve.log"
    with log.open("wb") as fh:
        server = subprocess.Popen([PY, "-m", "hqms.cli", "serve", "--port", "0"], stdout=fh,
                                  stderr=subprocess.STDOUT, env=env)
    try:
        while not (m := re.search(r"running on (http://\S+)", log.read_text(errors="replace"))):
            time.sleep(0.1)
        base = m.group(1)
        httpx.get(f"{base}/healthz").raise_for_status()
        idle_rss = _rss_kb(server.pid, "VmRSS")
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(_rss_kb(server.pid, "VmRSS"))
                time.sleep(0.02)

        def post(i: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            with paths[i].open("rb") as fh, httpx.Client(timeout=300) as client:
                answer = client.post(f"{base}/api/v1/uploads", headers={"Authorization": f"Bearer {tokens[i]}"},
                                     files={"file": (paths[i].name, fh, "application/zip")})
            return time.perf_counter() - t0, answer.status_code

        assert post(2 * n)[1] == 200  # warm-up: the server's first upload imports intake and S3
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n) as pool:
            web = list(pool.map(post, range(n)))
        web_wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        peak = _rss_kb(server.pid, "VmHWM")
    finally:
        server.kill()
        server.wait()

    def direct(i: int) -> float:
        t0 = time.perf_counter()
        result = submit(paths[i], _org(i), f"bench{i}", cfg=cfg, registry=accounts.registry)
        assert result.status == "landed", result
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        floor = list(pool.map(direct, range(n, 2 * n)))
    floor_wall = time.perf_counter() - t0
    embedded_s3.stop(cfg)

    codes = {c for _, c in web}
    latencies = [t for t, _ in web]
    print(f"{n} concurrent uploads of ≈ {args.mb:g} MB ({total_mb:.1f} MB in all), home {home}")
    print(f"answers: {sorted(codes)}")
    print(f"web   : {web_wall:6.2f} s  {n / web_wall:5.1f} uploads/s  {total_mb / web_wall:5.1f} MB/s  "
          f"latency p50 {statistics.median(latencies):.2f} s  p95 {_pct(latencies, 0.95):.2f} s  "
          f"max {max(latencies):.2f} s")
    print(f"floor : {floor_wall:6.2f} s  {n / floor_wall:5.1f} uploads/s  (intake called directly, "
          f"p95 {_pct(floor, 0.95):.2f} s)")
    print(f"ratio web/floor: {web_wall / floor_wall:.2f}x")
    print(f"server RSS: idle {idle_rss / 1024:.0f} MB, peak (VmHWM) {peak / 1024:.0f} MB, "
          f"highest sample {max(samples) / 1024:.0f} MB")
    return 0 if codes == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
