"""Write plugins/hqms/reference/regions.csv, the GB/T 2260 division table, from python-stdnum.

Source: ``stdnum/cn/loc.dat`` of the PyPI package ``python-stdnum`` 2.2 (compiled by its authors
from the 中华人民共和国行政区划代码 tables of zh.wikipedia.org): every province-, prefecture- and
county-level code since 1980 with the years it was valid (``[1983-2014]桥东区``, several names
when a code was renamed). python-stdnum is not a dependency of the pipeline: the CSV is the data,
this script how it was made.

    pip download --no-deps python-stdnum==2.2 && unzip -o python_stdnum-2.2-py3-none-any.whl stdnum/cn/loc.dat
    python scripts/regions_from_stdnum.py stdnum/cn/loc.dat

Columns (the dbt seed ``regions``; the first five are what every consumer used before):

* ``region_code`` — 6 digits, one row per code ever valid;
* ``name_zh`` — the current name (a code no longer valid: its last one). Pseudo-units
  (市辖区, 县, 省直辖县级行政单位) are prefixed with their parent's name (``北京市市辖区``);
* ``level`` — ``province`` (xx0000), ``city`` (xxyy00: prefecture-level units and the
  pseudo-prefectures of the municipalities and of 省直辖县级; also the county-level units directly
  under a province, xx90zz such as 仙桃市 429004, which report like prefectures), ``county``;
* ``parent_code`` — the province for a city, the city (xxyy00) for a county (the province for
  the few former counties directly under one, 海南 before 2002);
* ``province_code`` — 2 digits; ``city_code`` — the *current* prefecture-level code the code lies
  in (itself for a current city; for a code no longer valid, the current unit of the same name in
  the same province, else its current prefecture by code, else a unique current unit of that name
  anywhere; empty when none is known), so an ID number or an address coded before a re-division
  still finds its city;
* ``valid_from``, ``valid_to`` — years; empty ``valid_to``: valid today.

Current rows come first (in code order), then the codes no longer valid: a consumer that takes
the first match by name finds the current unit.
"""
from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "plugins" / "hqms" / "reference" / "regions.csv"
COLUMNS = ("region_code", "name_zh", "level", "parent_code", "province_code", "city_code",
           "valid_from", "valid_to")
PSEUDO = ("市辖区", "县", "市", "省直辖县级行政单位", "自治区直辖县级行政单位", "省直辖县级行政区划",
          "自治区直辖县级行政区划")
_ENTRY = re.compile(r"(?:\[(\d*)-(\d*)\])?(.+)")
#: Codes python-stdnum 2.2 lacks (changes it has not caught up with), from the 民政部 notices.
SUPPLEMENT = {
    "330113": [(2021, None, "临平区")],  # 杭州市 re-division, 2021 (民政部)
    "330114": [(2021, None, "钱塘区")],
}
#: Codes loc.dat lists without years although they ended (code → last year valid).
ENDED = {
    "422900": 1985,  # 林区 / 神农架林区 under 湖北, re-coded 429021 with the 省直辖 units (1986)
    "422921": 1985,
    "429001": 1999,  # 随州市 (county-level), a prefecture-level city 421300 since 2000
}
#: What a unit's type suffix may be; names equal without it are one unit renamed (昌平县 → 昌平区).
_SUFFIX = re.compile(r"(市|县|区|旗|地区|自治县|自治州|自治旗|林区|特区)$")


