"""The published aggregates against an independent recomputation from the raw zips (issues 19, 22).

Six generated hospitals, nine days from Monday 2025-01-06 (two epidemiological weeks), every
stream, through the real pipeline: submit → ingest → ``dbt build`` → ``hqms marts publish``. On
the way: one fever package is never sent (a day not reported), a corrected flu file is re-sent
(one case's diagnosis corrected, its death struck), a corrected fever file is re-sent with its
influenza results in the wordings hospitals write (弱阳性, 非阳性, 阴阳性待定, 未检出, ＋, 检测中, a
flag without text, no result yet), and the issue-22 sequence on the outpatient
page (``mzsy_202501.csv`` re-sent without one page and without 抗菌药物费 on one day's pages, then
the same pages as ``mzsy_export.csv``).

The figures are then recomputed here in plain Python from the CSVs as sent (GBK), written from
docs/marts.md's definitions and the interface field codes alone — none of the project's dbt
models, macros or seeds — and compared with the exact ``marts.agg_*`` of the warehouse and, where
nothing is masked, with the published snapshot.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from hqms import config, hospitals
from hqms.cli import main as hqms
from hqms.ingest.run import claim, process
from hqms.intake.submit import submit
from hqms.marts import dbt, publish
from conftest import edit_csv_in_zip, provision_plan

pytestmark = pytest.mark.slow

DX_CODES = ("P321", "P324", "P327", "P3291", "P3294", "P3297", "P3281", "P3284", "P3287", "P3271", "P3274")
ICU = tuple(f"P69{n}" for n in range(11, 26))
FLU_PREFIXES = ("J09", "J10", "J11")
PNEUMONIA = ("J10.0", "J11.0")
# docs/marts.md, "Fever clinic": influenza test names (not 副流感 / parainfluenza / Haemophilus influenzae)
FLU_TEST = re.compile(r"甲型流感|甲流|乙型流感|乙流|流感病毒|\bflu ?[ab]\b|\binfluenza\b", re.I)
NOT_FLU = re.compile(r"副流感|parainfluenza|haemophilus", re.I)
TYPE_A = re.compile(r"甲型|甲流|\bflu ?a\b|influenza a\b", re.I)
TYPE_B = re.compile(r"乙型|乙流|\bflu ?b\b|influenza b\b", re.I)
# docs/marts.md, "Lab results": the wordings in their order
WORDINGS = (
    ("pending", ("待检", "检测中", "未出", "待报告", "未报告", "未完成", "pending"), ()),
    ("undetermined", ("待定", "可疑", "待复查", "不确定", "无法判断", "无法判定", "灰区", "无效", "±", "+/-",
                      "equivocal", "indeterminate", "inconclusive", "borderline", "invalid"), ()),
    ("negative", ("非阳性", "未检出", "未检测到", "未见", "notdetected", "non-detected", "undetected",
                  "non-reactive", "notpositive"), ()),
    ("positive", ("阳性", "弱阳", "检出", "positive", "detected", "reactive"),
     ("阳", "+", "++", "+++", "++++", "(+)", "pos")),
    ("negative", ("阴性", "negative"), ("阴", "-", "(-)", "--", "neg", "无")),
)
#: (P7621 text, P7620 value, P7625 flag) written into the re-sent fever file's influenza tests
WORDINGS_SENT = [("弱阳性", "", "2"), ("非阳性", "", "1"), ("阴阳性待定", "", ""), ("未检出", "", "1"), ("", "", "2"),
                 ("", "0.3", "2"), ("阴性", "", "2"), ("阳性", "", "1"), ("＋", "", ""), ("检测中", "", "")]


def epi_week(day: str) -> str:
    """ISO 8601 week label (docs/marts.md, "Epidemiological weeks")."""
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


def read_zip(path: Path) -> dict[str, list[dict[str, str]]]:
    """CSV entry name → rows as dicts, decoded as the generator writes them (GBK)."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: list(csv.DictReader(io.StringIO(zf.read(info).decode("gb18030"), newline="")))
                for info in zf.infolist()}


