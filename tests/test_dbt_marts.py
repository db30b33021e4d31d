"""dbt marts on a real DuckDB warehouse populated with synthetic de-identified rows.

The warehouse is created with ``hqms.warehouse.ensure_schema`` (the shape the ingest writes) and
filled by :func:`populate` with random but seeded rows: visits, re-sent versions, linked lab and
drug records, fever-clinic visits with lab results, outpatient pages, uploads. Then:

* ``dbt build`` (seeds, models, data tests and the unit tests that pin the case definitions)
  passes, and ``dbt docs generate`` works;
* ``flu_daily`` and ``fever_daily`` equal totals recomputed here straight from the dw tables with
  SQL written from the issue's definitions (not from the dbt models);
* an incremental build after late records rebuilds only the touched dates and agrees with the
  recomputation; publishing suppresses small cells and swaps the snapshot atomically.
"""
from __future__ import annotations

import json
import random
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import use_home

from hqms import config as hqms_config
from hqms.marts import dbt, publish, sources, summary
from hqms.spec import reference_csv
from hqms.warehouse import ensure_schema

CST = timezone(timedelta(hours=8))
FIRST_DAY = date(2025, 1, 6)
DAYS = 7
#: Loaded long before any build runs, so the incremental lookback does not reach them.
OLD_LOAD = datetime(2025, 1, 20, tzinfo=timezone.utc)

#: (org_code, province, city); the last hospital uploads but is missing from the registry.
HOSPITALS = [
    ("SYNTH00000000000000001", "51", "510100"),
    ("SYNTH00000000000000002", "51", "510100"),
    ("SYNTH00000000000000003", "51", "510700"),
    ("SYNTH00000000000000004", "44", "440100"),
    ("SYNTH00000000000000005", "44", "440100"),
]
UNREGISTERED = "SYNTH00000000000000099"

FLU_DX = ["J10.101", "J11.101", "J10.001", "J11.000", "J09.x02", "J06.900", "J18.900", "J20.900", None]
DRUGS = ["磷酸奥司他韦胶囊", "Oseltamivir phosphate", "扎那米韦吸入粉雾剂", "帕拉米韦氯化钠注射液",
         "玛巴洛沙韦片", "对乙酰氨基酚片", "阿莫西林胶囊", "昂拉地韦片"]
LAB_NAMES = ["甲型流感病毒抗原检测", "乙型流感病毒抗原检测", "流感病毒核酸检测", "血常规", "C反应蛋白",
             "新型冠状病毒核酸检测"]
LAB_RESULTS = ["阳性", "阴性", "弱阳性", "阴性(-)", None]
#: What hospitals also write (issue 22): (P7621 text, P7620 value, P7618 range, P7625 flag).
LAB_WORDINGS = [("非阳性", None, None, None), ("阴阳性待定", None, None, None), ("未检出", None, None, None),
                ("可疑", None, None, None), ("＋", None, None, None), ("Not detected", None, None, None),
                (None, "12.5", "0-1.0", None), (None, "0.4", "<1.0", None), (None, "0.4", "<1.0", "22"),
                (None, "3.2", None, None), (None, None, None, "2"), ("待报告", None, None, None)]
AGE_BANDS = ["0-4", "5-14", "15-24", "25-59", "60+", None]
DX_CHAPTER_CODES = ["J06.900", "J20.900", "I10.x00", "K29.700", "E11.900", "M54.500", None, "Z00.000"]


@dataclass
class Rows:
    """Rows per table, inserted BY NAME (columns not given stay NULL)."""

    tables: dict[str, list[dict]]

    def add(self, table: str, **row: object) -> None:
        self.tables.setdefault(table, []).append(row)


def _meta(rng: random.Random, org: str, received: datetime, loaded: datetime = OLD_LOAD) -> dict:
    return {"_nk": uuid.UUID(int=rng.getrandbits(128)).hex, "_org_code": org, "_received_at": received,
            "_loaded_at": loaded, "_upload_id": "u-synthetic", "_source_file": "synthetic.csv",
            "_source_row": 1, "_key_id": "k1"}


def _pid(rng: random.Random) -> str:
    return "%032x" % rng.getrandbits(128)


def synthetic_rows(seed: int = 7) -> Rows:
    """Random de-identified warehouse content for a week of a few hospitals."""
    rng = random.Random(seed)
    rows = Rows({})
    orgs = [h[0] for h in HOSPITALS] + [UNREGISTERED]
    for org, province, city in HOSPITALS:
        rows.add("ref.hospitals", org_code=org, name=f"合成医院{org[-2:]}", province_code=province,
                 city_code=city, city_name=None, medicine_type="西医", category="A100", level="三级",
                 grade="甲等")
    for day_n in range(DAYS):
        day = FIRST_DAY + timedelta(days=day_n)
        for org in orgs:
            received = datetime.combine(day + timedelta(days=1), datetime.min.time(), CST) + timedelta(hours=9)
            for _ in range(rng.randint(0, 9)):
                _flu_visit(rng, rows, org, day, received)
            for _ in range(rng.randint(0, 8)):
                _fever_visit(rng, rows, org, day, received)
            _uploads(rng, rows, org, day)
    for org in orgs[:4]:
        for _ in range(rng.randint(3, 12)):
            visit = datetime.combine(date(2025, 1, rng.randint(1, 31)), datetime.min.time()) + timedelta(
                minutes=rng.randint(0, 1439))
            emergency = rng.random() < 0.3
            total = round(rng.uniform(20, 900), 2)
            rows.add("dw.mzsy", **_meta(rng, org, datetime(2025, 2, 10, 9, tzinfo=CST)), visit_time=visit,
                     visit_type="1" if emergency else "2", revisit=rng.choice("12"),
                     iv_infusion=rng.choice("122"), chronic_special_disease=rng.choice("122"),
                     ed_triage_level=rng.choice("1234") if emergency else None,
                     principal_dx_code=rng.choice(DX_CHAPTER_CODES), total_cost=total,
                     self_pay=round(total * rng.random(), 2), antibacterial_fee=round(rng.uniform(0, 50), 2))
        rows.add("ops.uploads", upload_id=f"m-{org}", stream="outpatient", org_code=org,
                 file_name="mzsy.zip", received_at=datetime(2025, 2, rng.choice([10, 15, 17]), 20, tzinfo=CST),
                 status="processed", record_count=12, conforming_count=12, processed_at=OLD_LOAD)
        rows.add("ops.upload_files", upload_id=f"m-{org}", file_name="mzsy_202501.csv", dataset="mzsy",
                 stream="outpatient", record_count=12, conforming_count=12, period_start=date(2025, 1, 1),
                 period_end=date(2025, 1, 31))
    _date_only_rows(rows)
    _lab_wording_rows(rng, rows)
    return rows


