"""The national code dictionaries, and ``hqms codes``: code look-up for the hospitals' clerks.

Two levels of checking for a diagnosis (ICD-10) or procedure (ICD-9-CM-3) column: its *shape*
(:mod:`hqms.validators`, an error: the row is held back) and its *membership* in the national
dictionary shipped in ``reference/icd10.csv`` / ``icd9cm3.csv`` (医保版 2.0; origin in
``reference/README.md``). Membership is only a warning (``dictionary_hint``,
:mod:`hqms.ingest.hints`): hospitals also send 国家临床版 codes and older local codes, which are
real diagnoses, and the row is kept. What helps the hospital map its local codes to the national
edition (《HQMS 医院账户开通与数据对接工作说明》's mapping step) is the count, a few examples and the nearest dictionary codes
(:func:`nearest`), and this command to look codes up:

    hqms codes                      # the tables there are
    hqms codes RC040 --search 中国   # an RC code table, filtered by code or name
    hqms codes icd10 J10            # dictionary codes starting with J10 (any case)
    hqms codes icd9cm3 74.1
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
from collections.abc import Iterable

import duckdb

from hqms import spec

#: Spec check → (dictionary file in reference/, what it is called in messages).
DICTIONARIES: dict[str, tuple[str, str]] = {
    "icd10": ("icd10.csv", "ICD-10 医保版 2.0"),
    "icd9cm3": ("icd9cm3.csv", "ICD-9-CM-3 医保版 2.0"),
}
#: Nearest codes offered per unknown code.
NEAREST = 3


@functools.cache
def dictionary(check: str) -> dict[str, tuple[str, str]]:
    """Upper-cased code → (code as published, name) of a national dictionary."""
    file_name, _ = DICTIONARIES[check]
    return {r["code"].upper(): (r["code"], r["name_zh"]) for r in spec.reference_csv(file_name)}


def dictionary_table(check: str) -> str:
    """Name of the temp table :func:`install_dictionary` creates."""
    return f"hqms_dictionary_{check}"


def install_dictionary(con: duckdb.DuckDBPyConnection, check: str) -> str:
    """A temp table ``(code)`` of the dictionary's upper-cased codes on ``con`` (once per
    connection); returns its name. Values are compared upper-cased: the shape accepts any case."""
    table = dictionary_table(check)
    path = spec.REFERENCE_DIR / DICTIONARIES[check][0]
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} AS SELECT DISTINCT upper(code) AS code "
                f"FROM read_csv('{path.as_posix().replace(chr(39), chr(39) * 2)}', header = true, "
                "columns = {'code': 'VARCHAR', 'name_zh': 'VARCHAR'})")
    return table


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (the code strings are short)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _category(code: str) -> str:
    """The category a code belongs to: ``J10`` of ``J10.100x005``, ``74`` of ``74.1x01``."""
    return code.split(".", 1)[0].split("+", 1)[0]


def nearest(check: str, code: str, n: int = NEAREST) -> list[tuple[str, str]]:
    """Up to ``n`` dictionary codes (as published, name) nearest to ``code``: of the same category
    (``J11`` for ``J11.101``) by edit distance, ties by code; none when the category is unknown."""
    key = code.upper()
    category = _category(key)
    same = [c for c in dictionary(check) if _category(c) == category]
    same.sort(key=lambda c: (_distance(key, c), c))
    return [dictionary(check)[c] for c in same[:n]]


def lookup(table: str, prefix: str = "", search: str = "") -> list[tuple[str, str]]:
    """(code, name) of an RC code table or a dictionary: codes starting with ``prefix`` (any case),
    whose code or name contains ``search``; unknown tables raise ``KeyError``."""
    if table.lower() in DICTIONARIES:
        rows: Iterable[tuple[str, str]] = dictionary(table.lower()).values()
    else:
        rows = spec.code_tables()[table.upper()].items()
    prefix, needle = prefix.upper(), search.upper()
    return [(code, name) for code, name in rows
            if code.upper().startswith(prefix) and (needle in code.upper() or needle in name.upper())]


def _tables() -> list[tuple[str, str, int]]:
    """(id, name, size) of every table ``hqms codes`` can show."""
    names: dict[str, str] = {}
    for row in spec.reference_csv("rc_codes.csv"):
        names.setdefault(row["table_id"], row["table_name"])
    out = [(check, label, len(dictionary(check))) for check, (_, label) in DICTIONARIES.items()]
    return out + [(tid, names[tid], len(codes)) for tid, codes in sorted(spec.code_tables().items())]


def run(args: argparse.Namespace) -> int:
    from hqms.errors import UserError

    if not args.table:
        rows: list = _tables()
        if args.json:
            print(json.dumps([dict(zip(("table", "name", "codes"), r)) for r in rows], ensure_ascii=False))
        else:
            print("\n".join(f"{tid}\t{name}\t{n} 个代码" for tid, name, n in rows))
        return 0
    try:
        rows = lookup(args.table, args.prefix or "", args.search or "")
    except KeyError:
        raise UserError(f"unknown code table {args.table!r}; `hqms codes` lists them") from None
    if args.json:
        print(json.dumps([{"code": c, "name": n} for c, n in rows], ensure_ascii=False))
        return 0
    writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    writer.writerows(rows)
    if not rows:
        print(f"没有符合条件的代码 (no code of {args.table} matches)", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("codes", help="look up codes: an RC code table or the ICD-10 / ICD-9-CM-3 dictionaries")
    p.add_argument("table", nargs="?", help="RC table id (RC040), icd10 or icd9cm3; none: list the tables")
    p.add_argument("prefix", nargs="?", help="only codes starting with this (any case): J10, 74.1")
    p.add_argument("--search", help="only codes whose code or name contains this text (中国, 剖宫产)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
