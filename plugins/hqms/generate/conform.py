"""The validator's verdict on one generated row, in Python.

The generator must know what the pipeline will report for a row before it writes it: a clean row
must raise nothing, and an injected defect exactly one error. This module applies the semantics
documented in :mod:`hqms.rules` (first failing column rule in ``COLUMN_RULES`` order; null tokens
count as present and skip the rest; cross-field rules only over present, valid operands; the org
check) with the check functions of :mod:`hqms.validators`. Tests compare it with the SQL rules.
"""
from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from hqms import validators
from hqms.rules import DECIMAL_RE, INTEGER_RE
from hqms.spec import ID_CARD_RULE_KINDS, Column, Dataset, Rule, allowed_values

CHECKS = {
    "id_card": validators.id_card_valid,
    "uscc": validators.uscc_valid,
    "org_code": validators.org_code_valid,
    "medical_org_code": validators.medical_org_code_valid,
    "icd10": validators.icd10_valid,
    "icd9cm3": validators.icd9cm3_valid,
    "phone": validators.phone_valid,
    "mobile": validators.mobile_valid,
    "postcode": validators.postcode_valid,
}

_INTEGER = re.compile(INTEGER_RE)
_DECIMAL = re.compile(DECIMAL_RE)

Row = dict[str, str]


_CODES: dict[int, frozenset[str] | None] = {}


def _codes(col: Column) -> frozenset[str] | None:
    """The column's code list as a set (memoised per column object: columns hold dicts, so they
    are not hashable)."""
    key = id(col)
    if key not in _CODES:
        codes = allowed_values(col)
        _CODES[key] = frozenset(codes) if codes else None
    return _CODES[key]


def column_failure(col: Column, value: str, row: Row) -> str | None:
    """The first column rule ``value`` fails (``required`` … ``check``), else None."""
    if value == "":
        return "required" if col.required else None
    if value in col.null_tokens:
        return None
    if col.max_length is not None and len(value) > col.max_length:
        return "length"
    if col.type == "integer" and not _INTEGER.fullmatch(value):
        return "type"
    if col.type == "decimal" and not _DECIMAL.fullmatch(value):
        return "type"
    if col.type in ("date", "datetime") and validators.parse_datetime(value, col.formats) is None:
        return "format"
    if col.type in ("integer", "decimal"):
        number = Decimal(value)
        if (col.min is not None and number < Decimal(str(col.min))) or \
                (col.max is not None and number > Decimal(str(col.max))):
            return "range"
    codes = _codes(col)
    if codes is not None and value not in codes:
        return "code_table"
    if col.check:
        applies = col.check_when is None or row.get(col.check_when.column, "") in col.check_when.values
        if applies and not CHECKS[col.check](value):
            return "check"
    return None


def typed(col: Column, value: str) -> Decimal | datetime | str | None:
    """The typed value of a present, valid cell (None when empty or a null token)."""
    if value == "" or value in col.null_tokens:
        return None
    if col.type in ("integer", "decimal"):
        return Decimal(value)
    if col.type in ("date", "datetime"):
        return validators.parse_datetime(value, col.formats)
    return value


def _usable(ds: Dataset, code: str, row: Row) -> bool:
    col = ds.column(code)
    value = row.get(code, "")
    return value != "" and value not in col.null_tokens and column_failure(col, value, row) is None


def rule_fails(ds: Dataset, rule: Rule, row: Row) -> bool:
    """True when the cross-field rule fires on ``row`` (see :mod:`hqms.rules`)."""
    if rule.kind == "le":
        operands = (*rule.left, rule.right or "")
        if not all(_usable(ds, code, row) for code in operands):
            return False
        values = [typed(ds.column(c), row[c]) for c in rule.left]
        right = typed(ds.column(rule.right or ""), row[rule.right or ""])
        total = values[0] if len(values) == 1 else sum(values)  # type: ignore[arg-type]
        return total > right  # type: ignore[operator]
    if rule.kind in ID_CARD_RULE_KINDS:
        return _id_card_rule_fails(ds, rule, row)
    target = ds.column(rule.column or "")
    if target.required or rule.when is None:
        return False
    return (_usable(ds, rule.when.column, row) and row[rule.when.column] in rule.when.values
            and row.get(target.code, "") == "")


def _id_card_rule_fails(ds: Dataset, rule: Rule, row: Row) -> bool:
    code, id_code = rule.column or "", rule.id_column or ""
    if not (_usable(ds, code, row) and _usable(ds, id_code, row)):
        return False
    if rule.when is not None and not (_usable(ds, rule.when.column, row)
                                      and row[rule.when.column] in rule.when.values):
        return False
    id_number = row[id_code]
    if not validators.id_card_valid(id_number):  # a check applied only under check_when
        return False
    if rule.kind == "id_card_birth":
        return typed(ds.column(code), row[code]).date() != validators.id_card_birth_date(id_number)  # type: ignore[union-attr]
    return row[code] in ("1", "2") and row[code] != validators.id_card_sex(id_number)


def row_failures(ds: Dataset, row: Row, org_code: str) -> list[tuple[str, str]]:
    """Every (column, rule) that would hold ``row`` back when ``org_code`` uploads it (warnings,
    which never do, are left out)."""
    found = [(col.code, rule) for col in ds.columns
             if (rule := column_failure(col, row.get(col.code, ""), row))]
    found += [(r.left[0] if r.kind == "le" else r.column or "", "cross_field")
              for r in ds.rules if r.severity == "error" and rule_fails(ds, r, row)]
    if ds.org_column and _usable(ds, ds.org_column, row) and row[ds.org_column] != org_code:
        found.append((ds.org_column, "org_mismatch"))
    return found