def _date_only_rows(rows: Rows) -> None:
    """P7506 / JZSJ written as a date only (stored at 00:00:00), in the shapes the marts' rules
    handle (docs/marts.md, "Date-only visit times"); loaded at OLD_LOAD like the rest, from
    source file ``date_only.csv`` so tests can find them."""
    rng = random.Random(2006)

    def meta(org_code: str, received: datetime) -> dict:
        return _meta(rng, org_code, received) | {"_source_file": "date_only.csv"}

    org = HOSPITALS[1][0]
    day = FIRST_DAY + timedelta(days=2)
    midnight = datetime.combine(day, datetime.min.time())
    first = datetime.combine(day + timedelta(days=1), datetime.min.time(), CST) + timedelta(hours=9)
    resend = first + timedelta(days=1)

    def flu(card: str, visit_time: datetime, received: datetime, dx: str = "J10.101", vtype: str = "01") -> None:
        rows.add("dw.flu", **meta(org, received), visit_type=vtype, visit_card_no_pid=card,
                 visit_time=visit_time, principal_dx_code=dx, birth_date_age_band="25-59", sex="1", died="2")

    # The exporter switched to date-only between two re-sends: one visit (the date-only row).
    switched = "date-only-switched"
    flu(switched, midnight + timedelta(hours=10, minutes=15), first)
    flu(switched, midnight, resend)
    # A timed visit whose lab and drug records carry P7506 date-only: lab-only case A, treated.
    timed = "date-only-timed"
    flu(timed, midnight + timedelta(hours=11, minutes=20), first, dx="J06.900", vtype="02")
    link = {"visit_type": "02", "visit_card_no_pid": timed, "visit_time": midnight}
    rows.add("dw.lis", **meta(org, first), **link, flu_item="35", positive="1")
    rows.add("dw.pdr", **meta(org, first), **link, drug_name="磷酸奥司他韦胶囊",
             start_time=midnight + timedelta(hours=30))
    # A lab record of another time of that day (not midnight): another visit, not linked.
    rows.add("dw.lis", **meta(org, first), **dict(link, visit_time=midnight + timedelta(hours=15)),
             flu_item="36", positive="1")
    # One upload holding a date-only and a timed row of one card and day: both kept.
    both = "date-only-both"
    flu(both, midnight, first)
    flu(both, midnight + timedelta(hours=14), first)
    # Outpatient: a page sent with JZSJ at 09:30, re-sent date-only (new key) → one page.
    card = "date-only-page"
    for jzsj, received in ((datetime(2025, 1, 8, 9, 30), datetime(2025, 2, 10, 9, tzinfo=CST)),
                           (datetime(2025, 1, 8), datetime(2025, 2, 12, 9, tzinfo=CST))):
        rows.add("dw.mzsy", **meta(HOSPITALS[0][0], received), visit_card_no_pid=card, visit_time=jzsj,
                 visit_type="2", revisit="2", iv_infusion="2", chronic_special_disease="2",
                 principal_dx_code="J06.900", total_cost=100.0, self_pay=20.0, antibacterial_fee=0.0)


def _flu_visit(rng: random.Random, rows: Rows, org: str, day: date, received: datetime) -> None:
    visit_time = datetime.combine(day, datetime.min.time()) + timedelta(minutes=rng.randint(0, 1439))
    visit_type = rng.choice(["01", "01", "02", "03"])
    card = _pid(rng)
    died = visit_type == "03" and rng.random() < 0.1
    row = _meta(rng, org, received) | {
        "visit_type": visit_type, "visit_card_no_pid": card, "visit_time": visit_time,
        "principal_dx_code": rng.choice(FLU_DX), "other_dx1_code": rng.choice([None, None, "J11.000", "I10.x00"]),
        "other_dx7_code": rng.choice([None] * 5 + ["J10.101"]),
        "birth_date_age_band": rng.choice(AGE_BANDS), "sex": rng.choice("129"),
        "icu1_unit": "02" if visit_type == "03" and rng.random() < 0.2 else None,
        "died": "1" if died else "2",
    }
    rows.add("dw.flu", **row)
    if rng.random() < 0.15:  # an older version of the same record, re-sent days before
        older = dict(row, _received_at=received - timedelta(days=rng.randint(1, 3)), principal_dx_code="J06.900")
        rows.add("dw.flu", **older)
    link = {"visit_type": visit_type, "visit_card_no_pid": card, "visit_time": visit_time}
    for _ in range(rng.choice([0, 0, 1, 2])):
        rows.add("dw.lis", **_meta(rng, org, received), **link, flu_item=rng.choice(["35", "36", "99"]),
                 positive=rng.choice("12"))
    if rng.random() < 0.1:  # a lab record of another visit time (must not link)
        rows.add("dw.lis", **_meta(rng, org, received), **dict(link, visit_time=visit_time + timedelta(hours=1)),
                 flu_item="35", positive="1")
    for _ in range(rng.choice([0, 1, 1, 2])):
        start = visit_time + timedelta(hours=rng.choice([-2, 1, 20, 47, 48, 49, 50, 72]))
        rows.add("dw.pdr", **_meta(rng, org, received), **link, drug_name=rng.choice(DRUGS), start_time=start)


