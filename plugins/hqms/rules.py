"""Compile a dataset's spec into validation checks: one DuckDB boolean expression per rule.

Every error a hospital sees comes from here, so the semantics are the contract the synthetic
generator's defect manifest is checked against (exactly one error per injected defect, none on a
conforming row):

* Per (row, column) only the FIRST failing rule is reported, in ``hqms.spec.COLUMN_RULES`` order
  (``required, length, type, format, range, code_table, check``). Each check's ``fail_sql`` is
  therefore "this rule fails AND no earlier rule of the column failed", so checks never overlap.
* ``required`` fails on an empty value only; a null token (e.g. ``-``) counts as present and
  skips every other check of the column.
* ``type``: integers are an optional sign and 1–18 digits (always fits BIGINT); decimals are an
  optional sign, up to 14 integer digits and an optional ``.`` with 1–4 decimals, or ``.5``
  style (Oracle exports drop the leading zero). Four decimals because drug doses (0.075 g) and
  unit prices carry more than two; typed decimals are therefore ``DECIMAL(18,4)``. Scientific
  notation, hex, ``1_000`` and blanks are rejected even though DuckDB's TRY_CAST accepts them.
* ``format``: a date/datetime value must parse in at least one of the column's formats
  (``hqms.sqlmacros`` parsers are strict: zero padding, real calendar dates, nothing trailing).
* Cross-field rules (``rule`` = ``cross_field``: ``le``, ``required_if`` and the ID-number
  agreement rules ``id_card_birth`` / ``id_card_sex``) and the org check (``org_mismatch``) only look at
  operands that are present and passed all their own column checks, so an invalid operand is
  reported once, by its column.

Only SQL text is produced here (no I/O); :mod:`hqms.quality` runs it through Great Expectations and
:func:`failures_sql` is the direct DuckDB path used to cross-check GX.
"""
from __future__ import annotations

from dataclasses import dataclass

from hqms.spec import ID_CARD_RULE_KINDS, Column, Condition, Dataset, Rule, allowed_values
from hqms.sqlmacros import CHECK_MACROS, canonical_sql, parse_sql
from hqms.sqltext import literal
from hqms.validators import CANONICAL_CHECKS

#: Largest integer/decimal shapes accepted by the ``type`` rule (see module docstring).
INTEGER_RE = r"[+-]?[0-9]{1,18}"
DECIMAL_RE = r"[+-]?([0-9]{1,14}(\.[0-9]{1,4})?|\.[0-9]{1,4})"
MAX_DECIMALS = 4
_NUMBER_SHAPES = {"integer": INTEGER_RE, "decimal": DECIMAL_RE}

#: SQL type of a column's typed value, by spec type.
TYPED_SQL = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "decimal": "DECIMAL(18,4)",
    "date": "DATE",
    "datetime": "TIMESTAMP",
}

#: Inline code lists up to this size are spelled out in the error message.
_LIST_IN_MESSAGE = 12
#: A code table larger than this is too long to remember: its error names ``hqms codes``.
_LIST_IN_LOOKUP = 30

#: What a failing ``check`` means, for the data manager: (zh, en).
_CHECK_TEXT: dict[str, tuple[str, str]] = {
    "id_card": ("不是有效的居民身份证号码（地区码、出生日期或校验位错误）",
                "is not a valid resident ID card number (region, birth date or check character wrong)"),
    "uscc": ("不是有效的统一社会信用代码（字符或校验位错误）",
             "is not a valid unified social credit code (characters or check character wrong)"),
    "org_code": ("不是有效的组织机构代码（校验位错误）",
                 "is not a valid organisation code (check character wrong)"),
    "medical_org_code": ("不是有效的医疗机构代码（应为22位：9位组织机构代码+13位机构属性代码，校验位须正确）",
                         "is not a valid 22-character medical institution code "
                         "(9-character organisation code + 13-character attribute code, check character must match)"),
    "icd10": ("不是有效的ICD-10疾病编码（应为医保版2.0/国家临床版2.0的编码形式，如 J10.100、J10.100x005、"
              "J10.800x003+I41.1*）",
              "is not a valid ICD-10 diagnosis code (the form of the national editions, e.g. J10.100, "
              "J10.100x005, J10.800x003+I41.1*)"),
    "icd9cm3": ("不是有效的ICD-9-CM-3手术操作编码（应为医保版2.0/国家临床版3.0的编码形式，如 74.1x01、"
                "13.4100x001、17.912A0）",
                "is not a valid ICD-9-CM-3 procedure code (the form of the national editions, e.g. "
                "74.1x01, 13.4100x001, 17.912A0)"),
    "phone": ("不是有效的电话号码（固定电话或手机）", "is not a valid phone number (landline or mobile)"),
    "mobile": ("不是有效的手机号码", "is not a valid mobile phone number"),
    "postcode": ("不是有效的6位邮政编码", "is not a valid 6-digit postcode"),
}


