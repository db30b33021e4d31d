"""The flu stream of one hospital: flu_, lis_, pdr_, hqms_, hda_ and hdr_ records.

Visits are drawn per day from the season curve. Each visit is a flu case by diagnosis (J09/J10/J11),
by a positive antigen test or by antiviral use (the case definition of the flu tool); out-patient
(01) and emergency (02) visits send only positive flu tests, in-patients (03) all of them. An
in-patient stays 3–20 days, may pass through an ICU and rarely dies; on discharge the front page
(hqms_) and discharge summary (hda_) follow, on death the death record (hdr_). The flu_ row of an
in-patient is re-sent with its ICU stay and outcome once the patient has left (its provisional
version says "alive, no ICU"). P7502 of an in-patient is the 住院号, which is also the front page's
病案号 P3.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hqms import spec
from hqms.generate import epidemic
from hqms.generate.common import (FLU_DX_WEIGHTS_IP, FLU_DX_WEIGHTS_OP, RESPIRATORY,
                                  cents, choose_rows, flu_dx, fmt, person_pcodes, serials, take,
                                  yuan)
from hqms.generate.people import People, make_people, names
from hqms.generate.records import Records, sort_records
from hqms.generate.registry import Hospital, region_names
from hqms.generate.values import COMORBIDITIES, PROCEDURES, Context, fill, pick
from hqms.spec import Dataset

#: Longest stay simulated: in-patients admitted this long before the first file can still be
#: discharged inside the first file's window.
MAX_LOS = 20
HOUR = np.timedelta64(3600, "s")
DAY_S = np.timedelta64(86400, "s")

#: Antivirals by the flu_antivirals.csv pattern: product name, unit, dose per time (adult, child),
#: times per day, days, route for in-patients only.
ANTIVIRALS = {
    "奥司他韦": ("磷酸奥司他韦胶囊", "mg", (75.0, 45.0), 2, 5),
    "玛巴洛沙韦": ("玛巴洛沙韦片", "mg", (80.0, 40.0), 1, 1),
    "帕拉米韦": ("帕拉米韦氯化钠注射液", "mg", (600.0, 300.0), 1, 3),
    "扎那米韦": ("扎那米韦吸入粉雾剂", "mg", (10.0, 10.0), 2, 5),
}
_ANTIVIRAL_WEIGHTS_OP = {"奥司他韦": 0.78, "玛巴洛沙韦": 0.17, "扎那米韦": 0.05}
_ANTIVIRAL_WEIGHTS_IP = {"奥司他韦": 0.6, "帕拉米韦": 0.3, "玛巴洛沙韦": 0.1}
_COMPLAINTS = ("发热{d}天，伴咳嗽、咽痛", "发热{d}天，全身酸痛、乏力", "咳嗽、流涕{d}天，发热1天",
               "高热{d}天，伴头痛", "发热{d}天，咳嗽咳痰，气促")


@dataclass(frozen=True)
class Window:
    """The run: files are dated first…last; the flu stream re-sends ``lookback`` days."""

    first: np.datetime64   # datetime64[D]
    last: np.datetime64
    lookback: int


@functools.cache
def _antivirals() -> tuple[str, ...]:
    """Antiviral patterns shipped in reference/flu_antivirals.csv that we know how to dose."""
    rows = spec.reference_csv("flu_antivirals.csv")
    return tuple(r["pattern"] for r in rows if r["pattern"] in ANTIVIRALS)


@dataclass
class Visits:
    """All flu visits of one hospital (arrays aligned by visit)."""

    time: np.ndarray          # datetime64[s]
    vtype: np.ndarray         # '01' | '02' | '03'
    card: list[str]
    people: People
    dx: np.ndarray            # index into FLU_DX, or -1 - index into RESPIRATORY
    lab_positive: np.ndarray  # bool: a positive flu antigen/PCR result exists
    flu_b: np.ndarray         # bool: the positive was influenza B
    tested: np.ndarray        # bool
    antiviral: np.ndarray     # bool
    discharge: np.ndarray     # datetime64[s] (NaT for out-patients)
    icu_in: np.ndarray
    icu_out: np.ndarray
    died: np.ndarray          # bool
    dept: list[str]           # RC023 department of the visit (and of the admission)
    payment: list[str]        # RC032
    extra_dx: list[list[int]]  # COMORBIDITIES indices, up to 4

    @property
    def n(self) -> int:
        return len(self.time)

    @property
    def inpatient(self) -> np.ndarray:
        return self.vtype == "03"

    def dx_code(self) -> list[str]:
        table = flu_dx()
        return [table[d][0] if d >= 0 else RESPIRATORY[-1 - d][0] for d in self.dx.tolist()]

    def dx_name(self) -> list[str]:
        table = flu_dx()
        return [table[d][1] if d >= 0 else RESPIRATORY[-1 - d][1] for d in self.dx.tolist()]


def _simulate_visits(h: Hospital, w: Window, rng: np.random.Generator, scale: float) -> Visits:
    sim_first = w.first - (w.lookback - 1) - MAX_LOS
    days = np.arange(sim_first, w.last + 1, dtype="datetime64[D]")
    mean = epidemic.BASE_FLU * h.size * scale * epidemic.flu_season(days, h.province_code) \
        * epidemic.weekday_factor(days)
    early = days < w.first - (w.lookback - 1)   # only in-patients matter there
    mean = np.where(early, mean * 0.1, mean)
    counts = rng.poisson(mean)
    day = np.repeat(days, counts)
    n = len(day)
    people = make_people(rng, h, day, epidemic.AGE_MIX_FLU)
    probs = epidemic.visit_type_probs(people.age)
    u = rng.random(n)
    vtype = np.where(u < probs[:, 0], "01", np.where(u < probs[:, 0] + probs[:, 1], "02", "03"))
    vtype = np.where(np.repeat(early, counts), "03", vtype)
    inpatient = vtype == "03"
    seconds = np.where(vtype == "01", rng.integers(8 * 3600, 17 * 3600 + 1800, size=n),
                       rng.integers(0, 86400, size=n))
    time = day.astype("datetime64[s]") + seconds.astype("timedelta64[s]")
    order = np.argsort(time, kind="stable")
    day, time, vtype, inpatient = day[order], time[order], vtype[order], inpatient[order]
    people = people.subset(order)
    # Diagnoses: most visits carry a flu code; the rest qualify by a test or an antiviral.
    coded = rng.random(n) < 0.85
    dx = np.where(inpatient, choose_rows(rng, FLU_DX_WEIGHTS_IP, n), choose_rows(rng, FLU_DX_WEIGHTS_OP, n))
    dx = np.where(coded, dx, -1 - rng.integers(len(RESPIRATORY), size=n))
    identified = np.array([flu_dx()[d][3] if d >= 0 else False for d in dx.tolist()])
    tested = identified | (~coded) | (rng.random(n) < np.where(inpatient, 0.9, 0.5))
    lab_positive = identified | ((~coded) & (rng.random(n) < 0.6))
    lab_positive &= tested
    antiviral = (rng.random(n) < np.where(inpatient, 0.9, 0.7)) | ((~coded) & ~lab_positive)
    flu_b = rng.random(n) < epidemic.influenza_b_share(day)
    flu_b &= ~np.array([d >= 0 and flu_dx()[d][0].startswith("J09") for d in dx.tolist()])
    # In-patient course.
    vulnerable = (people.age < 5) | (people.age >= 65)
    icu = inpatient & (rng.random(n) < np.where(vulnerable, 0.18, 0.1))
    los = np.where(icu, rng.integers(7, MAX_LOS + 1, size=n), rng.integers(3, 13, size=n))
    discharge = time + los * DAY_S + rng.integers(-6, 6, size=n) * HOUR
    discharge = np.where(inpatient, discharge, np.datetime64("NaT"))
    icu_in = time + rng.integers(2, 48, size=n) * HOUR
    icu_out = icu_in + rng.integers(24, 24 * 5, size=n) * HOUR
    icu_out = np.minimum(icu_out, discharge - 2 * HOUR)
    icu_in = np.where(icu, icu_in, np.datetime64("NaT"))
    icu_out = np.where(icu, icu_out, np.datetime64("NaT"))
    died = inpatient & (rng.random(n) < np.where(icu, 0.15, np.where(people.age >= 65, 0.03, 0.005)))
    start = h.index * 10_000_000
    op_cards = serials("MZ", start, n, 10)
    ip_cards = serials("ZY", start, n, 10)
    card = [ip if t == "03" else op for t, op, ip in zip(vtype.tolist(), op_cards, ip_cards)]
    child = people.age < 14
    dept = np.where(vtype == "02", "20", np.where(
        child, np.where(rng.random(n) < 0.6, "0704", "07"),
        np.asarray(["0301", "03", "1602"])[choose_rows(rng, (0.7, 0.2, 0.1), n)]))
    payment = np.asarray(["1", "2", "3", "1.1", "2.1", "7"])[
        choose_rows(rng, (0.3, 0.25, 0.1, 0.05, 0.05, 0.25), n)]
    return Visits(time, vtype, card, people, dx, lab_positive, flu_b, tested, antiviral,
                  discharge, icu_in, icu_out, died, dept.tolist(), payment.tolist(),
                  _comorbidities(rng, people.age, 4))


def _days(times: np.ndarray) -> np.ndarray:
    return times.astype("datetime64[D]").astype(np.int64)


def _comorbidities(rng: np.random.Generator, age: np.ndarray, slots: int) -> list[list[int]]:
    """Per visit a list of COMORBIDITIES indices (older patients have more)."""
    k = np.minimum(rng.poisson(np.where(age >= 65, 1.6, np.where(age >= 45, 0.6, 0.1))), slots)
    return [sorted(set(rng.choice(len(COMORBIDITIES), size=int(m), replace=False).tolist()))
            if m else [] for m in k.tolist()]


OTHER_DX_FLU = (("P324", "P325"), ("P327", "P328"), ("P3291", "P3292"), ("P3294", "P3295"),
                ("P3297", "P3298"), ("P3281", "P3282"), ("P3284", "P3285"), ("P3287", "P3288"),
                ("P3271", "P3272"), ("P3274", "P3275"))
#: Front page other-diagnosis blocks: code, name, 入院病情, 出院情况.
OTHER_DX_HQMS = (("P324", "P325", "P806", "P326"), ("P327", "P328", "P807", "P329"),
                 ("P3291", "P3292", "P808", "P3293"), ("P3294", "P3295", "P809", "P3296"),
                 ("P3297", "P3298", "P810", "P3299"), ("P3281", "P3282", "P811", "P3283"),
                 ("P3284", "P3285", "P812", "P3286"), ("P3287", "P3288", "P813", "P3289"),
                 ("P3271", "P3272", "P814", "P3273"), ("P3274", "P3275", "P815", "P3276"))
ICU_BLOCKS = (("P6911", "P6912", "P6913"), ("P6914", "P6915", "P6916"), ("P6917", "P6918", "P6919"),
              ("P6920", "P6921", "P6922"), ("P6923", "P6924", "P6925"))


def _other_dx(cols: dict[str, list[str]], blocks, extra: list[list[int]]) -> None:
    """Comorbidities into the other-diagnosis blocks (code, name[, 入院病情 有, 出院情况 未愈])."""
    for slot, block in enumerate(blocks):
        code = [COMORBIDITIES[e[slot]][0] if len(e) > slot else "" for e in extra]
        name = [COMORBIDITIES[e[slot]][1] if len(e) > slot else "" for e in extra]
        cols[block[0]], cols[block[1]] = code, name
        if len(block) == 4:
            cols[block[2]] = ["1" if c else "" for c in code]
            cols[block[3]] = ["3" if c else "" for c in code]


def _icu_units(rng: np.random.Generator, col, age: np.ndarray) -> list[str]:
    adult = pick(rng, col, len(age), {"02": 0.5, "07": 0.35, "06": 0.15})
    kids = pick(rng, col, len(age), {"05": 1.0})
    return np.where(age < 14, kids, adult).tolist()


def _fees(rng: np.random.Generator, inpatient: np.ndarray, los: np.ndarray, payment: list[str]):
    """(registration, drugs, exams, other, self-pay) in cents; total = the four parts."""
    n = len(inpatient)
    reg = np.where(inpatient, 0, cents(rng, n, 5, 50))
    drug = np.where(inpatient, cents(rng, n, 300, 2500) * np.maximum(los, 1), cents(rng, n, 20, 400))
    exam = np.where(inpatient, cents(rng, n, 400, 6000), cents(rng, n, 30, 300))
    other = np.where(inpatient, cents(rng, n, 200, 1500) * np.maximum(los, 1), cents(rng, n, 0.5, 80))
    total = reg + drug + exam + other
    share = rng.uniform(0.15, 0.6, size=n)
    self_pay = np.where(np.asarray(payment) == "7", total, np.floor(total * share).astype(np.int64))
    return reg, drug, exam, other, self_pay


def build_flu(ds: Dataset, h: Hospital, v: Visits, rng: np.random.Generator) -> Records:
    n = v.n
    p = v.people
    cols = person_pcodes(rng, ds, p, h.province_code)
    los = np.where(v.inpatient, ((v.discharge - v.time) / DAY_S).astype(float), 0).astype(int)
    payment = v.payment
    reg, drug, exam, other, self_pay = _fees(rng, v.inpatient, los, payment)
    cols.update({
        "P900": [h.org_code] * n, "P6891": [h.name] * n, "P686": [""] * n,
        "P800": np.where(rng.random(n) < 0.7, "-", "").tolist(),
        "P7501": v.vtype.tolist(), "P7502": v.card, "P7504": v.dept,
        "P7505": [str(k) for k in rng.integers(1, 4, size=n).tolist()],
        "P7506": fmt(ds, "P7506", v.time),
        "P7507": [_COMPLAINTS[i].format(d=d) for i, d in zip(rng.integers(len(_COMPLAINTS), size=n).tolist(),
                                                            rng.integers(1, 5, size=n).tolist())],
        "P321": v.dx_code(), "P322": v.dx_name(), "P1": payment,
        "P7508": yuan(reg + drug + exam + other), "P7509": yuan(reg), "P7510": yuan(drug),
        "P7511": yuan(exam), "P7512": yuan(self_pay),
        "P8508": np.where(v.died, "1", "2").tolist(),
        "P8509": fmt(ds, "P8509", np.where(v.died, v.discharge, np.datetime64("NaT"))),
    })
    _other_dx(cols, OTHER_DX_FLU, v.extra_dx)
    icu_unit = _icu_units(rng, ds.column("P6911"), p.age)
    has_icu = ~np.isnat(v.icu_in)
    first, *rest = ICU_BLOCKS
    cols[first[0]] = np.where(has_icu, icu_unit, "").tolist()
    cols[first[1]] = fmt(ds, first[1], v.icu_in)
    cols[first[2]] = fmt(ds, first[2], v.icu_out)
    for block in rest:
        for code in block:
            cols[code] = [""] * n
    ctx = Context(h, v.time, p)
    final = fill(ds, n, rng, cols, ctx)
    pending = v.inpatient & (has_icu | v.died)
    provisional = {k: list(val) for k, val in final.items()}
    for code in (*first, "P8509"):
        provisional[code] = np.where(pending, "", np.asarray(final[code], dtype=object)).tolist()
    provisional["P8508"] = np.where(pending, "2", np.asarray(final["P8508"], dtype=object)).tolist()
    day = _days(v.time)
    final_from = np.where(pending, _days(np.where(v.inpatient, v.discharge, v.time)), day)
    return Records(ds, final, day, day, final_from, provisional)


def build_lis(ds: Dataset, h: Hospital, v: Visits, rng: np.random.Generator) -> Records:
    """Two rows per tested visit (influenza A 35 and B 36); out-patients send positives only."""
    visit = np.repeat(np.flatnonzero(v.tested), 2)
    item = np.tile(np.array(["35", "36"]), len(visit) // 2)
    positive = v.lab_positive[visit] & ((item == "36") == v.flu_b[visit])
    keep = positive | v.inpatient[visit]
    visit, item, positive = visit[keep], item[keep], positive[keep]
    m = len(visit)
    pcr = v.inpatient[visit] & (rng.random(m) < 0.5)
    delay = np.where(pcr, rng.integers(6 * 3600, 30 * 3600, size=m), rng.integers(1200, 3 * 3600, size=m))
    test_time = v.time[visit] + delay.astype("timedelta64[s]")
    kind = np.where(item == "35", "甲型流感病毒", "乙型流感病毒")
    method_text = np.where(pcr, "核酸", "抗原")
    result = [f"{k}{mt}{'阳性' if pos else '阴性'}" for k, mt, pos in
              zip(kind.tolist(), method_text.tolist(), positive.tolist())]
    bound = {
        "P7501": v.vtype[visit].tolist(), "P7502": take(v.card, visit), "P7506": fmt(ds, "P7506", v.time[visit]),
        "P8000": serials("LIS", h.index * 10_000_000, m, 10),
        "P8001": np.where(pcr, "2", "1").tolist(), "P8002": fmt(ds, "P8002", test_time),
        "P8003": result, "P8004": np.where(positive, "1", "2").tolist(), "P8005": item.tolist(),
    }
    cols = fill(ds, m, rng, bound, Context(h, test_time))
    return Records(ds, cols, _days(v.time[visit]), _days(test_time))


def build_pdr(ds: Dataset, h: Hospital, v: Visits, rng: np.random.Generator) -> Records:
    """One order line per antiviral course; start from hours to a few days after the visit."""
    visit = np.flatnonzero(v.antiviral)
    m = len(visit)
    patterns = _antivirals()
    ip = v.inpatient[visit]
    drug = []
    for is_ip, r in zip(ip.tolist(), rng.random(m).tolist()):
        weights = {k: w for k, w in (_ANTIVIRAL_WEIGHTS_IP if is_ip else _ANTIVIRAL_WEIGHTS_OP).items()
                   if k in patterns}
        acc = 0.0
        total = sum(weights.values())
        for k, w in weights.items():
            acc += w / total
            if r <= acc:
                drug.append(k)
                break
        else:
            drug.append(next(iter(weights)))
    child = v.people.age[visit] < 12
    start_delay = np.where(ip, rng.integers(1, 72, size=m), rng.integers(0, 6, size=m)) * HOUR \
        + rng.integers(600, 3600, size=m).astype("timedelta64[s]")
    start = v.time[visit] + start_delay
    per_time = np.array([ANTIVIRALS[d][2][1 if c else 0] for d, c in zip(drug, child.tolist())])
    freq = np.array([ANTIVIRALS[d][3] for d in drug])
    days = np.array([ANTIVIRALS[d][4] for d in drug])
    end = start + (days * 86400 - 4 * 3600).astype("timedelta64[s]")
    end = np.where(days == 1, start, end)
    bound = {
        "P7501": v.vtype[visit].tolist(), "P7502": take(v.card, visit), "P7506": fmt(ds, "P7506", v.time[visit]),
        "P7500": serials("YZ", h.index * 10_000_000, m, 10), "P8016": [ANTIVIRALS[d][0] for d in drug],
        "P8017": [str(f) for f in freq.tolist()], "P8018": [f"{t:.1f}" for t in (per_time * freq * days).tolist()],
        "P8019": [f"{t:.1f}" for t in per_time.tolist()], "P8020": [ANTIVIRALS[d][1] for d in drug],
        "P8021": fmt(ds, "P8021", start), "P8022": fmt(ds, "P8022", end),
    }
    cols = fill(ds, m, rng, bound, Context(h, start))
    return Records(ds, cols, _days(v.time[visit]), _days(start))


def _discharged(v: Visits, w: Window) -> np.ndarray:
    last = np.datetime64(w.last, "s") + DAY_S
    return np.flatnonzero(v.inpatient & (v.discharge < last))


def _hqms_fees(rng: np.random.Generator, m: int, los: np.ndarray, payment: list[str]) -> dict[str, list[str]]:
    """Front-page cost breakdown whose parts add up to P782 and respect the spec's subsets."""
    days = np.maximum(los, 1)
    parts = {
        "P752": cents(rng, m, 30, 80) * days, "P754": cents(rng, m, 20, 200) * days,
        "P755": cents(rng, m, 20, 60) * days, "P758": cents(rng, m, 300, 3000),
        "P759": cents(rng, m, 150, 1500), "P769": cents(rng, m, 200, 2500) * days,
        "P771": np.where(rng.random(m) < 0.5, cents(rng, m, 30, 600), 0),
        "P779": cents(rng, m, 20, 800),
    }
    total = sum(parts.values())
    antibacterial = np.floor(parts["P769"] * rng.uniform(0, 0.4, size=m)).astype(np.int64)
    self_pay = np.where(np.asarray(payment) == "7", total,
                        np.floor(total * rng.uniform(0.1, 0.45, size=m)).astype(np.int64))
    out = {k: yuan(c) for k, c in parts.items()}
    out.update({"P782": yuan(total), "P751": yuan(self_pay), "P770": yuan(antibacterial)})
    return out


