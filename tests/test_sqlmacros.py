"""The DuckDB macros agree with the Python validators, value for value, on large mutated corpora.

Each corpus starts from valid values built with the makers and adds the mistakes real uploads
contain: a changed character, swapped neighbours, truncation, case changes, stray whitespace,
random junk, empty strings and NULLs. One DuckDB query checks a whole corpus.
"""
from __future__ import annotations

import csv
import random
import string
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from hqms import sqlmacros
from hqms import validators as v
from hqms.spec import CHECKS

CORPUS_SIZE = 10_000
#: Characters mutations draw from: everything the patterns care about plus look-alikes.
NOISE = string.digits + string.ascii_uppercase + "xX-./:+* " + "１Ｏ中\n\t"


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    sqlmacros.install(connection)
    return connection


# --- corpus --------------------------------------------------------------------------------------

def pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def region(rng: random.Random) -> str:
    return rng.choice(v.PROVINCES) + pick(rng, string.digits, 4)


def valid_id_card(rng: random.Random) -> str:
    born = date(1900, 1, 1) + timedelta(days=rng.randrange((date.today() - date(1900, 1, 1)).days + 1))
    number = v.make_id_card(region(rng), born, pick(rng, string.digits, 3))
    roll = rng.random()
    if roll < 0.2 and born.year < 2000:  # legacy 15-digit form
        return number[:6] + number[8:17]
    return number.lower() if roll < 0.3 else number


def valid_org_code(rng: random.Random) -> str:
    code = v.make_org_code(pick(rng, v.ORG_ALPHABET, 8))
    return f"{code[:8]}-{code[8]}" if rng.random() < 0.2 else code


def valid_uscc(rng: random.Random) -> str:
    org = v.make_org_code(pick(rng, v.USCC_ALPHABET, 8))
    return v.make_uscc(rng.choice("159Y"), rng.choice("123"), region(rng), org)


def valid_medical_org_code(rng: random.Random) -> str:
    return v.make_medical_org_code(v.make_org_code(pick(rng, v.ORG_ALPHABET, 8)), region(rng),
                                   pick(rng, string.digits, 2),
                                   rng.choice(string.ascii_uppercase) + pick(rng, string.digits, 3),
                                   rng.choice("129"))


def valid_icd10(rng: random.Random) -> str:
    def core() -> str:
        code = rng.choice(string.ascii_uppercase) + pick(rng, string.digits, 2)
        shape = rng.randrange(3)
        if shape == 1:
            code += "." + rng.choice(string.digits)
        elif shape == 2:
            code += "." + rng.choice(string.digits + "x") + pick(rng, string.digits, 2)
        return code

    code = core()
    if code.count(".") and len(code) == 7 and rng.random() < 0.3:
        code += "x" + pick(rng, string.digits, 3)
    if rng.random() < 0.2:
        code += "+" + core() + "*"
    return code


def valid_icd9cm3(rng: random.Random) -> str:
    code = pick(rng, string.digits, 2)
    shape = rng.randrange(6)
    if shape == 1:
        code += "." + pick(rng, string.digits, rng.choice((1, 2)))
    elif shape in (2, 3):
        code += "." + pick(rng, string.digits, rng.choice((2, 4)))
        if shape == 3:
            code += "x" + pick(rng, string.digits, rng.choice((3, 4)))
    elif shape == 4:  # no 4th-digit subdivision: 74.1x01, 57.0x00x005
        code += "." + rng.choice(string.digits) + "x" + pick(rng, string.digits, 2)
        code += rng.choice(("", "x" + pick(rng, string.digits, 3)))
    elif shape == 5:  # 中医操作: 17.91100, 17.912A0
        code = "17.9" + pick(rng, string.digits, 2) + rng.choice(string.digits + "ABCDEFG") + rng.choice(string.digits)
    return code


def valid_mobile(rng: random.Random) -> str:
    return rng.choice(("", "", "+86", "0086")) + "1" + rng.choice("3456789") + pick(rng, string.digits, 9)


