"""Pieces shared by the stream simulations: patient columns, money, record numbers, diagnoses."""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from hqms.generate.people import People
from hqms.generate.timefmt import format_times
from hqms.generate.values import pick
from hqms import spec
from hqms.spec import Dataset

Cols = dict[str, list[str]]

#: Non-influenza acute respiratory diagnoses (ICD-10 国家临床版2.0).
RESPIRATORY = (("J06.900", "急性上呼吸道感染"), ("J18.900", "肺炎"), ("J20.900", "急性支气管炎"),
               ("J02.900", "急性咽炎"), ("J03.900", "急性扁桃体炎"), ("J21.900", "急性毛细支气管炎"))
#: Influenza diagnosis codes (国家临床版2.0) used, with weights for out-patients and in-patients
#: (who have more pneumonia). Names and the pneumonia flag come from reference/flu_icd10.csv.
FLU_CODES = ("J11.100x001", "J11.100", "J10.100", "J10.101", "J10.800", "J11.000", "J10.000", "J10.001",
             "J09.x02")
FLU_DX_WEIGHTS_OP = (0.30, 0.10, 0.30, 0.15, 0.05, 0.04, 0.04, 0.015, 0.005)
FLU_DX_WEIGHTS_IP = (0.08, 0.04, 0.14, 0.08, 0.04, 0.26, 0.24, 0.11, 0.01)


@functools.cache
def flu_dx() -> tuple[tuple[str, str, bool, bool], ...]:
    """(code, name, pneumonia, virus identified) for FLU_CODES, by longest reference prefix."""
    rows = spec.reference_csv("flu_icd10.csv")
    out = []
    for code in FLU_CODES:
        best = max((r for r in rows if code.startswith(r["code_prefix"])),
                   key=lambda r: len(r["code_prefix"]))
        out.append((code, best["description_zh"], best["is_pneumonia"] == "true",
                    not code.startswith("J11")))
    return tuple(out)


def take(values: Sequence[str], idx: np.ndarray | list[int]) -> list[str]:
    return [values[i] for i in (idx.tolist() if isinstance(idx, np.ndarray) else idx)]


def yuan(cents: np.ndarray) -> list[str]:
    """Integer cents as decimal text with two places (exact sums, no float drift)."""
    return [f"{c // 100}.{c % 100:02d}" for c in cents.astype(np.int64).tolist()]


def cents(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Amounts log-uniform between ``lo`` and ``hi`` yuan, in integer cents."""
    return np.round(np.exp(rng.uniform(np.log(lo), np.log(hi), size=n)) * 100).astype(np.int64)


def serials(prefix: str, start: int, n: int, width: int = 9) -> list[str]:
    return [f"{prefix}{k:0{width}d}" for k in range(start, start + n)]


def fmt(ds: Dataset, code: str, times: np.ndarray) -> list[str]:
    """Times formatted for a column of ``ds`` (its preferred format); unknown code → empty."""
    return format_times(times, ds.column(code).formats[0]) if code in ds.codes else [""] * len(times)


def marital(rng: np.random.Generator, age: np.ndarray) -> list[str]:
    """RC002 code consistent with age."""
    roll = rng.random(len(age))
    out = np.where(age < 20, "1", np.where(roll < 0.12, "1", "2"))
    out = np.where((age >= 70) & (roll > 0.75), "3", out)
    out = np.where((age >= 25) & (age < 70) & (roll > 0.95), "4", out)
    return out.tolist()


def occupation(rng: np.random.Generator, age: np.ndarray) -> list[str]:
    """RC003 code consistent with age (pupils, workers, retirees)."""
    working = np.array(["13", "17", "21", "24", "27", "51", "54", "90"])
    out = working[rng.integers(len(working), size=len(age))]
    out = np.where(age < 23, "31", out)
    out = np.where(age < 6, "90", out)
    out = np.where(age >= 60, "80", out)
    return out.tolist()


def ethnicity(rng: np.random.Generator, n: int, province: str) -> list[str]:
    """RC035 code: mostly 汉; 藏/彝/羌 in 四川, 壮/瑶 in 广东."""
    minorities = {"51": ("4", "7", "33"), "44": ("8", "13")}.get(province, ("3",))
    roll = rng.random(n)
    choice = np.asarray(minorities)[rng.integers(len(minorities), size=n)]
    return np.where(roll < 0.95, "1", choice).tolist()


def id_documents(rng: np.random.Generator, ds: Dataset, type_code: str, number_code: str,
                 p: People, resident: str, household: str, passport: str) -> Cols:
    """ID type and number: mostly the resident ID card; some children by household register;
    a few passports. Codes absent from the column's list are not used."""
    n = p.n
    col = ds.column(type_code)
    weights = {resident: 0.96, household: 0.025, passport: 0.015}
    types = pick(rng, col, n, weights)
    types = [household if (t == resident and a < 16 and r < 0.05 and household in (col.values or {}))
             else t for t, a, r in zip(types, p.age.tolist(), rng.random(n).tolist())]
    numbers = [idn if t in (resident, household) else f"E{k:08d}"
               for t, idn, k in zip(types, p.id_number, rng.integers(0, 10 ** 8, size=n).tolist())]
    return {type_code: types, number_code: numbers}


def person_pcodes(rng: np.random.Generator, ds: Dataset, p: People, province: str) -> Cols:
    """The patient columns of the P-code files (flu_, fever_, hqms_ …) that ``ds`` has."""
    n = p.n
    cols: Cols = {
        "P4": p.name, "P5": p.sex, "P6": fmt(ds, "P6", p.birth), "P7": [str(a) for a in p.age.tolist()],
        "P8": marital(rng, p.age), "P9": occupation(rng, p.age), "P11": ethnicity(rng, n, province),
        "P12": ["156"] * n, "P801": p.address, "P802": p.mobile, "P803": p.postcode,
        "P14": p.employer, "P15": p.employer_phone, "P16": p.postcode, "P17": p.hukou_address,
        "P171": p.postcode, "P18": p.contact_name, "P20": p.address, "P21": p.contact_phone,
    }
    if "P19" in ds.codes:
        relation = pick(rng, ds.column("P19"), n, {"1": 0.5, "2": 0.15, "3": 0.15, "5": 0.15, "7": 0.05})
        cols["P19"] = ["5" if a < 18 else r for r, a in zip(relation, p.age.tolist())]
    if "P7503" in ds.codes and "P13" in ds.codes:
        cols.update(id_documents(rng, ds, "P7503", "P13", p, "01", "02", "03"))
    elif "P13" in ds.codes:
        cols["P13"] = p.id_number
    # A child has no employer: exporters leave it empty, or write 无 and the guardian's phone
    # where the front page requires the columns.
    child = (p.age < 16).tolist()
    stand_in = {"P14": ["无"] * n, "P15": p.contact_phone, "P16": p.postcode}
    for code, fallback in stand_in.items():
        keep = code in ds.codes and ds.column(code).required
        cols[code] = [(f if keep else "") if c else v for v, c, f in zip(cols[code], child, fallback)]
    return {k: v for k, v in cols.items() if k in ds.codes}


def choose_rows(rng: np.random.Generator, weights: Sequence[float], n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())