#: Optional front-page columns an exporter fills from the HIS without our simulation.
_HQMS_USUALLY_FILLED = ("P29", "P38", "P39", "P40", "P411", "P412", "P435",
                        "P437", "P44", "P46", "P47", "P562", "P563")


def build_hqms(ds: Dataset, h: Hospital, v: Visits, w: Window, rng: np.random.Generator) -> Records:
    idx = _discharged(v, w)
    m = len(idx)
    p = v.people.subset(idx)
    cols = person_pcodes(rng, ds, p, h.province_code)
    los = ((v.discharge[idx] - v.time[idx]) / DAY_S).astype(int)
    died = v.died[idx]
    payment = take(v.payment, idx)
    dept = take(v.dept, idx)
    has_icu = ~np.isnat(v.icu_in[idx])
    dx_code, dx_name = take(v.dx_code(), idx), take(v.dx_name(), idx)
    disposition = np.where(died, "5", np.where(rng.random(m) < 0.05, "2", "1"))
    ventilated = has_icu & (rng.random(m) < 0.5)
    vent_hours = np.where(ventilated, rng.integers(12, 95, size=m), 0)
    route = np.where(rng.random(m) < 0.6, "1", "2")
    region = region_names()
    cols.update({
        "P900": [h.org_code] * m, "P6891": [h.name] * m, "P686": [""] * m, "P800": ["-"] * m,
        "P1": payment, "P2": [str(k) for k in rng.choice([1, 1, 1, 2, 3], size=m).tolist()],
        "P3": take(v.card, idx), "P804": route.tolist(),
        "P101": [region.get(h.province_code + "0000", "")] * m, "P102": [h.city_name] * m,
        "P103": [region.get(c, "") if c != h.city_code else "" for c in p.county],
        "P22": fmt(ds, "P22", v.time[idx]), "P23": dept, "P26": dept,
        "P231": [f"{k}病区" for k in rng.integers(1, 30, size=m).tolist()],
        "P24": np.where(has_icu, "28", "").tolist(),
        "P25": fmt(ds, "P25", v.discharge[idx]), "P27": [str(x) for x in los.tolist()],
        "P28": dx_code, "P281": dx_name, "P30": dx_code, "P301": dx_name,
        "P321": dx_code, "P322": dx_name, "P805": ["1"] * m,
        "P323": np.where(died, "4", np.where(rng.random(m) < 0.7, "1", "2")).tolist(),
        "P689": ["0"] * m, "P731": ["0"] * m, "P732": ["0"] * m, "P733": ["0"] * m, "P734": ["0"] * m,
        "P72": [str(x) if x else "" for x in vent_hours.tolist()],
        "P830": ["1"] * m, "P741": disposition.tolist(),
        "P742": [f"{h.city_name}上级医院" if d == "2" else "" for d in disposition.tolist()],
        "P57": np.where(died, "2", "").tolist(), "P66": [str(d) if a == 0 else "" for d, a in
                                                         zip(p.age_days.tolist(), p.age.tolist())],
        "P561": [str(x) if x else "" for x in np.where(has_icu, rng.integers(2, 6, size=m), 0).tolist()],
        "P421": np.where(died | ventilated, "1", "").tolist(),
        "P422": np.where(ventilated & ~died, "1", np.where(died, "0", "")).tolist(),
        "P64": ["0"] * m,
    })
    cols.update(_hqms_fees(rng, m, los, payment))
    _other_dx(cols, OTHER_DX_HQMS, [v.extra_dx[i] for i in idx.tolist()])
    icu_unit = _icu_units(rng, ds.column("P6911"), p.age)
    first = ICU_BLOCKS[0]
    cols[first[0]] = np.where(has_icu, icu_unit, "").tolist()
    cols[first[1]] = fmt(ds, first[1], v.icu_in[idx])
    cols[first[2]] = fmt(ds, first[2], v.icu_out[idx])
    # Procedure 1: mechanical ventilation for ventilated ICU patients; other procedure blocks empty.
    vent = [c for c, name in PROCEDURES if c.startswith("96.71")][0]
    vent_name = dict(PROCEDURES)[vent]
    if "P490" in ds.codes:
        cols["P490"] = np.where(ventilated, vent, "").tolist()
        cols["P492"] = np.where(ventilated, vent_name, "").tolist()
        cols["P491"] = fmt(ds, "P491", np.where(ventilated, v.icu_in[idx], np.datetime64("NaT")))
        cols["P495"] = [n if vt else "" for n, vt in zip(names(rng, m), ventilated.tolist())]
    usually = set(_HQMS_USUALLY_FILLED)
    for col in ds.columns:
        if col.code not in cols and not col.required and col.code not in usually:
            cols[col.code] = [""] * m
    ctx = Context(h, v.discharge[idx], p)
    final = fill(ds, m, rng, cols, ctx)
    day = _days(v.discharge[idx])
    return Records(ds, final, day, day)


