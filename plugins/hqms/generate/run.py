"""One generator run: registry, every hospital's uploads, the plan, the defect manifest, the summary."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hqms import config, spec
from hqms.generate import fever, flu, outpatient, plan
from hqms.generate.defects import Injector
from hqms.generate.records import Records, format_lines, header, row_at
from hqms.generate.registry import Hospital, build_registry, write_registry
from hqms.generate.writer import ZipSeries

#: File order inside a stream's zip (the exporters' order); other datasets of a stream follow.
STREAM_FILES = {
    "flu": ("flu", "hqms", "hda", "hdr", "pdr", "lis"),
    "fever": ("fever", "drug", "lab", "examine"),
    "outpatient": ("mzsy",),
}
STREAM_SEED = {"flu": 1, "fever": 2, "outpatient": 3}


@dataclass(frozen=True)
class Options:
    out: Path
    hospitals: int
    start: date
    days: int
    seed: int
    errors: float = 0.0
    encoding: str = "gbk"
    streams: tuple[str, ...] = spec.STREAMS
    scale: float = 1.0
    lookback: int = 7
    max_zip_bytes: int = config.MAX_ZIP_BYTES
    progress: bool = True

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)


@dataclass
class Period:
    """One upload: its label, the window of record days it covers, its file-name stamp."""

    label: str          # 2025-01-06 | 2025-01
    stamp: str          # 20250106 | 202501
    first: int          # window days (datetime64[D] as int), inclusive
    last: int
    as_of: int          # the export's day (records that exist by then)
    exported_at: datetime
    arrival: datetime | None


@dataclass
class Outputs:
    plan: list[dict[str, str]] = field(default_factory=list)
    manifest: list[dict[str, object]] = field(default_factory=list)
    zips: dict[str, dict[str, object]] = field(default_factory=dict)


def _day(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def _datasets(stream: str) -> list[spec.Dataset]:
    present = {d.id: d for d in spec.stream_datasets(stream)}
    ordered = [present.pop(i) for i in STREAM_FILES.get(stream, ()) if i in present]
    return ordered + sorted(present.values(), key=lambda d: d.id)


def _periods(opts: Options, stream: str, h: Hospital, rng: np.random.Generator) -> Iterator[Period]:
    if stream == "outpatient":
        month = opts.start.replace(day=1)
        while month <= opts.end:
            nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
            first, last = max(month, opts.start), min(nxt - timedelta(days=1), opts.end)
            yield Period(month.strftime("%Y-%m"), month.strftime("%Y%m"), _day(first), _day(last),
                         _day(last), datetime.combine(nxt, time(2, 0)), plan.monthly_arrival(h, month, rng))
            month = nxt
        return
    lookback = opts.lookback if stream == "flu" else 1
    for k in range(opts.days):
        d = opts.start + timedelta(days=k)
        yield Period(d.isoformat(), d.strftime("%Y%m%d"), _day(d) - lookback + 1, _day(d), _day(d),
                     datetime.combine(d + timedelta(days=1), time(1, 0)), plan.daily_arrival(h, d, rng))


def _simulate(opts: Options, stream: str, h: Hospital) -> dict[str, Records]:
    first, last = np.datetime64(opts.start, "D"), np.datetime64(opts.end, "D")
    if stream == "flu":
        return flu.simulate(h, flu.Window(first, last, opts.lookback), opts.seed, opts.scale)
    if stream == "fever":
        return fever.simulate(h, first, last, opts.seed, opts.scale)
    return outpatient.simulate(h, first, last, opts.seed, opts.scale)


def _file_lines(rec: Records, idx: np.ndarray, period: Period, serial_uid: bool, errors: float,
                injector: Injector, rng: np.random.Generator) -> tuple[list[str], list[tuple[int, object]]]:
    """The data lines of one file and the defects injected (position in file, Defect)."""
    final = rec.lines(serial_uid)
    provisional = rec.is_provisional(idx, period.as_of)
    early = rec.lines(serial_uid, provisional=True) if provisional.any() else final
    lines = [early[i] if p else final[i] for i, p in zip(idx.tolist(), provisional.tolist())]
    defects: list[tuple[int, object]] = []
    if errors > 0:
        for j in np.flatnonzero(rng.random(len(idx)) < errors).tolist():
            i = int(idx[j])
            cols = rec.provisional if provisional[j] and rec.provisional is not None else rec.cols
            result = injector.inject(row_at(rec.ds, cols, i), rng)
            if result is None:
                continue
            row, defect = result
            lines[j] = format_lines(rec.ds, {k: [v] for k, v in row.items()}, serial_uid)[0]
            defects.append((j, defect))
    return lines, defects


def _upload(opts: Options, stream: str, h: Hospital, period: Period, records: dict[str, Records],
            registry: list[Hospital], out: Outputs, rng: np.random.Generator) -> None:
    serial_uid = h.serial_uid_quirk and stream != "outpatient"
    others = [o.org_code for o in registry if o.org_code != h.org_code]
    stem_ds = _datasets(stream)[0]
    rel_dir = f"uploads/{stream}/{h.org_code}/{period.label}"
    series = ZipSeries(opts.out, rel_dir, f"{stem_ds.prefix}{period.stamp}", limit=opts.max_zip_bytes,
                       encoding=opts.encoding, timestamp=period.exported_at,
                       folder=period.stamp if h.folder_in_zip else None)
    counts: dict[tuple[str, str], list[int]] = {}
    for ds in _datasets(stream):
        rec = records.get(ds.id)
        if rec is None:
            continue
        idx = rec.select(period.first, period.last, period.as_of)
        if len(idx) == 0:
            continue  # exporters write no file for a dataset without rows
        injector = Injector(ds, h.org_code, others)
        lines, defects = _file_lines(rec, idx, period, serial_uid, opts.errors, injector, rng)
        parts = series.write_csv(f"{ds.prefix}{period.stamp}", header(ds, serial_uid), lines)
        for part in parts:
            counts.setdefault((part.zip_rel, part.entry), [0, 0])[0] += part.rows
        for j, defect in defects:
            part = next(p for p in parts if p.first <= j < p.first + p.rows)
            counts[(part.zip_rel, part.entry)][1] += 1
            out.manifest.append({
                "zip": part.zip_rel, "file": part.entry.rsplit("/", 1)[-1], "dataset": ds.id,
                "row": j - part.first + 1, "column": defect.column, "rule": defect.rule,
                "kind": defect.kind, "org_code": h.org_code,
            })
    zips = series.close()
    for k, zip_rel in enumerate(zips):
        arrival = period.arrival + timedelta(seconds=7 * k)  # type: ignore[operator]
        out.plan.append({"zip": zip_rel, "stream": stream, "org_code": h.org_code, "uploader": h.uploader,
                         "period": period.label, "planned_received_at": plan.iso(arrival)})
        out.zips[zip_rel] = {
            "stream": stream, "org_code": h.org_code, "period": period.label,
            "files": {entry: {"records": c[0], "defects": c[1]}
                      for (z, entry), c in counts.items() if z == zip_rel},
        }


def generate(opts: Options) -> dict[str, object]:
    """Write the whole synthetic set under ``opts.out``; returns the summary (also summary.json)."""
    for stream in opts.streams:
        if stream not in spec.STREAMS:
            raise ValueError(f"unknown stream {stream!r}; choose from {spec.STREAMS}")
    opts.out.mkdir(parents=True, exist_ok=True)
    registry = build_registry(opts.hospitals, opts.seed)
    write_registry(registry, opts.out / "registry" / "hospitals.csv")
    out = Outputs()
    units = [(s, h) for s in opts.streams for h in registry]
    for stream, h in tqdm(units, desc="hqms generate", unit="hospital-stream", disable=not opts.progress):
        records = _simulate(opts, stream, h)
        rng = np.random.default_rng([opts.seed, 7, STREAM_SEED[stream], h.index])
        for period in _periods(opts, stream, h, rng):
            if period.arrival is not None:
                _upload(opts, stream, h, period, records, registry, out, rng)
    _write_outputs(opts, out)
    return json.loads((opts.out / "summary.json").read_text(encoding="utf-8"))


def _write_outputs(opts: Options, out: Outputs) -> None:
    plan_rows = sorted(out.plan, key=lambda r: (r["planned_received_at"], r["zip"]))
    with (opts.out / "upload_plan.csv").open("w", encoding="utf-8", newline="") as fh:
        fh.write("zip,stream,org_code,uploader,period,planned_received_at\n")
        for r in plan_rows:
            fh.write(",".join(r[k] for k in ("zip", "stream", "org_code", "uploader", "period",
                                              "planned_received_at")) + "\n")
    with (opts.out / "manifest.jsonl").open("w", encoding="utf-8") as fh:
        for entry in out.manifest:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    files = [f for z in out.zips.values() for f in z["files"].values()]  # type: ignore[union-attr]
    summary = {
        "parameters": {"hospitals": opts.hospitals, "start": opts.start.isoformat(), "days": opts.days,
                       "seed": opts.seed, "errors": opts.errors, "encoding": opts.encoding,
                       "streams": list(opts.streams), "scale": opts.scale, "lookback": opts.lookback},
        "totals": {"zips": len(out.zips), "files": len(files),
                   "records": sum(f["records"] for f in files), "defects": len(out.manifest)},
        "zips": out.zips,
    }
    (opts.out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n",
                                           encoding="utf-8")
