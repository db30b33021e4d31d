"""Synthetic hospitals: the 医院信息汇总表 (川卫办医政便函〔2025〕2号, 附件2) the province sends to HQMS.

Every code is built with the check-digit makers of :mod:`hqms.validators`, so the registry is valid
by construction: 组织机构代码 (GB 11714) → 统一社会信用代码 (GB 32100, 登记管理部门 1 机构编制,
机构类别 2 事业单位) → 22-character 医疗机构代码 (WS 218: organisation code + county + economic
type 11 国有全资 + category + 1 非营利). The 执业许可证登记号 of public hospitals issued since the
2013 reform has the same 22-character structure, so ``licence_no`` equals ``org_code``.

Hospitals sit in a few prefecture-level cities of 四川 (51) and 广东 (44) taken from
``reference/regions.csv``; each also carries exporter habits (folder inside the zip, the
``serialVersionUID`` quirk, punctuality) that the uploads reproduce but the table does not list.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hqms import spec
from hqms.validators import make_medical_org_code, make_org_code, make_uscc

#: Cities used, with what regions.csv does not hold: telephone area code and postcode.
CITIES: dict[str, tuple[str, str]] = {
    "510100": ("028", "610000"),   # 成都
    "510500": ("0830", "646000"),  # 泸州
    "510700": ("0816", "621000"),  # 绵阳
    "511300": ("0817", "637000"),  # 南充
    "440100": ("020", "510000"),   # 广州
    "440300": ("0755", "518000"),  # 深圳
    "440600": ("0757", "528000"),  # 佛山
    "441900": ("0769", "523000"),  # 东莞
}

#: Made-up first parts of hospital names (never a real hospital's full name).
_NAME_WORDS = ("康宁", "仁和", "济安", "永泰", "安和", "博爱", "华康", "德济", "同心", "惠民", "新桥",
               "明德", "瑞祥", "长乐", "福安", "广济", "春晖", "嘉禾", "益康", "南山")
_WESTERN_KINDS = ("人民医院", "中心医院", "第一人民医院", "第二人民医院", "医院")
_TCM_KINDS = (("中医医院", "A210"), ("中西医结合医院", "A220"))
_MANAGER_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_MANAGER_GIVEN = "明华建国平军伟芳丽敏静强磊洋艳勇杰娟涛超"


@dataclass(frozen=True)
class Hospital:
    """One reporting hospital and its exporter's habits."""

    index: int
    org_code: str           # 22-character 医疗机构代码 (P900 / ZZJGDM)
    org_code9: str
    uscc: str
    licence_no: str
    name: str
    province_code: str
    city_code: str
    city_name: str
    county_code: str
    medicine_type: str      # 中医 | 西医
    category: str           # WS 218, e.g. A100
    level: str              # 三级 | 二级
    grade: str              # 甲等 | 乙等 | 未定等
    data_manager_name: str
    data_manager_phone: str
    data_manager_email: str
    uploader: str           # HQMS login name (≤ 10 characters, the USERNAME column)
    area_code: str
    postcode: str
    size: float             # visit-volume multiplier (三级 hospitals see more patients)
    folder_in_zip: bool     # entries written as 20250106/flu_20250106.csv
    serial_uid_quirk: bool  # Java exporter appends an empty serialVersionUID column
    punctuality: float      # probability an upload arrives on time


REGISTRY_COLUMNS = ("org_code", "org_code9", "uscc", "licence_no", "name", "province_code",
                    "city_code", "city_name", "medicine_type", "category", "level", "grade",
                    "data_manager_name", "data_manager_phone", "data_manager_email")


@functools.cache
def _regions() -> tuple[dict[str, str], dict[str, list[str]]]:
    """(code → name, city code → current county codes) from the shipped regions table."""
    names: dict[str, str] = {}
    counties: dict[str, list[str]] = {}
    for row in spec.reference_csv("regions.csv"):
        code = row["region_code"]
        names[code] = row["name_zh"]
        if row.get("level") == "county" and row.get("parent_code") and not row.get("valid_to"):
            counties.setdefault(row["parent_code"], []).append(code)
    return names, counties


def region_names() -> dict[str, str]:
    """Region code → Chinese name (provinces, cities, counties)."""
    return _regions()[0]


def counties_of(city_code: str) -> list[str]:
    """County-level codes of a city; a city without counties (东莞) stands for itself."""
    return sorted(_regions()[1].get(city_code, [])) or [city_code]


def _digits(rng: np.random.Generator, k: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, size=k))


def _pick(rng: np.random.Generator, options: tuple | str):
    return options[int(rng.integers(len(options)))]


def build_registry(n: int, seed: int) -> list[Hospital]:
    """``n`` hospitals, deterministic in ``seed``; codes and names unique, check digits valid."""
    rng = np.random.default_rng([seed, 0x4E6])
    names = region_names()
    cities = [c for c in CITIES if c in names]
    if not cities:
        raise ValueError("regions.csv lacks the generator's cities")
    hospitals: list[Hospital] = []
    used_bodies: set[str] = set()
    used_names: set[str] = set()
    for i in range(n):
        city = cities[i % len(cities)] if i < len(cities) else _pick(rng, tuple(cities))
        county = _pick(rng, tuple(counties_of(city)))
        body = "4" + _digits(rng, 7)
        while body in used_bodies:
            body = "4" + _digits(rng, 7)
        used_bodies.add(body)
        org9 = make_org_code(body)
        tcm = rng.random() < 0.2
        kind, category = _pick(rng, _TCM_KINDS) if tcm else (_pick(rng, _WESTERN_KINDS), "A100")
        name = f"{names[city].removesuffix('市')}{_pick(rng, _NAME_WORDS)}{kind}"
        if name in used_names:  # same city, word and kind drawn twice: a numbered campus
            name = name.replace(kind, f"第{i + 1}{kind.removeprefix('第一').removeprefix('第二')}")
        used_names.add(name)
        level = "三级" if rng.random() < 0.45 else "二级"
        grade = ("甲等", "乙等", "未定等")[int(rng.choice(3, p=[0.6, 0.3, 0.1]))]
        org_code = make_medical_org_code(org9, county, "11", category, "1")
        manager = _pick(rng, _MANAGER_SURNAMES) + "".join(
            _pick(rng, _MANAGER_GIVEN) for _ in range(int(rng.integers(1, 3))))
        uploader = f"hq{city[:4]}{i + 1:03d}"
        area, postcode = CITIES[city]
        hospitals.append(Hospital(
            index=i, org_code=org_code, org_code9=org9, uscc=make_uscc("1", "2", county, org9),
            licence_no=org_code, name=name, province_code=city[:2], city_code=city,
            city_name=names[city], county_code=county, medicine_type="中医" if tcm else "西医",
            category=category, level=level, grade=grade, data_manager_name=manager,
            data_manager_phone="1" + _pick(rng, "35789") + _digits(rng, 9),
            data_manager_email=f"{uploader}@example.org", uploader=uploader,
            area_code=area, postcode=postcode,
            size=float(rng.uniform(1.6, 3.0) if level == "三级" else rng.uniform(0.6, 1.3)),
            folder_in_zip=bool(rng.random() < 0.25),
            serial_uid_quirk=bool(rng.random() < 0.15),
            punctuality=float(rng.uniform(0.85, 0.98)),
        ))
    return hospitals


def write_registry(hospitals: list[Hospital], path: Path) -> None:
    """``registry/hospitals.csv`` (UTF-8): the 医院信息汇总表 columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(REGISTRY_COLUMNS)
        for h in hospitals:
            writer.writerow([getattr(h, c) for c in REGISTRY_COLUMNS])