def build_hda(ds: Dataset, h: Hospital, v: Visits, w: Window, rng: np.random.Generator) -> Records:
    idx = _discharged(v, w)
    m = len(idx)
    los = ((v.discharge[idx] - v.time[idx]) / DAY_S).astype(int)
    dept = take(v.dept, idx)
    died = v.died[idx]
    dx = take(v.dx_name(), idx)
    bound = {
        "P3": take(v.card, idx), "P4": take(v.people.name, idx), "P5": take(v.people.sex, idx),
        "P7": [str(a) for a in v.people.age[idx].tolist()], "P22": fmt(ds, "P22", v.time[idx]),
        "P23": dept, "P26": dept, "P24": np.where(~np.isnat(v.icu_in[idx]), "重症医学科", "").tolist(),
        "P25": fmt(ds, "P25", v.discharge[idx]), "P27": [str(x) for x in los.tolist()],
        "P8600": dx, "P8601": dx,
        "P8602": [f"因“{c}”入院，予抗病毒、对症支持治疗。" for c in take(v.dx_name(), idx)],
        "P8603": ["患者经抢救无效死亡。" if d else "体温正常，症状缓解，病情好转出院。" for d in died.tolist()],
        "P8604": ["" if d else "注意休息，按时服药，不适随诊。" for d in died.tolist()],
    }
    cols = fill(ds, m, rng, bound, Context(h, v.discharge[idx]))
    day = _days(v.discharge[idx])
    return Records(ds, cols, day, day)