def valid_phone(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return valid_mobile(rng)
    area = rng.choice(("", "0" + pick(rng, string.digits, rng.choice((2, 3)))))
    separator = rng.choice(("", "-")) if area else ""
    number = area + separator + pick(rng, string.digits, rng.choice((7, 8)))
    return number + rng.choice(("", "", "-" + pick(rng, string.digits, rng.randint(1, 6))))


def valid_postcode(rng: random.Random) -> str:
    return rng.choice("012345678") + pick(rng, string.digits, 5)


VALID_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "id_card": valid_id_card, "uscc": valid_uscc, "org_code": valid_org_code,
    "medical_org_code": valid_medical_org_code, "icd10": valid_icd10, "icd9cm3": valid_icd9cm3,
    "phone": valid_phone, "mobile": valid_mobile, "postcode": valid_postcode,
}


def mutate(rng: random.Random, s: str) -> str | None:
    """One realistic mistake applied to ``s`` (or a replacement by junk, empty or NULL)."""
    i = rng.randrange(len(s)) if s else 0
    kind = rng.randrange(12)
    if kind == 0:
        return s[:i] + rng.choice(NOISE) + s[i + 1:]
    if kind == 1:
        return s[:i] + rng.choice(string.digits) + s[i + 1:]
    if kind == 2 and len(s) > 1:
        i = min(i, len(s) - 2)
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    if kind == 3:
        return s[:i]
    if kind == 4:
        return s[:i] + s[i + 1:]
    if kind == 5:
        return s[:i] + rng.choice(NOISE) + s[i:]
    if kind == 6:
        return s.lower()
    if kind == 7:
        return s.upper()
    if kind == 8:
        return rng.choice((" ", "\t", "\n", "0")) + s if rng.random() < 0.5 else s + rng.choice(" \n0")
    if kind == 9:
        return pick(rng, NOISE, rng.randint(0, 24))
    if kind == 10:
        return rng.choice((None, "", " ", "NULL", "-"))
    return s


#: Recompute a code's outer check character after a mutation, so that the inner rules (province,
#: birth date, embedded organisation code) decide; raises ValueError when the body is unusable.
RECHECK: dict[str, Callable[[str], str]] = {
    "id_card": lambda s: s[:17] + v.id_card_check_char(s[:17]) + s[18:],
    "uscc": lambda s: s[:17] + v.uscc_check_char(s[:17]) + s[18:],
    "org_code": lambda s: s[:-1] + v.org_code_check_char(s[:8]),
    "medical_org_code": lambda s: s[:8] + v.org_code_check_char(s[:8]) + s[9:],
}