@dataclass
class Region:
    code: str
    names: list[tuple[int | None, int | None, str]]

    @property
    def current(self) -> bool:
        return any(to is None for _, to, _ in self.names)

    @property
    def name(self) -> str:
        open_ = [n for _, to, n in self.names if to is None]
        return (open_ or [n for _, _, n in self.names])[-1]

    @property
    def valid_from(self) -> int | None:
        starts = [f for f, _, _ in self.names]
        return None if None in starts else min(starts)  # type: ignore[type-var]

    @property
    def valid_to(self) -> int | None:
        return None if self.current else max(to for _, to, _ in self.names)  # type: ignore[type-var]

    @property
    def level(self) -> str:
        if self.code.endswith("0000"):
            return "province"
        if self.code.endswith("00") or self.code[2:4] == "90":
            return "city"
        return "county"

    @property
    def parent(self) -> str:
        if self.level == "province":
            return ""
        return self.code[:2] + "0000" if self.level == "city" else self.code[:4] + "00"


def parse(path: Path) -> dict[str, Region]:
    """Every code of loc.dat with its names and validity years."""
    regions: dict[str, Region] = {}
    province = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.strip().partition(" ")
        text = value.split("=", 1)[1].strip('"')
        if not line.startswith(" "):
            province = key
            continue
        names = []
        for entry in text.split(","):
            start, end, name = _ENTRY.fullmatch(entry.strip()).groups()  # type: ignore[union-attr]
            names.append((int(start) if start else None, int(end) if end else None, name))
        regions[province + key] = Region(province + key, names)
    for code, names in SUPPLEMENT.items():
        regions.setdefault(code, Region(code, names))
    for code, year in ENDED.items():
        regions[code].names = [(start, end if end is not None else year, name)
                               for start, end, name in regions[code].names]
    return regions


def _display_name(r: Region, regions: dict[str, Region]) -> str:
    if r.name in PSEUDO and r.parent in regions:
        return regions[r.parent].name + r.name
    return r.name


def _stem(name: str) -> str:
    return _SUFFIX.sub("", name)


def current_city(r: Region, regions: dict[str, Region], by_stem: dict[str, list[Region]]) -> str:
    """The current prefecture-level code ``r`` lies in (see the module docstring), else ''."""
    def city_of(cur: Region) -> str:
        if cur.level == "province":
            return ""
        if cur.level == "city":
            return cur.code
        parent = regions.get(cur.parent)
        return parent.code if parent and parent.current else ""

    if r.current:
        return city_of(r)
    named = by_stem.get(_stem(r.name), []) if r.name not in PSEUDO else []
    same = [c for c in named if c.code[:2] == r.code[:2]]
    if len(same) == 1 and (found := city_of(same[0])):
        return found
    prefecture = regions.get(r.code[:4] + "00")
    if r.level == "county" and prefecture and prefecture.current and prefecture.level == "city":
        return prefecture.code
    if len(named) == 1 and (found := city_of(named[0])):
        return found
    # a municipality's former 县 / 市辖区 codes: its one current prefecture-level unit
    cities = [c for c in regions.values() if c.current and c.level == "city" and c.code[:2] == r.code[:2]]
    return cities[0].code if len(cities) == 1 else ""


def rows(regions: dict[str, Region]) -> list[tuple[str, ...]]:
    by_stem: dict[str, list[Region]] = {}
    for r in regions.values():
        if r.current and r.name not in PSEUDO and r.level != "province":
            by_stem.setdefault(_stem(r.name), []).append(r)
    out = []
    for r in sorted(regions.values(), key=lambda r: (not r.current, r.code)):
        city = current_city(r, regions, by_stem)
        province = city[:2] if city else r.code[:2]
        parent = r.parent if not r.parent or r.parent in regions else r.code[:2] + "0000"
        out.append((r.code, _display_name(r, regions), r.level, parent, province, city,
                    "" if r.valid_from is None else str(r.valid_from),
                    "" if r.valid_to is None else str(r.valid_to)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    table = rows(parse(Path(argv[0])))
    with TARGET.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(COLUMNS)
        out.writerows(table)
    current = [r for r in table if not r[7]]
    levels = {lv: sum(1 for r in current if r[2] == lv) for lv in ("province", "city", "county")}
    print(f"{TARGET.name}: {len(table)} codes, {len(current)} current {levels}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
