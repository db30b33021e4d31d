"""Write plugins/hqms/reference/icd10.csv and icd9cm3.csv from the national 医保版 2.0 dictionaries.

Source: the public GitHub repository OpenDRG/DRG_Python, commit 5d523a26,
``drg_group/chs_drg_11/ICD/ZD_INFO.dat`` (ICD-10 diagnoses) and ``SS_INFO.dat`` (ICD-9-CM-3
procedures): one ``code name`` per line, UTF-8 (names may hold blanks: only the first one splits).
Codes are written as published (lower-case ``x``); the pipeline compares them upper-cased.

    python scripts/icd_dictionaries.py ZD_INFO.dat SS_INFO.dat

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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for source, name in zip(argv, ("icd10.csv", "icd9cm3.csv")):
        print(f"{name}: {convert(Path(source), REFERENCE / name)} codes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