@dataclass(frozen=True)
class Check:
    """One validation check: a row fails it iff ``fail_sql`` is TRUE for that row."""

    check_id: str       # stable: "<dataset>.<column>.<rule>" or "<dataset>.rule.<rule id>"
    dataset: str
    column: str | None
    rule: str           # from hqms.spec.COLUMN_RULES or ROW_RULES
    zh: str             # message for the hospital's data manager (names code and Chinese name)
    en: str
    fail_sql: str       # DuckDB boolean over the staging columns; never NULL when it matters
    severity: str = "error"  # "warning": reported, but the row is not held back


# ---------------------------------------------------------------- SQL building blocks

def ident(code: str) -> str:
    """A column code as a quoted DuckDB identifier."""
    return '"' + code.replace('"', '""') + '"'


def _in_list(values: list[str] | tuple[str, ...]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


def _number(value: float) -> str:
    """A spec bound as SQL (ints stay ints so BIGINT comparisons need no cast)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def empty_sql(col: Column) -> str:
    """TRUE when the cell is empty (the loader stores empty as NULL; '' is tolerated)."""
    c = ident(col.code)
    return f"({c} IS NULL OR {c} = '')"


def value_present_sql(col: Column) -> str:
    """TRUE when the cell holds a real value: non-empty and not one of the column's null tokens."""
    c = ident(col.code)
    sql = f"{c} IS NOT NULL AND {c} <> ''"
    if col.null_tokens:
        sql += f" AND {c} NOT IN {_in_list(col.null_tokens)}"
    return f"({sql})"


def _parsed(col: Column) -> str:
    """The value parsed with the first of the column's formats that accepts it (else NULL)."""
    return parse_sql(ident(col.code), col.formats, as_timestamp=col.type == "datetime")


def typed_expr(col: Column) -> str:
    """SQL for the column's typed value, NULL when empty, a null token or not parseable.

    Types follow :data:`TYPED_SQL`; dates take the first matching format; identifiers (a check of
    :data:`hqms.validators.CANONICAL_CHECKS`) are stored in their canonical upper-case form, so
    ``…3222e`` and ``…3222E`` are one hospital in the warehouse and its keys.
    """
    c = ident(col.code)
    present = value_present_sql(col)
    if col.type in _NUMBER_SHAPES:
        shape = literal(_NUMBER_SHAPES[col.type])
        return (f"(CASE WHEN {present} AND regexp_full_match({c}, {shape}) "
                f"THEN TRY_CAST({c} AS {TYPED_SQL[col.type]}) END)")
    if col.type in ("date", "datetime"):
        return f"(CASE WHEN {present} THEN {_parsed(col)} END)"
    if col.check in CANONICAL_CHECKS:
        return f"(CASE WHEN {present} THEN {canonical_sql(c)} END)"
    return f"(CASE WHEN {present} THEN {c} END)"


def _condition_sql(cond: Condition) -> str:
    """TRUE iff the condition column's value is in the list (FALSE, never NULL, when empty)."""
    return f"COALESCE({ident(cond.column)} IN {_in_list(cond.values)}, FALSE)"


def _column_predicates(col: Column) -> list[tuple[str, str]]:
    """(rule, SQL that is TRUE when the rule fails) for every rule after ``required``, in order.

    Each predicate assumes the value is present (non-empty, not a null token); TRY_* functions
    keep it free of conversion errors whatever order DuckDB evaluates conjuncts in.
    """
    c = ident(col.code)
    preds: list[tuple[str, str]] = []
    if col.max_length is not None:
        preds.append(("length", f"length({c}) > {int(col.max_length)}"))
    if col.type in _NUMBER_SHAPES:
        preds.append(("type", f"NOT regexp_full_match({c}, {literal(_NUMBER_SHAPES[col.type])})"))
    if col.type in ("date", "datetime"):
        preds.append(("format", f"{_parsed(col)} IS NULL"))
    if col.type in _NUMBER_SHAPES and (col.min is not None or col.max is not None):
        typed = f"TRY_CAST({c} AS {TYPED_SQL[col.type]})"
        bounds = []
        if col.min is not None:
            bounds.append(f"{typed} < {_number(col.min)}")
        if col.max is not None:
            bounds.append(f"{typed} > {_number(col.max)}")
        preds.append(("range", " OR ".join(bounds)))
    codes = allowed_values(col)
    if codes:
        # list_contains, not NOT IN: DuckDB expands IN into one comparison per code, ~60x slower
        # on a 242-code table (RC040) over a million rows.
        listed = ", ".join(literal(v) for v in sorted(codes))
        preds.append(("code_table", f"NOT list_contains([{listed}], {c})"))
    if col.check:
        failed = f"NOT {CHECK_MACROS[col.check]}({c})"
        if col.check_when:
            failed = f"{_condition_sql(col.check_when)} AND {failed}"
        preds.append(("check", failed))
    return preds


def _any(preds: list[str]) -> str:
    """TRUE when any predicate is TRUE, FALSE otherwise (NULLs count as not failed)."""
    return "COALESCE(" + " OR ".join(f"({p})" for p in preds) + ", FALSE)"


def column_ok_sql(col: Column) -> str:
    """TRUE when the cell holds a value that passes every column rule (usable as an operand)."""
    preds = [p for _, p in _column_predicates(col)]
    if not preds:
        return value_present_sql(col)
    return f"({value_present_sql(col)} AND NOT {_any(preds)})"


# ---------------------------------------------------------------- messages

def label_zh(col: Column) -> str:
    """How every message names a column: code and Chinese name."""
    return f"{col.code}（{col.zh}）"


def label_en(col: Column) -> str:
    return f"{col.code} ({col.zh}, {col.en or col.name.replace('_', ' ')})"


def _formats_text(col: Column) -> tuple[str, str]:
    return " 或 ".join(col.formats), " or ".join(col.formats)


def _bounds_text(col: Column) -> tuple[str, str]:
    lo = None if col.min is None else _number(col.min)
    hi = None if col.max is None else _number(col.max)
    if lo is not None and hi is not None:
        return f"应在 {lo} 至 {hi} 之间", f"must be between {lo} and {hi}"
    if lo is not None:
        return f"不得小于 {lo}", f"must be at least {lo}"
    return f"不得大于 {hi}", f"must be at most {hi}"


def _codes_text(col: Column) -> tuple[str, str]:
    codes = allowed_values(col) or {}
    if col.code_table:
        if len(codes) > _LIST_IN_LOOKUP:
            return (f"不是代码表 {col.code_table} 中的有效代码（可用 hqms codes {col.code_table} --search 名称 查询）",
                    f"is not a code of code table {col.code_table} "
                    f"(look it up with `hqms codes {col.code_table} --search NAME`)")
        return (f"不是代码表 {col.code_table} 中的有效代码",
                f"is not a code of code table {col.code_table}")
    if len(codes) <= _LIST_IN_MESSAGE:
        listed_zh = "、".join(f"{k} {v}" for k, v in codes.items())
        listed_en = ", ".join(f"{k} ({v})" for k, v in codes.items())
        return f"取值无效，应为：{listed_zh}", f"is not an allowed value; use one of: {listed_en}"
    return "取值无效，不在允许的代码列表中", "is not in the list of allowed codes"


def _when_text(ds: Dataset, cond: Condition) -> tuple[str, str]:
    other = ds.column(cond.column)
    values = "/".join(cond.values)
    return (f"当 {label_zh(other)} 为 {values} 时，",
            f"When {label_en(other)} is {values}, ")


def _messages(ds: Dataset, col: Column, rule: str) -> tuple[str, str]:
    """(zh, en) for one column rule; static text (never the offending value: it may be personal)."""
    zh, en = label_zh(col), label_en(col)
    if rule == "required":
        msg = (f"{zh}为必填项，不能为空", f"{en} is required but empty")
        if col.null_tokens:
            token = col.null_tokens[0]
            msg = (msg[0] + f"；无此项时请填写“{token}”", msg[1] + f" (write \"{token}\" when there is none)")
        return msg
    if rule == "length":
        return f"{zh}长度超过 {col.max_length} 个字符", f"{en} is longer than {col.max_length} characters"
    if rule == "type":
        if col.type == "integer":
            return f"{zh}应为整数", f"{en} must be a whole number"
        return (f"{zh}应为数字（最多 {MAX_DECIMALS} 位小数）",
                f"{en} must be a number with at most {MAX_DECIMALS} decimal places")
    if rule == "format":
        kind_zh, kind_en = ("日期时间", "date-time") if col.type == "datetime" else ("日期", "date")
        fz, fe = _formats_text(col)
        return (f"{zh}不是有效的{kind_zh}，格式应为 {fz}",
                f"{en} is not a valid {kind_en} in format {fe}")
    if rule == "range":
        bz, be = _bounds_text(col)
        return f"{zh}超出取值范围：{bz}", f"{en} is out of range: it {be}"
    if rule == "code_table":
        cz, ce = _codes_text(col)
        return f"{zh}{cz}", f"{en} {ce}"
    if rule == "check":
        cz, ce = _CHECK_TEXT[col.check or ""]
        if col.check_when:
            wz, we = _when_text(ds, col.check_when)
            return f"{wz}{zh}{cz}", f"{we}{en} {ce}"
        return f"{zh}{cz}", f"{en} {ce}"
    if rule == "org_mismatch":
        return (f"{zh}与上传机构的医疗机构代码不一致",
                f"{en} differs from the uploading institution's code")
    raise ValueError(f"no message for rule {rule!r}")


# ---------------------------------------------------------------- compilation

def _column_checks(ds: Dataset, col: Column) -> list[Check]:
    checks: list[Check] = []

    def add(rule: str, sql: str) -> None:
        zh, en = _messages(ds, col, rule)
        checks.append(Check(f"{ds.id}.{col.code}.{rule}", ds.id, col.code, rule, zh, en, sql))

    if col.required:
        add("required", empty_sql(col))
    preds = _column_predicates(col)
    present = value_present_sql(col)
    for i, (rule, failed) in enumerate(preds):
        earlier = [p for _, p in preds[:i]]
        guard = f" AND NOT {_any(earlier)}" if earlier else ""
        add(rule, f"{present}{guard} AND COALESCE({failed}, FALSE)")
    return checks


def _rule_check(ds: Dataset, rule: Rule) -> Check | None:
    """A cross-field rule; None when it can never fire on its own (see required_if below)."""
    if rule.kind == "le":
        operands = [ds.column(code) for code in (*rule.left, rule.right)]
        usable = " AND ".join(column_ok_sql(c) for c in operands)
        total = " + ".join(typed_expr(ds.column(code)) for code in rule.left)
        right = typed_expr(ds.column(rule.right or ""))
        fail = f"{usable} AND ({total}) > {right}"
        dated = [sql for c in operands if (sql := _written_as_date_sql(c))]
        if dated and len(rule.left) == 1:
            # a time written as a date only is stored at 00:00:00: compared with a timed value of
            # the same day it would seem earlier, so such pairs compare by date
            fail = (f"{usable} AND CASE WHEN {' OR '.join(dated)} THEN CAST({total} AS DATE) > CAST({right} AS DATE) "
                    f"ELSE ({total}) > {right} END")
        column = rule.left[0]
    elif rule.kind == "required_if":
        target = ds.column(rule.column or "")
        if target.required:
            # An empty required column is already reported by its own `required` check.
            return None
        if rule.when is None:
            raise ValueError(f"rule {rule.id}: required_if needs `when`")
        cond_col = ds.column(rule.when.column)
        fail = f"{column_ok_sql(cond_col)} AND {_condition_sql(rule.when)} AND {empty_sql(target)}"
        column = target.code
    elif rule.kind in ID_CARD_RULE_KINDS:
        fail = _id_card_rule_sql(ds, rule)
        column = rule.column or ""
    else:
        raise ValueError(f"rule {rule.id}: unknown kind {rule.kind!r}")
    return Check(f"{ds.id}.rule.{rule.id}", ds.id, column, "cross_field", rule.zh, rule.en, fail,
                 rule.severity)


def _written_as_date_sql(col: Column) -> str | None:
    """SQL true when a date-time column's value was written as a date only — the standard allows
    ``yyyy-MM-dd`` for it (every time layout of the spec has a ``:``); None for a column that
    cannot be."""
    if col.type != "datetime" or all("H" in f for f in col.formats):
        return None
    return f"strpos({ident(col.code)}, ':') = 0"


def _id_card_rule_sql(ds: Dataset, rule: Rule) -> str:
    """The column disagrees with what the (valid) ID number encodes: its birth date (digits 7–14
    of the canonical 18-digit form) or its sex (17th digit odd = male "1", even = female "2";
    a sex of 0 / 9, unknown / unspecified, is not compared). Both operands must have passed their
    own checks, so a wrong check digit is reported once, by the ID column."""
    target, id_col = ds.column(rule.column or ""), ds.column(rule.id_column or "")
    usable = f"{column_ok_sql(target)} AND {column_ok_sql(id_col)}"
    if rule.when is not None:
        usable += f" AND {column_ok_sql(ds.column(rule.when.column))} AND {_condition_sql(rule.when)}"
    canonical = f"hqms_normalise_id_card({ident(id_col.code)})"
    if rule.kind == "id_card_birth":
        differs = f"strftime({typed_expr(target)}, '%Y%m%d') <> substr({canonical}, 7, 8)"
    else:
        encoded = f"(CASE WHEN TRY_CAST(substr({canonical}, 17, 1) AS INTEGER) % 2 = 1 THEN '1' ELSE '2' END)"
        differs = f"{ident(target.code)} IN ('1', '2') AND {ident(target.code)} <> {encoded}"
    return f"{usable} AND COALESCE({differs}, FALSE)"


def _org_check(ds: Dataset) -> Check | None:
    if not ds.org_column:
        return None
    col = ds.column(ds.org_column)
    zh, en = _messages(ds, col, "org_mismatch")
    fail = f"{column_ok_sql(col)} AND COALESCE({typed_expr(col)} <> _uploader_org, FALSE)"
    return Check(f"{ds.id}.{col.code}.org_mismatch", ds.id, col.code, "org_mismatch", zh, en, fail)


def compile_checks(ds: Dataset) -> list[Check]:
    """Every check of a dataset: column rules in column order, then cross-field rules, then org."""
    checks = [check for col in ds.columns for check in _column_checks(ds, col)]
    checks += [c for rule in ds.rules if (c := _rule_check(ds, rule))]
    if org := _org_check(ds):
        checks.append(org)
    ids = [c.check_id for c in checks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{ds.id}: duplicate check ids")
    return checks


def failures_sql(ds: Dataset, table: str) -> str:
    """One query returning ``(_row, check_id, column, rule)`` for every failure in ``table``.

    ``table`` is a SQL table reference (quote it yourself if needed). The direct DuckDB path
    (no GX): the connection must have ``hqms.sqlmacros.install(con)`` run on it.
    """
    parts = [
        f"SELECT _row, {literal(c.check_id)} AS check_id, "
        f"{literal(c.column) if c.column else 'NULL'} AS \"column\", {literal(c.rule)} AS rule "
        f"FROM {table} WHERE {c.fail_sql}"
        for c in compile_checks(ds)
    ]
    return "\nUNION ALL\n".join(parts)