def lab_result(row: dict[str, str]) -> str:
    """positive / negative / undetermined / pending of one lab_ row (docs/marts.md, "Lab results")."""
    text = row.get("P7621", "").strip().lower().replace(" ", "")
    text = text.translate(str.maketrans("＋－（）", "+-()"))
    if text:
        for reading, contains, whole in WORDINGS:
            if any(w in text for w in contains) or text in whole:
                return reading
    value = row.get("P7620", "").strip()
    if not text and not value:
        return "pending"
    flag = row.get("P7625", "").strip()
    if flag == "1":
        return "negative"
    if flag in ("2", "21", "22"):
        return "positive"
    return "undetermined"  # the generator writes a flag with every number; a range reading is not needed here


def file_id(name: str) -> str | None:
    """The identity of an mzsy_ file across uploads: its name without copy marks, or None when the
    name gives no period (docs/marts.md, "Re-sent monthly page files")."""
    stem = name.rsplit("/", 1)[-1].lower().removesuffix(".csv")
    stem = re.sub(r"(\(\d+\)| - 副本| copy( \d+)?)$", "", stem)
    return stem if re.search(r"\d{6}", stem) else None


class Recomputed:
    """Every upload as sent, in order of receipt; the figures recomputed from them."""

    def __init__(self, registry: Path) -> None:
        self.place = {r["org_code"]: (r["province_code"], r["city_code"])
                      for r in csv.DictReader(registry.open(encoding="utf-8"))}
        self.flu: dict[tuple, dict] = {}
        self.lis: dict[tuple, dict] = {}
        self.fever: dict[tuple, dict] = {}
        self.lab: dict[tuple, dict] = {}
        self.pages: dict[tuple, tuple[dict, int, str | None]] = {}
        self.holder: dict[tuple, int] = {}
        self.received: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.uploads = 0

    def add(self, org: str, stream: str, period: str, zip_path: Path) -> None:
        """An accepted upload (the latest received version of a key counts)."""
        self.uploads += 1
        self.received[stream].add((org, period))
        for name, rows in read_zip(zip_path).items():
            prefix = name.rsplit("/", 1)[-1].split("_", 1)[0].lower()  # exporters may put a day folder in the zip
            for r in rows:
                if prefix == "flu":
                    self.flu[(org, r["P7501"], r["P7502"], r["P7506"])] = r
                elif prefix == "lis":
                    self.lis[(org, r["P7501"], r["P7502"], r["P7506"], r["P8000"])] = r
                elif prefix == "fever":
                    self.fever[(org, r["P7000"])] = r
                elif prefix == "lab":
                    self.lab[(org, r["P7000"], r["P7605"], r["P7613"], r["P7623"])] = r
                elif prefix == "mzsy":
                    self.pages[(org, r["JZKH"], r["JZSJ"], r["JZKSDM"])] = (r, self.uploads, file_id(name))
            if prefix == "mzsy" and rows and file_id(name):
                self.holder[(org, file_id(name))] = self.uploads

    def flu_cases(self) -> list[dict]:
        positive = defaultdict(set)  # visit → lab items (35 A, 36 B) positive
        for (org, kind, card, when, _), r in self.lis.items():
            if r["P8004"].strip() == "1" and r["P8005"].strip() in ("35", "36"):
                positive[(org, kind, card, when)].add(r["P8005"].strip())
        cases = []
        for key, r in self.flu.items():
            codes = [r[c].strip().upper() for c in DX_CODES if r.get(c, "").strip()]
            if any(c.startswith(FLU_PREFIXES) for c in codes) or positive[key]:
                died = r["P8508"].strip() == "1"
                cases.append({"org": key[0], "day": r["P7506"][:10], "a": "35" in positive[key],
                              "b": "36" in positive[key], "died": died,
                              "severe": died or any(r.get(c, "").strip() for c in ICU)
                              or any(c.startswith(PNEUMONIA) for c in codes)})
        return cases

    def fever_visits(self) -> list[dict]:
        results = defaultdict(list)
        for (org, visit, *_), r in self.lab.items():
            names = [r.get(c, "") for c in ("P7614", "P7616", "P7624")]
            if not any(FLU_TEST.search(n) and not NOT_FLU.search(n) for n in names):
                continue
            results[(org, visit)].append(lab_result(r))
        visits = []
        for key, r in self.fever.items():
            got = results.get(key, [])
            status = next((s for s in ("positive", "undetermined", "negative", "pending") if s in got), None)
            visits.append({"org": key[0], "day": r["P7506"][:10], "tested": status in ("positive", "undetermined",
                                                                                         "negative"),
                           "positive": status == "positive"})
        return visits

    def outpatient_pages(self) -> list[dict]:
        return [{"org": org, "day": r["JZSJ"][:10], "month": r["JZSJ"][:7], "total_cost": Decimal(r["ZFY"]),
                 "antibiotic_cost": Decimal(r["KJYWF"]) if r["KJYWF"].strip() else None}
                for (org, *_), (r, upload, fid) in self.pages.items()
                if fid is None or self.holder[(org, fid)] == upload]