def _fever_visit(rng: random.Random, rows: Rows, org: str, day: date, received: datetime) -> None:
    serial = _pid(rng)
    visit_time = datetime.combine(day, datetime.min.time()) + timedelta(minutes=rng.randint(0, 1439))
    rows.add("dw.fever", **_meta(rng, org, received), opd_visit_serial_pid=serial, visit_time=visit_time,
             sex=rng.choice(["1", "2", "9", None]), birth_date_age_band=rng.choice(AGE_BANDS),
             first_visit=rng.choice("12"), referred=rng.choice("122"), observation_stay=rng.choice("1222"))
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        rows.add("dw.lab", **_meta(rng, org, received), opd_visit_serial_pid=serial, visit_time=visit_time,
                 item_name=rng.choice(LAB_NAMES), result_qualitative=rng.choice(LAB_RESULTS))


def _lab_wording_rows(rng: random.Random, rows: Rows) -> None:
    """Fever visits of the first hospital's first day, each with influenza tests in the wordings
    and numeric forms of LAB_WORDINGS (one alone, one beside a positive or negative A test)."""
    org, day = HOSPITALS[0][0], FIRST_DAY
    received = datetime.combine(day + timedelta(days=1), datetime.min.time(), CST) + timedelta(hours=9)
    for n, (text, value, reference, flag) in enumerate(LAB_WORDINGS * 2):
        serial = _pid(rng)
        visit_time = datetime.combine(day, datetime.min.time()) + timedelta(minutes=10 * n)
        rows.add("dw.fever", **_meta(rng, org, received), opd_visit_serial_pid=serial, visit_time=visit_time, sex="1")
        rows.add("dw.lab", **_meta(rng, org, received), opd_visit_serial_pid=serial, visit_time=visit_time,
                 item_name="流感病毒核酸检测" if n % 2 else "乙型流感病毒抗原检测", result_qualitative=text,
                 result_value=value, reference_range=reference, abnormal_flag=flag)
        if n >= len(LAB_WORDINGS):
            rows.add("dw.lab", **_meta(rng, org, received), opd_visit_serial_pid=serial, visit_time=visit_time,
                     item_name="甲型流感病毒抗原检测", result_qualitative="阳性" if n % 3 else "阴性")


def _uploads(rng: random.Random, rows: Rows, org: str, day: date) -> None:
    for stream, prefix in (("flu", "flu"), ("fever", "fever")):
        if rng.random() < 0.1:
            continue  # this hospital missed the day
        delay = rng.choice([timedelta(hours=h) for h in (18, 30, 40, 47)] + [timedelta(hours=49)])
        received = datetime.combine(day, datetime.min.time(), CST) + delay
        status = rng.choice(["processed", "processed", "partially_accepted", "rejected"])
        uid = f"{stream}-{org}-{day:%Y%m%d}"
        n = rng.randint(5, 40)
        ok = 0 if status == "rejected" else n if status == "processed" else n - rng.randint(1, 4)
        rows.add("ops.uploads", upload_id=uid, stream=stream, org_code=org, file_name=f"{uid}.zip",
                 received_at=received, status=status, record_count=n, conforming_count=ok, processed_at=OLD_LOAD)
        rows.add("ops.upload_files", upload_id=uid, file_name=f"{prefix}_{day:%Y%m%d}.csv", dataset=prefix,
                 stream=stream, record_count=n, conforming_count=ok, period_start=day - timedelta(days=6),
                 period_end=day)


def insert(con: duckdb.DuckDBPyConnection, rows: Rows) -> None:
    for table, records in rows.tables.items():
        columns = sorted({k for r in records for k in r})
        values = [[r.get(c) for c in columns] for r in records]
        names = ", ".join(f'"{c}"' for c in columns)
        con.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", values)


def populate(warehouse: Path, rows: Rows | None = None) -> None:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse))
    try:
        ensure_schema(con)
        insert(con, rows or synthetic_rows())
    finally:
        con.close()


def _config(home: Path) -> hqms_config.Config:
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, home)
        return hqms_config.load()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[hqms_config.Config, dbt.DbtResult]]:
    """A populated warehouse after one full ``dbt build`` including unit tests."""
    cfg = _config(tmp_path_factory.mktemp("marts_home"))
    populate(cfg.warehouse_path)
    result = dbt.build(unit_tests=True, cfg=cfg)
    yield cfg, result


def _query(cfg: hqms_config.Config, sql: str) -> list[tuple]:
    con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- definitions recomputed from the dw tables, written from the issue (not from the models) ---

ANTIVIRALS = "奥司他韦|oseltamivir|扎那米韦|zanamivir|帕拉米韦|peramivir|玛巴洛沙韦|baloxavir"
DX_COLUMNS = ["principal_dx_code"] + [f"other_dx{i}_code" for i in range(1, 11)]
#: lis_ / pdr_ → flu_: same hospital, P7501, P7502, and the same P7506, or either one written as a
#: date only (00:00:00) and the same date.
LINK = ("l._org_code = v._org_code AND l.visit_type = v.visit_type "
        "AND l.visit_card_no_pid = v.visit_card_no_pid AND (l.visit_time = v.visit_time "
        "OR ((l.visit_time::TIME = TIME '00:00:00' OR v.visit_time::TIME = TIME '00:00:00') "
        "AND l.visit_time::DATE = v.visit_time::DATE))")


def superseded(keys: list[str], table: str = "v") -> str:
    """Row ``v`` of ``table`` was re-sent by a newer upload (received later, or as late and loaded
    later) with the same hospital + keys on the same date in the other precision (date-only vs
    timed): the marts drop it."""
    same = " AND ".join(f"n.{k} = v.{k}" for k in ["_org_code", *keys])
    return f"""EXISTS (SELECT 1 FROM {table} AS n WHERE {same}
        AND n.visit_time::DATE = v.visit_time::DATE
        AND (n.visit_time::TIME = TIME '00:00:00') <> (v.visit_time::TIME = TIME '00:00:00')
        AND (n._received_at > v._received_at
             OR (n._received_at = v._received_at AND n._loaded_at > v._loaded_at)))"""


