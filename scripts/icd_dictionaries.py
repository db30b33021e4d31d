"""Write plugins/hqms/reference/icd10.csv and icd9cm3.csv from the national 医保版 2.0 dictionaries.

Source: the public GitHub repository OpenDRG/DRG_Python, commit 5d523a26,
``drg_group/chs_drg_11/ICD/ZD_INFO.dat`` (ICD-10 diagnoses) and ``SS_INFO.dat`` (ICD-9-CM-3
procedures): one ``code name`` per line, UTF-8 (names may hold blanks: only the first one splits).
Codes are written as published (lower-case ``x``); the pipeline compares them upper-cased.

    python scripts/icd_dictionaries.py ZD_INFO.dat SS_INFO.dat

It also rewrites reference/flu_icd10.csv, the flu case definition: every J09–J11 code of the
ICD-10 dictionary with the dictionary's label (tests/test_codes.py holds the two together).

Another edition (国家临床版 2.0/3.0) in the same ``code name`` layout converts the same way;
say its origin in plugins/hqms/reference/README.md.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "plugins" / "hqms" / "reference"


def convert(source: Path, target: Path) -> int:
    """``code name`` lines → ``code,name_zh`` CSV; returns the number of codes. Refuses a file whose
    codes repeat (case-insensitively) — the CSV is a dictionary."""
    rows: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(source.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        code, _, name = line.strip().partition(" ")
        if code.upper() in rows:
            raise SystemExit(f"{source}:{n}: code {code} repeats")
        rows[code.upper()] = (code, name.strip())
    with target.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(("code", "name_zh"))
        out.writerows(rows.values())
    return len(rows)


#: The flu case definition's categories and subcategories (ICD-10 volume 1 titles; the national
#: dictionaries list codes only), and which subcategories are flu pneumonia (J1x.0).
FLU_GROUPS = (
    ("J09", "已证实的人畜共患或大流行流感病毒引起的流行性感冒", False),
    ("J10", "其他已标明的流感病毒引起的流行性感冒", False),
    ("J10.0", "流行性感冒伴有肺炎，其他流感病毒被标明", True),
    ("J10.1", "流行性感冒伴有其他呼吸道表现，其他流感病毒被标明", False),
    ("J10.8", "流行性感冒伴有其他表现，其他流感病毒被标明", False),
    ("J11", "流行性感冒，病毒未标明", False),
    ("J11.0", "流行性感冒伴有肺炎，病毒未标明", True),
    ("J11.1", "流行性感冒伴有其他呼吸道表现，病毒未标明", False),
    ("J11.8", "流行性感冒伴有其他表现，病毒未标明", False),
)


def flu_codes(icd10: Path, target: Path) -> int:
    """reference/flu_icd10.csv: the groups above, then every J09–J11 code of the ICD-10 dictionary
    with the dictionary's label, flagged pneumonia when its subcategory is."""
    with icd10.open(encoding="utf-8") as fh:
        codes = [r for r in csv.DictReader(fh) if r["code"][:3] in ("J09", "J10", "J11")]
    pneumonia = {prefix for prefix, _, flag in FLU_GROUPS if flag}
    with target.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(("code_prefix", "description_zh", "is_pneumonia"))
        out.writerows((p, name, str(flag).lower()) for p, name, flag in FLU_GROUPS)
        out.writerows((r["code"], r["name_zh"], str(r["code"][:5] in pneumonia).lower()) for r in codes)
    return len(codes)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for source, name in zip(argv, ("icd10.csv", "icd9cm3.csv")):
        print(f"{name}: {convert(Path(source), REFERENCE / name)} codes")
    print(f"flu_icd10.csv: {flu_codes(REFERENCE / 'icd10.csv', REFERENCE / 'flu_icd10.csv')} dictionary codes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