def tally(rows: list[dict], key, **values) -> dict:
    """Sums of ``values`` (name → function of a row) per ``key(row)``."""
    out: dict = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for name, fn in values.items():
            out[key(row)][name] += fn(row)
    return out


def _ingest() -> None:
    for batch in claim():
        process(batch)


def _mart(path: Path, table: str, columns: list[str], where: str) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(f"SELECT region_code, period_label, {', '.join(columns)} FROM marts.{table} "
                           f"WHERE {where}").fetchall()
    finally:
        con.close()
    return {(r[0], r[1]): dict(zip(columns, r[2:])) for r in rows}


def check(truth: Recomputed, cfg: config.Config, orgs: list[str]) -> list[str]:
    """Every recomputed figure against the exact aggregates and the published snapshot; the mismatches."""
    warehouse, snapshot = cfg.warehouse_path, cfg.marts_dir / publish.SNAPSHOT_NAME
    mismatches: list[str] = []

    def compare(table: str, where: str, expected: dict) -> None:
        """Every cell of ``expected`` (area, period) → {column: value} against the exact aggregate,
        and against the published one wherever it is not masked."""
        columns = sorted({c for v in expected.values() for c in v})
        exact = _mart(warehouse, table, columns, where)
        shown = _mart(snapshot, table, columns, where)
        for key in sorted(set(expected) | set(exact)):
            for col in columns:
                want = expected.get(key, {}).get(col, 0)
                got = exact.get(key, {}).get(col, 0)
                if got != want:
                    mismatches.append(f"{table} {where} {key} {col}: warehouse {got}, recomputed {want}")
                seen = shown.get(key, {}).get(col)
                if seen is not None and seen != want:
                    mismatches.append(f"{table} {where} {key} {col}: published {seen}, recomputed {want}")

    cases = truth.flu_cases()
    flu_values = {"cases": lambda c: 1, "lab_confirmed_a": lambda c: int(c["a"]),
                  "lab_confirmed_b": lambda c: int(c["b"]), "severe_cases": lambda c: int(c["severe"]),
                  "deaths": lambda c: int(c["died"])}
    compare("agg_flu", "period_type = 'week' AND region_level = 'province'",
            tally(cases, lambda c: (truth.place[c["org"]][0], epi_week(c["day"])), **flu_values))
    compare("agg_flu", "period_type = 'day' AND region_level = 'country'",
            tally(cases, lambda c: ("CN", c["day"]), **flu_values))

    fever = truth.fever_visits()
    compare("agg_fever", "period_type = 'week' AND region_level = 'city'",
            tally(fever, lambda v: (truth.place[v["org"]][1], epi_week(v["day"])), visits=lambda v: 1,
                  flu_tested=lambda v: int(v["tested"]), flu_positive=lambda v: int(v["positive"])))

    pages = truth.outpatient_pages()
    by_month = tally(pages, lambda p: (truth.place[p["org"]][0], p["month"]), visits=lambda p: 1,
                     total_cost=lambda p: p["total_cost"])
    for figures in by_month.values():
        figures["total_cost"] = cents(figures["total_cost"])
    compare("agg_outpatient", "period_type = 'month' AND region_level = 'province'", by_month)
    # KJYWF is optional: absent (no page of the cell reports it) is NULL, not 0.00
    by_day = tally(pages, lambda p: (truth.place[p["org"]][1], p["day"]), visits=lambda p: 1,
                   antibiotic_cost_pages=lambda p: int(p["antibiotic_cost"] is not None))
    for (city, day), figures in by_day.items():
        costs = [p["antibiotic_cost"] for p in pages if (truth.place[p["org"]][1], p["day"]) == (city, day)
                 and p["antibiotic_cost"] is not None]
        figures["antibiotic_cost"] = cents(sum(costs)) if costs else None
    compare("agg_outpatient", "period_type = 'day' AND region_level = 'city'", by_day)

    # reporting rate per stream × week, country: every registry hospital, every day of the range
    days = sorted({d for s in ("flu", "fever") for _, d in truth.received[s]})
    reporting: dict = {}
    for stream in ("flu", "fever"):
        for week in sorted({epi_week(d) for d in days}):
            in_week = [d for d in days if epi_week(d) == week]
            due = len(orgs) * len(in_week)
            got = sum((o, d) in truth.received[stream] for o in orgs for d in in_week)
            reporting[("CN", week, stream)] = {"periods_due": due, "periods_received": got,
                                               "reporting_rate": got / due}
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        published_reporting = {(r[0], r[1], r[2]): {"periods_due": r[3], "periods_received": r[4],
                                                    "reporting_rate": r[5]} for r in con.execute(
            "SELECT region_code, period_label, stream, periods_due, periods_received, reporting_rate "
            "FROM marts.agg_reporting WHERE period_type = 'week' AND region_level = 'country' "
            "AND stream IN ('flu', 'fever')").fetchall()}
        week_of = dict(con.execute("SELECT strftime(date_day, '%Y-%m-%d'), week_label FROM marts.dim_date "
                                   "WHERE date_day IN ('2024-12-30', '2025-01-05', '2025-01-06')").fetchall())
    finally:
        con.close()
    for key, want in reporting.items():
        if published_reporting.get(key) != pytest.approx(want):
            mismatches.append(f"agg_reporting {key}: published {published_reporting.get(key)}, recomputed {want}")

    assert week_of == {"2024-12-30": "2025-W01", "2025-01-05": "2025-W01", "2025-01-06": "2025-W02"}
    assert [epi_week(d) for d in ("2024-12-30", "2025-01-05", "2025-01-06")] == ["2025-W01", "2025-W01", "2025-W02"]

    return mismatches