FLU_RECOMPUTED = f"""
WITH v AS (
    SELECT * FROM dw.flu QUALIFY row_number() OVER (PARTITION BY _org_code, _nk ORDER BY _received_at DESC) = 1
), f AS (
    SELECT v._org_code AS org_code, CAST(v.visit_time AS DATE) AS report_date, v.visit_type,
           v.birth_date_age_band AS band, v.died = '1' AS died, v.icu1_unit IS NOT NULL AS icu,
           len(list_filter([{', '.join('v.' + c for c in DX_COLUMNS)}],
                           c -> regexp_matches(c, '^J(09|10|11)'))) > 0 AS dx,
           len(list_filter([{', '.join('v.' + c for c in DX_COLUMNS)}],
                           c -> regexp_matches(c, '^J1[01]\\.0'))) > 0 AS pneumonia,
           EXISTS (SELECT 1 FROM dw.lis l WHERE {LINK} AND l.positive = '1' AND l.flu_item = '35') AS lab_a,
           EXISTS (SELECT 1 FROM dw.lis l WHERE {LINK} AND l.positive = '1' AND l.flu_item = '36') AS lab_b,
           (SELECT min(l.start_time) FROM dw.pdr l WHERE {LINK}
              AND regexp_matches(lower(l.drug_name), '{ANTIVIRALS}')) AS antiviral_start,
           v.visit_time
    FROM v WHERE NOT {superseded(["visit_type", "visit_card_no_pid"])}
), c AS (SELECT *, dx OR lab_a OR lab_b AS is_case FROM f)
SELECT report_date, org_code, count(*) AS visits,
       count(*) FILTER (WHERE is_case) AS cases,
       count(*) FILTER (WHERE is_case AND visit_type = '01') AS outpatient_cases,
       count(*) FILTER (WHERE is_case AND visit_type = '02') AS emergency_cases,
       count(*) FILTER (WHERE is_case AND visit_type = '03') AS inpatient_cases,
       count(*) FILTER (WHERE lab_a) AS lab_confirmed_a,
       count(*) FILTER (WHERE lab_b) AS lab_confirmed_b,
       count(*) FILTER (WHERE is_case AND antiviral_start IS NOT NULL) AS antiviral_treated,
       count(*) FILTER (WHERE is_case AND antiviral_start <= visit_time + INTERVAL 48 HOUR) AS antiviral_within_48h,
       count(*) FILTER (WHERE is_case AND (icu OR pneumonia OR died)) AS severe_cases,
       count(*) FILTER (WHERE is_case AND died) AS deaths,
       count(*) FILTER (WHERE is_case AND band = '0-4') AS age_0_4,
       count(*) FILTER (WHERE is_case AND band = '5-14') AS age_5_14,
       count(*) FILTER (WHERE is_case AND band = '15-24') AS age_15_24,
       count(*) FILTER (WHERE is_case AND band = '25-59') AS age_25_59,
       count(*) FILTER (WHERE is_case AND band = '60+') AS age_60_plus
FROM c GROUP BY ALL
"""
FLU_MART = """SELECT report_date, org_code, visits, cases, outpatient_cases, emergency_cases, inpatient_cases,
       lab_confirmed_a, lab_confirmed_b, antiviral_treated, antiviral_within_48h, severe_cases, deaths,
       age_0_4, age_5_14, age_15_24, age_25_59, age_60_plus FROM marts.flu_daily"""

#: A lab_ result read as docs/marts.md "Lab results" says (text wordings in order, no result →
#: pending, flag P7625, the number P7620 against a range P7618 written a-b or <b, else undetermined).
_TEXT = ("lower(replace(replace(replace(replace(replace(trim(result_qualitative), '＋', '+'), '－', '-'), "
         "'（', '('), '）', ')'), ' ', ''))")
_NUMBER = "try_cast(regexp_replace(trim(result_value), '^[<>]', '') AS DOUBLE)"
LAB_STATUS = f"""CASE
    WHEN regexp_matches({_TEXT}, '待检|检测中|未出|待报告|未报告|未完成|pending') THEN 'pending'
    WHEN regexp_matches({_TEXT}, '待定|可疑|待复查|不确定|无法判|灰区|无效|±|\\+/-|equivocal|indeterminate|inconclusive|borderline|invalid')
        THEN 'undetermined'
    WHEN regexp_matches({_TEXT}, '非阳性|未检出|未检测到|未见|notdetected|nondetected|undetected|non-?reactive|notpositive')
        THEN 'negative'
    WHEN regexp_matches({_TEXT}, '阳性|弱阳|检出|positive|detected|reactive')
        OR regexp_full_match({_TEXT}, '阳|\\(?\\+{{1,4}}\\)?|pos') THEN 'positive'
    WHEN regexp_matches({_TEXT}, '阴性|negative') OR regexp_full_match({_TEXT}, '阴|\\(?-\\)?|--|neg|无') THEN 'negative'
    WHEN coalesce({_TEXT}, '') = '' AND coalesce(trim(result_value), '') = '' THEN 'pending'
    WHEN trim(abnormal_flag) = '1' THEN 'negative'
    WHEN trim(abnormal_flag) IN ('2', '21', '22') THEN 'positive'
    WHEN regexp_full_match(reference_range, '[0-9.]+-[0-9.]+') THEN
        CASE WHEN {_NUMBER} BETWEEN CAST(split_part(reference_range, '-', 1) AS DOUBLE)
                               AND CAST(split_part(reference_range, '-', 2) AS DOUBLE)
             THEN 'negative' ELSE 'positive' END
    WHEN regexp_full_match(reference_range, '<[0-9.]+') THEN
        CASE WHEN {_NUMBER} <= CAST(substr(reference_range, 2) AS DOUBLE) THEN 'negative' ELSE 'positive' END
    ELSE 'undetermined' END"""

