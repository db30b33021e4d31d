"""The rule compiler's SQL on real DuckDB tables: precedence, each rule, cross-field skips, org.

A small dataset built with ``parse_dataset`` exercises every rule kind; identifiers in the rows
are generated here with the validators' makers (nothing realistic is committed).
"""
from __future__ import annotations

import random
from datetime import date

import duckdb
import pyarrow as pa
import pytest

from hqms import rules, sqlmacros
from hqms.spec import COLUMN_RULES, ROW_RULES, datasets, parse_dataset
from hqms.validators import make_id_card, make_medical_org_code, make_org_code

SPEC = {
    "id": "t", "prefix": "t_", "stream": "flu", "org_column": "ORG", "natural_key": ["K"],
    "columns": [
        {"code": "ORG", "zh": "医疗机构代码", "name": "org", "required": True, "max_length": 22,
         "check": "medical_org_code"},
        {"code": "K", "zh": "就诊流水号", "name": "k", "required": True},
        {"code": "T", "zh": "证件类型", "name": "id_type", "values": {"01": "居民身份证", "02": "护照"}},
        {"code": "ID", "zh": "证件号码", "name": "id_number", "required": True, "max_length": 18,
         "null_tokens": ["-"], "check": "id_card", "check_when": {"column": "T", "in": ["01"]}},
        {"code": "SEX", "zh": "性别", "name": "sex", "max_length": 1,
         "values": {"1": "男", "2": "女", "9": "未说明"}},
        {"code": "AGE", "zh": "年龄", "name": "age", "type": "integer", "min": 0, "max": 150},
        {"code": "FEE", "zh": "总费用", "name": "fee", "type": "decimal", "min": 0},
        {"code": "SELF", "zh": "自付金额", "name": "self_pay", "type": "decimal", "min": 0},
        {"code": "DRUG", "zh": "药费", "name": "drug_fee", "type": "decimal", "min": 0},
        {"code": "D", "zh": "就诊日期", "name": "visit_date", "type": "date", "required": True,
         "formats": ["yyyy-MM-dd", "YYYYMMDD"]},
        {"code": "IN", "zh": "入ICU时间", "name": "icu_in", "type": "datetime",
         "formats": ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd"]},
        {"code": "OUT", "zh": "出ICU时间", "name": "icu_out", "type": "datetime",
         "formats": ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd"]},
        {"code": "DEAD", "zh": "是否死亡", "name": "dead", "values": {"1": "是", "2": "否"}},
        {"code": "DT", "zh": "死亡时间", "name": "death_time", "type": "datetime",
         "formats": ["yyyy-MM-dd HH:mm:ss"]},
    ],
    "rules": [
        {"id": "t_self_le_fee", "kind": "le", "left": ["SELF", "DRUG"], "right": "FEE",
         "zh": "自付金额与药费之和不得大于总费用", "en": "self-pay plus drug fee must not exceed the total"},
        {"id": "t_icu_in_le_out", "kind": "le", "left": ["IN"], "right": "OUT",
         "zh": "入ICU时间不得晚于出ICU时间", "en": "ICU admission must not be after ICU discharge"},
        {"id": "t_death_time", "kind": "required_if", "column": "DT",
         "when": {"column": "DEAD", "in": ["1"]},
         "zh": "死亡患者须填写死亡时间", "en": "time of death is required when the patient died"},
        {"id": "t_key_when_dead", "kind": "required_if", "column": "K",
         "when": {"column": "DEAD", "in": ["1"]}, "zh": "x", "en": "x"},
    ],
}
DS = parse_dataset(SPEC)
ORG = make_medical_org_code(make_org_code("MA5CJQ4N"), "510104", "11", "A100", "1")
OTHER_ORG = make_medical_org_code(make_org_code("12345678"), "440106", "11", "A100", "1")
GOOD_ID = make_id_card("510104", date(1980, 5, 17), "123")
ID_X = next(i for n in range(1000) if (i := make_id_card("510104", date(1990, 1, 2), f"{n:03d}"))[-1] == "X")
BAD_ID = GOOD_ID[:17] + ("0" if GOOD_ID[17] != "0" else "1")  # only the check character differs


def clean_row(i: int = 0) -> dict[str, str | None]:
    """A row that passes every check of DS."""
    return {"ORG": ORG, "K": f"V{i:06d}", "T": "01", "ID": GOOD_ID, "SEX": "1", "AGE": "40",
            "FEE": "100.50", "SELF": "20.0125", "DRUG": ".5", "D": "2025-01-06",
            "IN": "2025-01-06 08:00:00", "OUT": "2025-01-07", "DEAD": "1",
            "DT": "2025-01-07 10:00:00"}


def stage(con: duckdb.DuckDBPyConnection, rows: list[dict[str, str | None]], table: str = "t",
          uploader: str = ORG) -> None:
    """A staging table as the loader makes it: VARCHAR columns, _src, _row from 1, _uploader_org."""
    data = pa.table({
        "_src": pa.array([table] * len(rows), pa.string()),
        "_row": pa.array(range(1, len(rows) + 1), pa.int64()),
        "_uploader_org": pa.array([uploader] * len(rows), pa.string()),
        **{c: pa.array([r.get(c) for r in rows], pa.string()) for c in DS.codes},
    })
    con.register("_rows", data)
    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _rows")
    con.unregister("_rows")


def failures(con: duckdb.DuckDBPyConnection, table: str = "t") -> set[tuple[int, str]]:
    return {(r, cid) for r, cid, _, _ in con.execute(rules.failures_sql(DS, table)).fetchall()}


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    sqlmacros.install(con)
    yield con
    con.close()


def test_clean_rows_pass(con):
    stage(con, [clean_row(i) for i in range(50)])
    assert failures(con) == set()


# (column, value, other changes, expected rule or None)
CASES = [
    ("ID", None, {}, "required"),
    ("ID", "", {}, "required"),
    ("ID", "-", {}, None),                          # null token: present, no other check
    ("ID", GOOD_ID + "9", {}, "length"),            # too long AND bad: only length
    ("ID", BAD_ID, {}, "check"),
    ("ID", BAD_ID, {"T": "02"}, None),              # check_when: not an ID card
    ("ID", BAD_ID, {"T": None}, None),
    ("ID", ID_X.lower(), {}, None),                 # lowercase x check character is accepted
    ("SEX", "10", {}, "length"),                    # too long beats not-in-list
    ("SEX", "3", {}, "code_table"),
    ("T", "1", {}, "code_table"),
    ("AGE", "abc", {}, "type"),
    ("AGE", "1e3", {}, "type"),                     # DuckDB's TRY_CAST would accept these
    ("AGE", "0x10", {}, "type"),
    ("AGE", "4.0", {}, "type"),
    ("AGE", "200", {}, "range"),
    ("AGE", "-1", {}, "range"),
    ("AGE", "+5", {}, None),
    ("AGE", "150", {}, None),
    ("FEE", "1.23456", {"SELF": "0", "DRUG": "0"}, "type"),
    ("FEE", "-0.01", {"SELF": "0", "DRUG": "0"}, "range"),
    ("FEE", "0.0125", {"SELF": "0", "DRUG": "0"}, None),
    ("D", "2025-02-30", {}, "format"),
    ("D", "2025-1-6", {}, "format"),
    ("D", "2025-01-06 08:00:00", {}, "format"),     # not one of this column's formats
    ("D", "20250106", {}, None),
    ("D", None, {}, "required"),
    ("IN", "2025-01-06 24:00:00", {}, "format"),
    ("IN", "2025-01-06", {}, None),
    ("DEAD", "3", {}, "code_table"),
    ("ORG", ORG[:21] + "0" if ORG[21] != "0" else ORG[:21] + "1", {}, "check"),
    ("ORG", ORG + "1", {}, "length"),
    ("ORG", None, {}, "required"),
]


@pytest.mark.parametrize("column, value, changes, expected", CASES)
def test_first_failing_rule_only(con, column, value, changes, expected):
    rows = [clean_row(0), {**clean_row(1), **changes, column: value}, clean_row(2)]
    stage(con, rows)
    got = failures(con)
    assert got == ({(2, f"t.{column}.{expected}")} if expected else set())


def test_cross_field_le_sums_left_operands(con):
    rows = [
        {**clean_row(1), "SELF": "60", "DRUG": "40.50"},    # 100.50 = total: passes
        {**clean_row(2), "SELF": "60", "DRUG": "40.51"},    # 100.51 > total
        {**clean_row(3), "IN": "2025-01-08", "OUT": "2025-01-07 23:59:59"},
    ]
    stage(con, rows)
    assert failures(con) == {(2, "t.rule.t_self_le_fee"), (3, "t.rule.t_icu_in_le_out")}
    got = con.execute(rules.failures_sql(DS, "t") + " ORDER BY 1").fetchall()
    assert got[0][2:] == ("SELF", "cross_field")


def test_cross_field_le_compares_dates_when_a_time_is_written_as_a_date_only(con):
    """``2025-01-07`` is stored at 00:00:00; a timed value of the same day is not later than it
    (the outpatient page's check-in before a date-only consultation time)."""
    rows = [
        {**clean_row(1), "IN": "2025-01-07 08:00:00", "OUT": "2025-01-07"},  # same day: passes
        {**clean_row(2), "IN": "2025-01-07", "OUT": "2025-01-06 23:00:00"},  # a day later: fails
        {**clean_row(3), "IN": "2025-01-08 08:00:00", "OUT": "2025-01-07"},
        {**clean_row(4), "IN": "2025-01-07 09:00:00", "OUT": "2025-01-07 08:00:00"},  # both timed
    ]
    stage(con, rows)
    assert failures(con) == {(r, "t.rule.t_icu_in_le_out") for r in (2, 3, 4)}


def test_cross_field_skipped_when_an_operand_is_empty_or_invalid(con):
    over = {"SELF": "90", "DRUG": "90"}
    rows = [
        {**clean_row(1), **over, "FEE": None},           # empty operand: nothing
        {**clean_row(2), **over, "FEE": "abc"},          # invalid: only its own type error
        {**clean_row(3), **over, "FEE": "-5"},           # out of range: only range
        {**clean_row(4), **over, "DRUG": "-"},           # not a null token here: type error
        {**clean_row(5), "IN": "2025-13-01", "OUT": "2025-01-01"},
    ]
    stage(con, rows)
    assert failures(con) == {(2, "t.FEE.type"), (3, "t.FEE.range"), (4, "t.DRUG.type"),
                             (5, "t.IN.format")}


def test_required_if(con):
    rows = [
        {**clean_row(1), "DT": None},                    # died, no time: cross_field on DT
        {**clean_row(2), "DEAD": "2", "DT": None},       # alive: fine
        {**clean_row(3), "DEAD": None, "DT": None},      # condition unknown: skipped
        {**clean_row(4), "DEAD": "7", "DT": None},       # invalid condition: only code_table
        {**clean_row(5), "DT": "2025-01-07"},            # present but wrong format: format only
    ]
    stage(con, rows)
    assert failures(con) == {(1, "t.rule.t_death_time"), (4, "t.DEAD.code_table"),
                             (5, "t.DT.format")}
    dt = next(c for c in rules.compile_checks(DS) if c.check_id == "t.rule.t_death_time")
    assert (dt.column, dt.rule, dt.zh) == ("DT", "cross_field", "死亡患者须填写死亡时间")


def test_required_if_on_a_required_column_is_left_to_required(con):
    ids = {c.check_id for c in rules.compile_checks(DS)}
    assert "t.rule.t_key_when_dead" not in ids
    stage(con, [{**clean_row(1), "K": None}])
    assert failures(con) == {(1, "t.K.required")}


def test_org_mismatch(con):
    rows = [
        clean_row(1),
        {**clean_row(2), "ORG": OTHER_ORG},              # valid code of another hospital
        {**clean_row(3), "ORG": OTHER_ORG[:-1] + "X"},   # invalid: only its check error
    ]
    stage(con, rows)
    assert failures(con) == {(2, "t.ORG.org_mismatch"), (3, "t.ORG.check")}


def test_lower_case_org_code_is_the_uploaders_and_stored_upper_case(con):
    """Case and surrounding blanks never decide validity; the stored value is canonical."""
    stage(con, [{**clean_row(1), "ORG": ORG.lower()}, {**clean_row(2), "ORG": OTHER_ORG.lower()}])
    assert failures(con) == {(2, "t.ORG.org_mismatch")}
    stored = con.execute(f"SELECT {rules.typed_expr(DS.column('ORG'))} FROM t ORDER BY _row").fetchall()
    assert stored == [(ORG,), (OTHER_ORG,)]


def test_a_large_code_table_error_points_to_the_look_up_command():
    fever = datasets()["fever"]
    col = next(c for c in fever.columns if c.code_table == "RC040")
    check = next(c for c in rules.compile_checks(fever) if c.check_id == f"fever.{col.code}.code_table")
    assert "hqms codes RC040" in check.zh and "hqms codes RC040" in check.en
    small = next(c for c in rules.compile_checks(DS) if c.rule == "code_table")
    assert "hqms codes" not in small.zh


def test_one_error_per_row_and_column_on_random_mutations(con):
    """Whatever the junk, a (row, column) never gets two errors, and clean rows none."""
    rng = random.Random(7)
    junk = ["", "-", "abc", "1e3", "2025-02-30", "99", "x" * 30, "0", "-1", ".5", "20250106",
            "2025-01-06 08:00:00", BAD_ID, OTHER_ORG, "01", "1", "3", None]
    rows, clean = [], set()
    for i in range(3000):
        row = clean_row(i)
        if i % 3 == 0:
            clean.add(i + 1)
        else:
            for code in rng.sample(DS.codes, rng.randint(1, 4)):
                row[code] = rng.choice(junk)
        rows.append(row)
    stage(con, rows)
    got = con.execute(rules.failures_sql(DS, "t")).fetchall()
    per_cell = {}
    for row, _, column, _ in got:
        per_cell[(row, column)] = per_cell.get((row, column), 0) + 1
    assert max(per_cell.values()) == 1
    assert not clean & {row for row, *_ in got}
    assert len(got) > 1000


def test_typed_expr(con):
    stage(con, [
        {**clean_row(1), "D": "20250106", "AGE": "+7", "FEE": ".5", "ID": "-", "IN": "2025-01-06"},
        {**clean_row(2), "D": "2025-02-30", "AGE": "1e3", "FEE": "1.23456", "IN": "x"},
    ])
    cols = [DS.column(c) for c in ("D", "AGE", "FEE", "ID", "IN", "K")]
    sql = ", ".join(rules.typed_expr(c) for c in cols)
    first, second = con.execute(f"SELECT {sql} FROM t ORDER BY _row").fetchall()
    assert first[:5] == (date(2025, 1, 6), 7, pytest.approx(0.5), None, first[4])
    assert str(first[4]) == "2025-01-06 00:00:00" and first[5] == "V000001"
    assert second[:3] == (None, None, None) and second[4] is None
    types = con.execute(f"SELECT {sql} FROM t LIMIT 0").description
    assert [t[1] for t in types][:5] == ["DATE", "BIGINT", "DECIMAL(18,4)", "VARCHAR", "TIMESTAMP"]


def test_value_present_sql(con):
    stage(con, [{**clean_row(1), "ID": "-"}, {**clean_row(2), "ID": None}, clean_row(3)])
    got = con.execute(f"SELECT {rules.value_present_sql(DS.column('ID'))} FROM t ORDER BY _row")
    assert [r[0] for r in got.fetchall()] == [False, False, True]


def test_check_ids_rules_and_messages():
    checks = rules.compile_checks(DS)
    assert len({c.check_id for c in checks}) == len(checks)
    for c in checks:
        assert c.rule in COLUMN_RULES + ROW_RULES
        if c.rule in COLUMN_RULES + ("org_mismatch",):
            assert c.check_id == f"t.{c.column}.{c.rule}"
            col = DS.column(c.column)
            assert col.code in c.zh and col.zh in c.zh and col.code in c.en
    by_id = {c.check_id: c for c in checks}
    assert "居民身份证" in by_id["t.ID.check"].zh and "T（证件类型）" in by_id["t.ID.check"].zh
    assert "-" in by_id["t.ID.required"].zh
    assert "yyyy-MM-dd" in by_id["t.D.format"].en
    assert GOOD_ID not in "".join(c.zh + c.en for c in checks)


def test_every_spec_dataset_compiles_and_runs(con):
    """The real spec: every check's SQL is valid DuckDB (on an empty staging table)."""
    assert datasets(), "no datasets in the spec"
    for ds in datasets().values():
        cols = ", ".join(f"{rules.ident(c)} VARCHAR" for c in ds.codes)
        con.execute(f"CREATE OR REPLACE TABLE s (_row BIGINT, _uploader_org VARCHAR, {cols})")
        assert con.execute(rules.failures_sql(ds, "s")).fetchall() == []


ID_SPEC = {
    "id": "p", "prefix": "p_", "stream": "flu", "natural_key": ["K"],
    "columns": [
        {"code": "K", "zh": "流水号", "name": "k", "required": True},
        {"code": "T", "zh": "证件类型", "name": "id_type", "values": {"01": "居民身份证", "02": "护照"}},
        {"code": "ID", "zh": "证件号码", "name": "id_number", "max_length": 18, "check": "id_card",
         "check_when": {"column": "T", "in": ["01"]}},
        {"code": "SEX", "zh": "性别", "name": "sex", "code_table": "RC001"},
        {"code": "B", "zh": "出生日期", "name": "birth", "type": "date", "formats": ["yyyy-MM-dd", "YYYYMMDD"]},
    ],
    "rules": [
        {"id": "p_birth", "kind": "id_card_birth", "severity": "warning", "column": "B", "id_column": "ID",
         "when": {"column": "T", "in": ["01"]}, "zh": "出生日期与证件号码不一致", "en": "birth date differs"},
        {"id": "p_sex", "kind": "id_card_sex", "severity": "warning", "column": "SEX", "id_column": "ID",
         "when": {"column": "T", "in": ["01"]}, "zh": "性别与证件号码不一致", "en": "sex differs"},
    ],
}
ID_DS = parse_dataset(ID_SPEC)
WOMAN_15 = "510104800517124"  # legacy 15-digit number: born 1980-05-17, last digit even = female


def test_birth_date_and_sex_must_agree_with_the_id_number(con):
    """GB 11643 encodes birth date (digits 7–14) and sex (17th digit parity); a front page that
    disagrees was mistyped. Only valid operands are compared, and only for resident ID cards."""
    from hqms.generate import conform

    ok = {"T": "01", "ID": GOOD_ID, "SEX": "1", "B": "1980-05-17"}
    rows = [
        ok,
        {**ok, "B": "19800517"},                         # same date, other accepted layout
        {**ok, "ID": GOOD_ID.lower()},
        {**ok, "B": "1980-05-18"},                       # birth differs → p_birth on B
        {**ok, "SEX": "2"},                              # sex differs → p_sex on SEX
        {**ok, "SEX": "9"},                              # unspecified sex: not compared
        {**ok, "B": "1980-05-18", "T": "02"},            # passport: not compared
        {**ok, "ID": BAD_ID, "B": "1990-01-01"},         # invalid ID: only its check error
        {**ok, "B": "1980-13-01"},                       # invalid birth: only its format error
        {**ok, "ID": WOMAN_15, "SEX": "2"},              # legacy number agrees
        {**ok, "ID": WOMAN_15, "SEX": "1", "B": "1980-05-16"},  # both differ: one error each
        {**ok, "B": None},
    ]
    data = [{**r, "K": f"V{i}"} for i, r in enumerate(rows)]
    con.register("_rows", pa.table({
        "_src": pa.array(["p"] * len(data)), "_row": pa.array(range(1, len(data) + 1), pa.int64()),
        "_uploader_org": pa.array([ORG] * len(data)),
        **{c: pa.array([r.get(c) for r in data], pa.string()) for c in ID_DS.codes}}))
    con.execute("CREATE TABLE p AS SELECT * FROM _rows")
    got = {(r, cid) for r, cid, _, _ in con.execute(rules.failures_sql(ID_DS, "p")).fetchall()}
    assert got == {(4, "p.rule.p_birth"), (5, "p.rule.p_sex"), (8, "p.ID.check"), (9, "p.B.format"),
                   (11, "p.rule.p_sex"), (11, "p.rule.p_birth")}
    columns = {c.check_id: c.column for c in rules.compile_checks(ID_DS)}
    assert (columns["p.rule.p_birth"], columns["p.rule.p_sex"]) == ("B", "SEX")
    # The generator's Python verdict (conform) agrees row by row.
    python = {(i + 1, r) for i, row in enumerate(data)
              for r in [f"p.rule.{rule.id}" for rule in ID_DS.rules
                        if conform.rule_fails(ID_DS, rule, {k: v or "" for k, v in row.items()})]}
    assert python == {x for x in got if ".rule." in x[1]}


def test_id_card_rules_need_an_id_checked_column():
    bad = {**ID_SPEC, "rules": [{**ID_SPEC["rules"][0], "id_column": "K"}]}
    with pytest.raises(ValueError, match="not checked as id_card"):
        parse_dataset(bad)


def test_id_card_rules_as_errors_are_injected_by_the_generator():
    """Severity is spec data: made errors, the ID rules hold rows back (conform's verdict) and the
    generator can inject them as defects — the birth date moved or the sex swapped."""
    import numpy as np

    from hqms.generate import conform
    from hqms.generate.defects import Injector

    strict = parse_dataset({**ID_SPEC, "rules": [{**r, "severity": "error"} for r in ID_SPEC["rules"]]})
    row = {"K": "V1", "T": "01", "ID": GOOD_ID, "SEX": "1", "B": "1980-05-17"}
    assert conform.row_failures(strict, row, ORG) == []
    assert conform.row_failures(strict, {**row, "SEX": "2"}, ORG) == [("SEX", "cross_field")]
    assert conform.row_failures(ID_DS, {**row, "SEX": "2"}, ORG) == []  # a warning holds nothing back
    injector = Injector(strict, ORG, [])
    defects = [injector.inject(row, np.random.default_rng(seed)) for seed in range(40)]
    assert {d.column for _, d in defects if d.kind == "cross_field"} == {"SEX", "B"}
    for changed, d in defects:
        assert conform.row_failures(strict, changed, ORG) == [(d.column, d.rule)]