def test_published_aggregates_equal_an_independent_recomputation(s3_store, tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "6", "--days", "9", "--start", "2025-01-06", "--seed", "19",
                 "--streams", "flu,fever,outpatient", "--out", str(gen), "--quiet"]) == 0
    assert hqms(["keys", "init"]) == 0
    cfg = config.load()
    hospitals.load(gen / "registry" / "hospitals.csv", cfg)
    provision_plan(gen / "upload_plan.csv")
    plan = sorted(csv.DictReader((gen / "upload_plan.csv").open(encoding="utf-8")),
                  key=lambda r: r["planned_received_at"])
    orgs = sorted({r["org_code"] for r in plan})
    truth = Recomputed(gen / "registry" / "hospitals.csv")

    def send(zip_path: Path, row: dict, received_at: str, ingest: bool = True) -> None:
        submit(zip_path, row["org_code"], row["uploader"], received_at=datetime.fromisoformat(received_at))
        if ingest:
            _ingest()
        truth.add(row["org_code"], row["stream"], row["period"], zip_path)

    skipped = next(r for r in plan if r["stream"] == "fever" and r["org_code"] == orgs[0]
                   and r["period"] == "2025-01-13")
    for row in plan:
        if row is not skipped:
            send(gen / row["zip"], row, row["planned_received_at"], ingest=False)
    _ingest()  # in one go: the ingest orders versions by receipt, not by processing

    # a corrected daily file re-sent: the first flu case of 2025-01-10 with a J09–J11 diagnosis and a
    # death gets another diagnosis and is no longer dead (the later version counts)
    flu_row = next(r for r in plan if r["stream"] == "flu" and r["org_code"] == orgs[1] and r["period"] == "2025-01-10")

    def correct(rows: list[list[str]]) -> None:
        header = rows[0]
        for r in rows[1:]:
            if r[header.index("P7506")].startswith("2025-01-10") and r[header.index("P321")].upper().startswith(FLU_PREFIXES):
                r[header.index("P321")], r[header.index("P322")] = "I10.x00", "高血压"
                r[header.index("P8508")] = "2"
                return
        raise AssertionError("no flu-coded visit to correct")

    send(edit_csv_in_zip(gen / flu_row["zip"], tmp_path / "flu_corrected.zip", "flu_", correct), flu_row,
         "2025-01-20T09:00:00+08:00")

    # a corrected fever file re-sent: its influenza results in the wordings hospitals write
    # (docs/marts.md, "Lab results"), a result not out yet, and a flag without text
    fever_row = next(r for r in plan if r["stream"] == "fever" and r["period"] == "2025-01-09")
    wordings = iter(WORDINGS_SENT * 50)

    def reword(rows: list[list[str]]) -> None:
        h = rows[0]
        for r in rows[1:]:
            if FLU_TEST.search(r[h.index("P7614")]):
                r[h.index("P7621")], r[h.index("P7620")], r[h.index("P7625")] = next(wordings)

    send(edit_csv_in_zip(gen / fever_row["zip"], tmp_path / "fever_corrected.zip", "lab_", reword), fever_row,
         "2025-01-21T09:00:00+08:00")

    # issue 22: mzsy_202501.csv re-sent without its costliest page, then the same pages as mzsy_export.csv
    page_row = next(r for r in plan if r["stream"] == "outpatient" and r["org_code"] == orgs[2])
    withdrawn: list[str] = []

    def withdraw(rows: list[list[str]]) -> None:
        zfy, kjywf, jzsj = rows[0].index("ZFY"), rows[0].index("KJYWF"), rows[0].index("JZSJ")
        withdrawn[:] = max(rows[1:], key=lambda p: Decimal(p[zfy]))
        rows.remove(withdrawn)
        for page in rows[1:]:  # and no antibiotic cost reported for the pages of one day
            if page[jzsj].startswith("2025-01-08"):
                page[kjywf] = ""

    correction = edit_csv_in_zip(gen / page_row["zip"], tmp_path / "mzsy_correction.zip", "mzsy_", withdraw)
    send(correction, page_row, "2025-02-20T09:00:00+08:00")
    with zipfile.ZipFile(correction) as zin, zipfile.ZipFile(tmp_path / "mzsy_export.zip", "w") as zout:
        zout.writestr("mzsy_export.csv", zin.read(zin.namelist()[0]))
    send(tmp_path / "mzsy_export.zip", page_row, "2025-02-22T09:00:00+08:00")

    dbt.build("all")
    publish.publish(cfg, upload=False)
    mismatches = check(truth, cfg, orgs)
    pages = truth.outpatient_pages()
    with zipfile.ZipFile(gen / page_row["zip"]) as zf:
        sent = len(zf.read(zf.namelist()[0]).decode("gb18030").strip().splitlines()) - 1
    assert withdrawn and sum(p["org"] == orgs[2] for p in pages) == sent - 1  # the withdrawn page stays out
    assert not mismatches, "\n".join(mismatches[:40])