FEVER_RECOMPUTED = f"""
WITH v AS (
    SELECT * FROM dw.fever QUALIFY row_number() OVER (PARTITION BY _org_code, _nk ORDER BY _received_at DESC) = 1
), r AS (
    SELECT _org_code, opd_visit_serial_pid, {LAB_STATUS} AS status,
           CASE WHEN item_name LIKE '甲型%' THEN 'A' WHEN item_name LIKE '乙型%' THEN 'B' ELSE '' END AS type
    FROM dw.lab WHERE regexp_matches(item_name, '流感')
), t AS (
    SELECT _org_code, opd_visit_serial_pid,
           bool_or(status <> 'pending') AS tested,
           bool_or(status = 'positive') AS positive,
           bool_or(status = 'undetermined') AS undetermined,
           bool_or(status = 'positive' AND type = 'A') AS a,
           bool_or(status = 'positive' AND type = 'B') AS b
    FROM r GROUP BY ALL
)
SELECT CAST(v.visit_time AS DATE) AS report_date, v._org_code AS org_code, count(*) AS visits,
       count(*) FILTER (WHERE first_visit = '1') AS first_visits,
       count(*) FILTER (WHERE referred = '1') AS referrals,
       count(*) FILTER (WHERE observation_stay = '1') AS observation_stays,
       count(*) FILTER (WHERE t.tested) AS flu_tested,
       count(*) FILTER (WHERE t.positive) AS flu_positive,
       count(*) FILTER (WHERE t.tested AND NOT t.positive AND t.undetermined) AS flu_undetermined,
       count(*) FILTER (WHERE NOT t.tested) AS flu_pending,
       count(*) FILTER (WHERE t.a AND NOT t.b) AS flu_a_only,
       count(*) FILTER (WHERE t.b AND NOT t.a) AS flu_b_only,
       count(*) FILTER (WHERE t.a AND t.b) AS flu_ab_both,
       count(*) FILTER (WHERE t.positive AND NOT t.a AND NOT t.b) AS flu_untyped_positive,
       count(*) FILTER (WHERE sex = '1') AS male, count(*) FILTER (WHERE sex = '2') AS female
FROM v LEFT JOIN t ON t._org_code = v._org_code AND t.opd_visit_serial_pid = v.opd_visit_serial_pid
GROUP BY ALL
"""
FEVER_MART = """SELECT report_date, org_code, visits, first_visits, referrals, observation_stays, flu_tested,
       flu_positive, flu_undetermined, flu_pending, flu_a_only, flu_b_only, flu_ab_both, flu_untyped_positive,
       male, female FROM marts.fever_daily"""


def _differences(cfg: hqms_config.Config, left: str, right: str) -> list[tuple]:
    return _query(cfg, f"({left}) EXCEPT ({right})") + _query(cfg, f"({right}) EXCEPT ({left})")


# --- tests ---

def test_sources_yml_is_generated_from_the_spec() -> None:
    assert sources.is_current(), "run `hqms marts sources` and commit dbt_project/models/sources.yml"
    doc = yaml.safe_load(sources.SOURCES_FILE.read_text(encoding="utf-8"))
    dw = {t["name"]: [c["name"] for c in t["columns"]] for t in doc["sources"][0]["tables"]}
    assert {"visit_card_no_pid", "visit_time", "died", "_loaded_at"} <= set(dw["flu"])
    assert "patient_name" not in dw["flu"]  # dropped by privacy class, so not a source column


def test_reference_seeds_hold_what_the_case_definition_needs() -> None:
    """The unit tests give these lists inline; the shipped seeds must agree."""
    icd = {r["code_prefix"]: r["is_pneumonia"] for r in reference_csv("flu_icd10.csv")}
    assert {"J09", "J10", "J11"} <= set(icd) and icd["J10.0"] == "true" and icd["J11.0"] == "true"
    assert {(r["item_code"], r["flu_type"]) for r in reference_csv("flu_lab_items.csv")} >= {("35", "A"), ("36", "B")}
    baseline = {r["pattern"] for r in reference_csv("flu_antivirals.csv") if r["in_baseline"] == "true"}
    assert {"奥司他韦", "扎那米韦", "帕拉米韦", "玛巴洛沙韦"} <= baseline


def test_publish_catalog_is_the_analysts_set() -> None:
    specs = {m.name: m for m in publish.catalog()}
    assert set(specs) == {"hospitals", "dim_date", "dim_epi_week", "agg_flu", "agg_fever", "agg_outpatient",
                          "agg_reporting"}  # hospital-level marts stay in the warehouse
    flu = specs["agg_flu"].suppression
    assert "cases" in flu.counts and "period_start" not in flu.counts
    opd = specs["agg_outpatient"].suppression
    assert opd.derived["avg_cost_per_visit"] == ("visits",)
    # a rate is suppressed with its numerator too: rate × denominator would give it back
    assert opd.derived["infusion_rate"] == ("visits", "infusion_visits")
    assert specs["agg_flu"].columns["cases"] and specs["agg_flu"].description
    # shared columns are dbt doc blocks (models/published/agg_columns.md), resolved as dbt does
    assert specs["agg_fever"].columns["period_type"].startswith("day | week")
    assert not [c for s in specs.values() for c in (s.description, *s.columns.values()) if "{{" in c]


def test_each_model_has_its_yaml_beside_its_sql() -> None:
    """One YAML per model, beside its SQL, holding that model's description, tests and unit tests."""
    sql = {p.with_suffix(".yml") for p in publish.MODELS_DIR.rglob("*.sql")}
    assert set(publish.MODELS_DIR.rglob("*.yml")) == sql | {sources.SOURCES_FILE}
    for path in sql:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert [m["name"] for m in doc["models"]] == [path.stem], path
        assert {u["model"] for u in doc.get("unit_tests") or []} <= {path.stem}, path


def test_docs_describe_every_published_mart_and_column() -> None:
    docs = (dbt.PROJECT_DIR.parent / "docs" / "marts.md").read_text(encoding="utf-8")
    for folder in ("marts", "published"):
        for path in (publish.MODELS_DIR / folder).glob("*.yml"):
            for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or []:
                schema = "intermediate" if model["name"].startswith("pub_") else "marts"  # inputs of the aggregates
                assert f"{schema}.{model['name']}" in docs, model["name"]
                for col in model.get("columns") or []:
                    assert col["name"] in docs, f"{model['name']}.{col['name']} not in docs/marts.md"