def build_hdr(ds: Dataset, h: Hospital, v: Visits, w: Window, rng: np.random.Generator) -> Records:
    idx = np.intersect1d(_discharged(v, w), np.flatnonzero(v.died))
    m = len(idx)
    death = v.discharge[idx]
    dx_code, dx_name = take(v.dx_code(), idx), take(v.dx_name(), idx)
    bound = {
        "P3": take(v.card, idx), "P4": take(v.people.name, idx), "P5": take(v.people.sex, idx),
        "P7": [str(a) for a in v.people.age[idx].tolist()], "P22": fmt(ds, "P22", v.time[idx]),
        "P23": take(v.dept, idx), "P8509": fmt(ds, "P8509", death),
        "HDR01": ["J96.000"] * m, "HDR02": ["急性呼吸衰竭"] * m, "HDR03": dx_code, "HDR04": dx_name,
        "HDR05": [f"{n}；急性呼吸衰竭" for n in dx_name],
        "HDR06": ["病情危重，予气管插管、机械通气及血管活性药物等抢救，抢救无效，宣告临床死亡。"] * m,
        "P57": ["2"] * m,
    }
    cols = fill(ds, m, rng, bound, Context(h, death))
    day = _days(death)
    return Records(ds, cols, day, day)


def simulate(h: Hospital, w: Window, seed: int, scale: float) -> dict[str, Records]:
    """Every flu-stream record of hospital ``h`` over the run, by dataset id."""
    rng = np.random.default_rng([seed, 1, h.index])
    v = _simulate_visits(h, w, rng, scale)
    builders = {"flu": lambda ds: build_flu(ds, h, v, rng), "lis": lambda ds: build_lis(ds, h, v, rng),
                "pdr": lambda ds: build_pdr(ds, h, v, rng), "hqms": lambda ds: build_hqms(ds, h, v, w, rng),
                "hda": lambda ds: build_hda(ds, h, v, w, rng), "hdr": lambda ds: build_hdr(ds, h, v, w, rng)}
    out: dict[str, Records] = {}
    for ds in spec.stream_datasets("flu"):
        if ds.id in builders:
            out[ds.id] = sort_records(builders[ds.id](ds))
    return out