def corpus(rng: random.Random, check: str) -> list[str | None]:
    """A quarter valid values, the rest one to three mutations of valid values (half of those
    with their check character recomputed where the code has one)."""
    make, recheck = VALID_MAKERS[check], RECHECK.get(check)
    values: list[str | None] = [make(rng) for _ in range(CORPUS_SIZE // 4)]
    while len(values) < CORPUS_SIZE:
        value: str | None = make(rng)
        for _ in range(rng.randint(1, 3)):
            if value is not None:
                value = mutate(rng, value)
        if recheck and value and rng.random() < 0.5:
            try:
                value = recheck(value)
            except ValueError:
                pass
        values.append(value)
    return values + [None, ""]


def run(con: duckdb.DuckDBPyConnection, sql: str, **columns: list) -> list:
    """``sql`` over a table ``corpus`` holding ``columns`` plus a row number ``i``; one query."""
    n = len(next(iter(columns.values())))
    con.register("corpus", pa.table({"i": list(range(n)), **columns}))
    try:
        return [row[0] for row in con.execute(f"SELECT {sql} FROM corpus ORDER BY i").fetchall()]
    finally:
        con.unregister("corpus")


def assert_agree(values: list, python: list, sql: list) -> None:
    mismatches = [(val, p, s) for val, p, s in zip(values, python, sql) if p != s]
    assert not mismatches, f"{len(mismatches)} disagreements, e.g. {mismatches[:5]}"


# --- tests ----------------------------------------------------------------------------------------

def test_check_macros_cover_the_spec_checks(con):
    assert set(sqlmacros.CHECK_MACROS) == set(CHECKS)
    assert set(VALID_MAKERS) == set(CHECKS)
    names = {row[0] for row in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    assert set(sqlmacros.CHECK_MACROS.values()) <= names


@pytest.mark.parametrize("check", CHECKS)
def test_check_macro_agrees_with_python(con, check):
    rng = random.Random(f"sqlmacros-{check}")
    values = corpus(rng, check)
    function = getattr(v, f"{check}_valid")
    python = [None if s is None else function(s) for s in values]
    sql = run(con, f"{sqlmacros.CHECK_MACROS[check]}(v)", v=values)
    assert_agree(values, python, sql)
    # the corpus must exercise both outcomes heavily, or agreement would mean little
    assert python.count(True) > CORPUS_SIZE // 5 and python.count(False) > CORPUS_SIZE // 4
    assert python.count(None) >= 1


def test_normalise_id_card_agrees_with_python(con):
    values = corpus(random.Random("sqlmacros-normalise"), "id_card")
    python = [None if s is None else v.normalise_id_card(s) for s in values]
    assert_agree(values, python, run(con, "hqms_normalise_id_card(v)", v=values))
    assert sum(1 for s, n in zip(values, python) if s and len(s) == 15 and n) > 500


def test_canonical_code_agrees_with_python(con):
    values = [s for check in v.CANONICAL_CHECKS for s in corpus(random.Random(f"canonical-{check}"), check)]
    values += ["\u3000ma5cjq4n5 ", "ma5cjq4ſ5", "\u00a0ma5cjq4n5"]
    python = [None if s is None else v.canonical_code(s) for s in values]
    assert_agree(values, python, run(con, "hqms_canonical_code(v)", v=values))


@pytest.mark.parametrize("check", ["icd10", "icd9cm3"])
def test_every_national_dictionary_code_has_the_shape_in_any_case(con, check):
    """Every code of the 医保版 2.0 dictionaries passes, as published, upper- and lower-cased,
    in Python and in SQL (``74.1x01`` 剖宫产术, ``17.912A0``, ``J10.800x003+I41.1*``)."""
    with (Path(v.__file__).parent / "reference" / f"{check}.csv").open(encoding="utf-8") as fh:
        codes = [row["code"] for row in csv.DictReader(fh)]
    assert len(codes) > 10_000
    values = codes + [c.upper() for c in codes] + [c.lower() for c in codes]
    function = getattr(v, f"{check}_valid")
    assert [c for c in values if not function(c)] == []
    sql = run(con, f"{sqlmacros.CHECK_MACROS[check]}(v)", v=values)
    assert [c for c, ok in zip(values, sql) if not ok] == []


def test_known_examples_in_sql(con):
    row = con.execute("""SELECT hqms_id_card_ok('11010519491231002x'),
        hqms_normalise_id_card('110105491231002'), hqms_id_card_ok('110101198005201234'),
        hqms_uscc_ok('91350200776049653A'), hqms_uscc_ok('91440101MA5CJQ4N59'),
        hqms_org_code_ok('736798027'), hqms_org_code_ok('77604965-3'),
        hqms_medical_org_code_ok('77604965344010111A1001'),
        hqms_medical_org_code_ok('77604965444010111A1001'),
        hqms_uscc_ok(' 91440101ma5cjq4n59'), hqms_medical_org_code_ok('77604965344010111a1001'),
        hqms_icd9cm3_ok('74.1x01'), hqms_icd9cm3_ok('17.912a0'), hqms_icd9cm3_ok('13.41000')""").fetchone()
    assert row == (True, "11010519491231002X", False, True, True, True, True, True, False,
                   True, True, True, True, False)


def test_null_in_null_out_and_empty_is_false(con):
    for macro in sqlmacros.CHECK_MACROS.values():
        assert con.execute(f"SELECT {macro}(NULL), {macro}('')").fetchone() == (None, False), macro
    assert con.execute("SELECT hqms_normalise_id_card(NULL), hqms_normalise_id_card('')"
                       ).fetchone() == (None, None)


# --- dates ----------------------------------------------------------------------------------------

def strftime(value: datetime, fmt: str) -> str:
    """Format ``value`` in one of the spec's formats (years 1000-9999 pad naturally)."""
    return value.strftime(v.DATE_FORMATS[fmt][1])


def date_corpus(rng: random.Random) -> tuple[list[str | None], list[str]]:
    """For every format: valid stamps (many Feb 29ths and month ends), then mutated ones."""
    values: list[str | None] = []
    formats: list[str] = []
    for fmt in v.DATE_FORMATS:
        for n in range(CORPUS_SIZE):
            year = rng.choice((rng.randint(1000, 9999), rng.randint(1890, 2100)))
            month = rng.randint(1, 12)
            day = rng.choice((29, 30, 31)) if n % 3 == 0 else rng.randint(1, 28)
            stamp = datetime(year, month, 1, rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
            text = strftime(stamp, fmt)
            day_at = 6 if fmt == "YYYYMMDD" else 8
            text = text[:day_at] + f"{day:02d}" + text[day_at + 2:]  # may name a missing day
            if n >= CORPUS_SIZE // 4:
                text = mutate(rng, text)
            values.append(text)
            formats.append(fmt)
    return values, formats


def test_date_macros_agree_with_python(con):
    values, formats = date_corpus(random.Random("sqlmacros-dates"))
    python = [None if s is None else v.parse_datetime(s, f) for s, f in zip(values, formats)]
    sql = run(con, "hqms_parse_ts(v, fmt)", v=values, fmt=formats)
    assert_agree(values, python, sql)
    dates = run(con, "hqms_parse_date(v, fmt)", v=values, fmt=formats)
    assert_agree(values, [p.date() if p else None for p in python], dates)
    for fmt in v.DATE_FORMATS:
        outcomes = [p is not None for p, f in zip(python, formats) if f == fmt]
        assert outcomes.count(True) > CORPUS_SIZE // 5 and outcomes.count(False) > CORPUS_SIZE // 4


def test_parse_sql_follows_the_format_list_like_python(con):
    formats = ("yyyy-MM-dd", "YYYYMMDD", "yyyy/MM/dd HH:mm:ss")
    values = date_corpus(random.Random("sqlmacros-format-list"))[0][::3]
    python = [None if s is None else v.parse_date(s, formats) for s in values]
    assert_agree(values, python, run(con, sqlmacros.parse_sql("v", formats), v=values))
    stamps = [None if s is None else v.parse_datetime(s, formats) for s in values]
    assert_agree(values, stamps, run(con, sqlmacros.parse_sql("v", formats, as_timestamp=True),
                                     v=values))
    assert sum(p is not None for p in python) > len(values) // 10


@pytest.mark.parametrize("text,fmt", [("2025-1-6", "yyyy-MM-dd"), ("2025-02-30", "yyyy-MM-dd"),
                                      ("2025-01-06x", "yyyy-MM-dd"), ("2023-02-29", "YYYYMMDD"),
                                      ("2025-01-06 10:00", "yyyy-MM-dd HH:mm:ss"),
                                      ("0000-01-01", "yyyy-MM-dd")])
def test_strict_dates_in_sql(con, text, fmt):
    assert con.execute("SELECT hqms_parse_date(?, ?)", [text, fmt]).fetchone() == (None,)


def test_unknown_format_is_an_error(con):
    with pytest.raises(duckdb.InvalidInputException, match="unknown date format"):
        con.execute("SELECT hqms_parse_date('2025-01-06', 'dd/MM/yyyy')").fetchall()
    with pytest.raises(ValueError):
        sqlmacros.parse_sql("v", ["dd/MM/yyyy"])
    with pytest.raises(ValueError):
        sqlmacros.parse_sql("v", [])


# --- installation ---------------------------------------------------------------------------------

def test_install_is_idempotent_and_persists_in_a_database_file(tmp_path: Path):
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path) as con:
        sqlmacros.install(con)
        sqlmacros.install(con)
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("SELECT hqms_org_code_ok('736798027')").fetchone() == (True,)


def test_temporary_install_on_a_read_only_connection(tmp_path: Path):
    path = str(tmp_path / "snapshot.duckdb")
    duckdb.connect(path).close()
    with duckdb.connect(path, read_only=True) as con:
        with pytest.raises(duckdb.Error):
            sqlmacros.install(con)
        sqlmacros.install(con, temporary=True)
        sqlmacros.install(con, temporary=True)
        assert con.execute("SELECT hqms_postcode_ok('100000')").fetchone() == (True,)