@pytest.mark.slow
def test_dbt_build_passes_with_unit_tests(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    cfg, result = built
    counts = result.counts()
    assert result.ok and counts.get("error", 0) == 0 and counts.get("fail", 0) == 0, result.failures()
    kinds = {r["unique_id"].split(".")[0] for r in result.results}
    assert kinds == {"seed", "model", "test", "unit_test"}
    unit = [r for r in result.results if r["unique_id"].startswith("unit_test.")]
    assert len(unit) >= 4 and all(r["status"] == "pass" for r in unit)
    assert not (dbt.PROJECT_DIR / "target").exists(), "dbt must write under HQMS_HOME, not the repo"
    assert (cfg.home / "dbt" / "target" / "manifest.json").exists()


@pytest.mark.slow
def test_flu_daily_equals_recomputation_from_dw(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    cfg, _ = built
    assert _differences(cfg, FLU_MART, FLU_RECOMPUTED) == []
    cases, visits, lab_only = _query(cfg, "SELECT sum(cases), sum(visits), sum(lab_only_cases) FROM marts.flu_daily")[0]
    assert 0 < cases < visits and lab_only > 0  # the data exercises the definition
    for level in ("province", "city"):
        assert _differences(cfg, f"""
            SELECT report_date, {level}_code, count(*), sum(cases)::BIGINT, sum(deaths)::BIGINT, sum(age_60_plus)::BIGINT
            FROM marts.flu_daily GROUP BY ALL""", f"""
            SELECT report_date, region_code, hospitals, cases, deaths, age_60_plus
            FROM marts.flu_daily_by_region WHERE region_level = '{level}'""") == []


@pytest.mark.slow
def test_fever_daily_equals_recomputation_from_dw(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    cfg, _ = built
    assert _differences(cfg, FEVER_MART, FEVER_RECOMPUTED) == []
    tested, positive = _query(cfg, "SELECT sum(flu_tested), sum(flu_positive) FROM marts.fever_daily")[0]
    assert 0 < positive < tested
    # the data exercises every outcome and every kind of positive
    assert all(n > 0 for n in _query(cfg, """SELECT sum(flu_undetermined), sum(flu_pending), sum(flu_a_only),
        sum(flu_b_only), sum(flu_ab_both), sum(flu_untyped_positive) FROM marts.fever_daily""")[0])


@pytest.mark.slow
def test_submission_marts_cover_the_registry(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    cfg, _ = built
    per_stream = dict(_query(cfg, "SELECT stream, count(*) FROM marts.submission_daily GROUP BY stream"))
    assert per_stream == {"flu": len(HOSPITALS) * DAYS, "fever": len(HOSPITALS) * DAYS}
    assert _query(cfg, f"SELECT count(*) FROM marts.submission_daily WHERE org_code = '{UNREGISTERED}'") == [(0,)]
    # Recomputed: on time = first accepted upload before 24:00 local of the next day.
    mismatched = _query(cfg, """
        WITH u AS (
            SELECT u.org_code, u.stream, f.period_end AS day,
                   min(u.received_at) FILTER (WHERE u.status IN ('processed', 'partially_accepted')) AS first_ok
            FROM ops.uploads u JOIN ops.upload_files f USING (upload_id)
            WHERE u.stream IN ('flu', 'fever') GROUP BY ALL)
        SELECT s.* FROM marts.submission_daily s LEFT JOIN u
          ON u.org_code = s.org_code AND u.stream = s.stream AND u.day = s.report_date
        WHERE s.on_time IS DISTINCT FROM coalesce(
            (u.first_ok AT TIME ZONE 'Asia/Shanghai') < s.report_date + INTERVAL 2 DAY, false)
           OR s.received IS DISTINCT FROM (u.first_ok IS NOT NULL)""")
    assert mismatched == []
    rollup = _query(cfg, """
        SELECT hospitals_expected, hospitals_reported, reporting_rate FROM marts.submission_daily_by_region
        WHERE region_level = 'province' AND region_code = '51' AND stream = 'flu' ORDER BY report_date LIMIT 1""")
    expected, reported, rate = rollup[0]
    assert expected == 3 and rate == pytest.approx(reported / 3)
    monthly = _query(cfg, "SELECT count(*), count(*) FILTER (WHERE received) FROM marts.submission_monthly")
    assert monthly == [(len(HOSPITALS), 4)]


@pytest.mark.slow
def test_outpatient_monthly_matches_pages(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    cfg, _ = built
    diff = _differences(cfg, """
        SELECT month, org_code, visits, emergency_visits, revisits, infusion_visits, total_cost
        FROM marts.outpatient_monthly""", f"""
        SELECT DATE '2025-01-01', _org_code, count(*), count(*) FILTER (WHERE visit_type = '1'),
               count(*) FILTER (WHERE revisit = '1'), count(*) FILTER (WHERE iv_infusion = '1'),
               sum(total_cost) FROM dw.mzsy AS v WHERE NOT {superseded(["visit_card_no_pid"], "dw.mzsy")}
        GROUP BY ALL""")
    assert diff == []
    top = _query(cfg, """
        SELECT o.top_dx_chapter_1, o.top_dx_chapter_1_visits, c.dx_chapter, c.visits
        FROM marts.outpatient_monthly o JOIN marts.outpatient_monthly_dx_chapters c
          ON c.month = o.month AND c.org_code = o.org_code AND c.chapter_rank = 1""")
    assert top and all(a == c and b == d for a, b, c, d in top)


@pytest.mark.slow
def test_date_only_visit_times_link_and_are_counted_once(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    """The rows of :func:`_date_only_rows` as the marts see them (the totals are checked above)."""
    cfg, _ = built
    flu = _query(cfg, """
        SELECT f.visit_card_no_pid, i.visit_time::TIME::VARCHAR, i.lab_confirmed_a, i.lab_confirmed_b,
               i.antiviral_treated, i.antiviral_within_48h
        FROM intermediate.int_flu_visits AS i JOIN dw.flu AS f ON f._org_code = i.org_code AND f._nk = i.record_key
        WHERE f._source_file = 'date_only.csv' ORDER BY i.visit_time""")
    by_card: dict[str, list[tuple]] = {}
    for card, *rest in flu:
        by_card.setdefault(card.removeprefix("date-only-"), []).append(tuple(rest))
    assert set(by_card) == {"switched", "timed", "both"}
    switched, timed, both = by_card["switched"], by_card["timed"], by_card["both"]
    assert switched == [("00:00:00", False, False, False, False)]  # the newer, date-only row only
    assert timed == [("11:20:00", True, False, True, True)]  # date-only lis/pdr linked; 15:00 lis not
    assert [t for t, *_ in both] == ["00:00:00", "14:00:00"]  # one upload: both kept
    opd = _query(cfg, """
        SELECT i.visit_time::TIME::VARCHAR FROM intermediate.int_outpatient_visits AS i
        JOIN dw.mzsy AS m ON m._org_code = i.org_code AND m._nk = i.record_key
        WHERE m._source_file = 'date_only.csv'""")
    assert opd == [("00:00:00",)]


@pytest.mark.slow
def test_incremental_build_rebuilds_touched_dates_only(built: tuple[hqms_config.Config, dbt.DbtResult],
                                                       tmp_path: Path) -> None:
    base_cfg, _ = built
    cfg = _config(tmp_path / "home")
    cfg.warehouse_path.parent.mkdir(parents=True)
    shutil.copy(base_cfg.warehouse_path, cfg.warehouse_path)
    before = dict(_query(cfg, "SELECT report_date, max(_built_at) FROM marts.flu_daily GROUP BY 1"))
    late_day, untouched_day = FIRST_DAY + timedelta(days=1), FIRST_DAY + timedelta(days=4)
    # A late positive lab result for a visit that was not a case, loaded now.
    org, vtype, card, vtime = _query(cfg, f"""
        SELECT _org_code, visit_type, visit_card_no_pid, visit_time FROM dw.flu
        WHERE CAST(visit_time AS DATE) = DATE '{late_day}' AND principal_dx_code = 'J06.900'
          AND coalesce(other_dx1_code, '') NOT LIKE 'J1%' AND coalesce(other_dx7_code, '') NOT LIKE 'J1%'
        LIMIT 1""")[0]
    rng = random.Random(3)
    now = datetime.now(timezone.utc)
    rows = Rows({})
    rows.add("dw.lis", **_meta(rng, org, now, now), visit_type=vtype, visit_card_no_pid=card, visit_time=vtime,
             flu_item="36", positive="1")
    _flu_visit(rng, rows, org, FIRST_DAY + timedelta(days=DAYS), now)  # a new day
    for table in ("dw.flu", "dw.lis", "dw.pdr"):
        for r in rows.tables.get(table, []):
            r["_loaded_at"] = now
    con = duckdb.connect(str(cfg.warehouse_path))
    insert(con, rows)
    # A re-sent fever visit whose P7506 moved to another day (P7506 is not in its key): the merge
    # replaces the row and records the date it left in ops.moved_periods; the old day must be rebuilt.
    serial, org_f = con.execute(f"SELECT opd_visit_serial_pid, _org_code FROM dw.fever "
                                f"WHERE CAST(visit_time AS DATE) = DATE '{untouched_day}' LIMIT 1").fetchone()
    for table in ("dw.fever", "dw.lab"):
        con.execute(f"UPDATE {table} SET visit_time = visit_time + INTERVAL 1 DAY, _loaded_at = ? "
                    "WHERE opd_visit_serial_pid = ?", [now, serial])
    con.execute("INSERT INTO ops.moved_periods VALUES ('fever', ?, ?, ?)", [org_f, untouched_day, now])
    con.close()

    dbt.build("daily", cfg=cfg)

    assert _differences(cfg, FEVER_MART, FEVER_RECOMPUTED) == []
    assert _differences(cfg, FLU_MART, FLU_RECOMPUTED) == []
    after = dict(_query(cfg, "SELECT report_date, max(_built_at) FROM marts.flu_daily GROUP BY 1"))
    assert after[untouched_day] == before[untouched_day], "an untouched date was rebuilt"
    assert after[late_day] > before[late_day]
    assert FIRST_DAY + timedelta(days=DAYS) in after


@pytest.mark.slow
def test_docs_generate(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    cfg, _ = built
    folder = dbt.docs_generate(cfg)
    catalog = json.loads((folder / "catalog.json").read_text(encoding="utf-8"))
    assert "model.hqms.flu_daily" in catalog["nodes"]
    assert "source.hqms.dw.flu" in catalog["sources"]
    assert (folder / "index.html").exists()

    # `hqms marts docs --serve`: loopback, the static site only
    import threading
    import urllib.error
    import urllib.request

    from hqms.marts.docs_server import make_server

    server = make_server(folder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert b"<html" in urllib.request.urlopen(f"{base}/", timeout=10).read().lower()
        served = json.loads(urllib.request.urlopen(f"{base}/catalog.json", timeout=10).read())
        assert "model.hqms.agg_flu" in served["nodes"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/run_results.json", timeout=10)
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_publish_suppresses_small_cells_and_replaces_the_snapshot_atomically(
        built: tuple[hqms_config.Config, dbt.DbtResult], shared_s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    base_cfg, _ = built
    monkeypatch.setenv("HQMS_WAREHOUSE", str(base_cfg.warehouse_path))
    cfg = hqms_config.load()
    old = cfg.marts_dir / publish.SNAPSHOT_NAME
    cfg.marts_dir.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"previous snapshot")
    reader = old.open("rb")  # an analyst with the old file open keeps reading the old file

    result = publish.publish(cfg)

    assert reader.read() == b"previous snapshot"
    reader.close()
    snapshot = Path(result.snapshot_path)
    assert not snapshot.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not list(cfg.marts_dir.glob(".*.tmp"))
    key = "period_type, period_start, region_level, region_code, parent_code"
    exact = {r[:5]: r[5] for r in _query(base_cfg, f"SELECT {key}, cases FROM marts.agg_flu")}
    con = duckdb.connect(str(snapshot), read_only=True)
    published = con.execute(f"SELECT {key}, cases, small_cells_suppressed FROM marts.agg_flu").fetchall()
    info = dict(con.execute("SELECT mart, row_count FROM marts.publish_info").fetchall())
    comment = con.execute("SELECT comment FROM duckdb_columns() WHERE table_name = 'agg_flu' "
                          "AND column_name = 'cases'").fetchone()[0]
    uncommented = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'marts' "
                              "AND comment IS NULL").fetchall()
    hospital_level = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name IN "
                                 "('flu_daily', 'fever_daily', 'outpatient_monthly', 'submission_daily')").fetchone()[0]
    con.close()
    assert comment.startswith("Visits meeting the flu case definition") and hospital_level == 0
    assert uncommented == []  # every published column carries its dbt description
    assert len(published) == len(exact) == info["agg_flu"]
    for *k, cases, flagged in published:
        true = exact[tuple(k)]
        assert cases in (None, true)
        if 1 <= true <= 4 or cases is None:
            assert cases is None and flagged
    assert any(r[5] is None for r in published) and any(r[5] and r[5] >= 5 for r in published)

    local = cfg.marts_dir / "parquet" / "agg_flu.parquet"
    shared_s3_env.get_file(cfg.buckets["marts"], "agg_flu/agg_flu.parquet", local.with_suffix(".s3"))
    table = pq.read_table(local.with_suffix(".s3"))
    assert table.num_rows == len(published)
    assert table.schema.field("cases").type == "int64"
    assert sorted(table.column("cases").to_pylist(), key=str) == sorted((r[5] for r in published), key=str)
    assert shared_s3_env.stat(cfg.buckets["marts"], f"snapshot/{publish.SNAPSHOT_NAME}") is not None

    snap, exact_summary = summary.collect(cfg, source="snapshot"), summary.collect(base_cfg)
    text = summary.render(snap)
    assert "flu" in text and "suppressed" in text
    # the snapshot's totals are the warehouse's (the issue: 21 instead of 398 lab-confirmed B)
    for mart, figure in (("flu_daily", "cases"), ("flu_daily", "lab_b"), ("flu_daily", "inpatient"),
                         ("fever_daily", "visits"), ("outpatient_monthly", "visits")):
        assert snap[mart][figure] == exact_summary[mart][figure] > 0, (mart, figure)


@pytest.mark.slow
def test_source_freshness_reports_stale_sources(built: tuple[hqms_config.Config, dbt.DbtResult]) -> None:
    cfg, _ = built
    rows = {r["source"]: r for r in dbt.freshness(cfg)}
    assert set(rows) == {"dw.flu", "dw.fever", "dw.mzsy", "ops.uploads"}
    flu = rows["dw.flu"]  # loaded at OLD_LOAD, long past the 2-day threshold: a warning, not an error
    assert flu["status"] == "warn" and flu["max_loaded_at"].startswith("2025-01-20") and flu["age_hours"] > 48


def test_a_rate_is_suppressed_when_its_numerator_is_small() -> None:
    import duckdb

    from hqms.marts.suppression import SuppressionSpec, suppress

    spec = SuppressionSpec(("visits", "infusion_visits"), {"infusion_rate": ("visits", "infusion_visits")})
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (48, 3, 0.0625), (48, 0, 0.0), (48, 12, 0.25)) "
                "AS v(visits, infusion_visits, infusion_rate)")
    suppress(con, "t", "out", spec, ["visits", "infusion_visits", "infusion_rate"])
    rows = con.execute("SELECT * FROM out ORDER BY infusion_visits NULLS FIRST").fetchall()
    assert [tuple(map(lambda x: None if x is None else float(x), r[:3])) + (r[3],) for r in rows] == [
        (48.0, None, None, True), (48.0, 0.0, 0.0, False), (48.0, 12.0, 0.25, False)]


#: Registry city codes of every kind a province sends: a 省直辖县级 city (仙桃市), a municipality
#: itself, a district of one, a code no longer valid (吐鲁番市 before 2015), a prefecture.
CITY_CODES = {"SYNTH00000000000000001": ("42", "429004"), "SYNTH00000000000000002": ("11", "110000"),
              "SYNTH00000000000000003": ("50", "500101"), "SYNTH00000000000000004": ("65", "652101")}


@pytest.mark.slow
def test_by_region_marts_name_every_valid_city_and_an_unknown_one_fails_the_build(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "home")
    rows = synthetic_rows()
    for h in rows.tables["ref.hospitals"]:
        h["province_code"], h["city_code"] = CITY_CODES.get(h["org_code"], (h["province_code"], h["city_code"]))
    populate(cfg.warehouse_path, rows)
    marts = ("flu_daily_by_region", "fever_daily_by_region", "submission_daily_by_region")
    result = dbt.run(["build", "--select", "hospitals", *(f"+{m}" for m in marts),
                      "--exclude-resource-type", "unit_test"], cfg)
    assert result.ok, result.failures() or result.output[-3000:]
    for mart in marts:
        # (a hospital missing from the registry has no region at all: its rows have no code either)
        unnamed = _query(cfg, f"SELECT region_level, region_code FROM marts.{mart} "
                              "WHERE region_name IS NULL AND region_code IS NOT NULL")
        assert unnamed == [], mart
    names = dict(_query(cfg, "SELECT DISTINCT region_code, region_name FROM marts.submission_daily_by_region "
                             "WHERE region_level = 'city'"))
    assert names["429004"] == "仙桃市" and names["110000"] == "北京市" and names["652101"] == "吐鲁番市"

    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        con.execute("UPDATE ref.hospitals SET city_code = '519999' WHERE org_code = 'SYNTH00000000000000005'")
    finally:
        con.close()
    result = dbt.run(["build", "--select", "regions", "stg_hospitals", "--exclude-resource-type", "unit_test"], cfg)
    assert not result.ok
    assert any("relationships" in f and "city_code" in f for f in result.failures()), result.failures()
