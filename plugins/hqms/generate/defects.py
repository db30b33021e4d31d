"""Injected defects: each turns a conforming row into one that fails exactly one check.

A defect is accepted only when :func:`hqms.generate.conform.row_failures` of the changed row is
exactly ``[(column, rule)]`` as the manifest will state it; otherwise another column or kind is
tried. Kinds (weights are the mix a data manager sees; a kind is only used where the dataset has
a suitable column):

``missing_required``  a required value left empty (not the org or a key column) → ``required``
``unknown_code``      a value of the right length outside the code list → ``code_table``
``bad_date``          an impossible date (month 13, 30 February) in the column's layout → ``format``
``bad_check_digit``   an ID number whose check character is wrong → ``check``
``cross_field``       one ``le`` / ``required_if`` rule violated, operands valid → ``cross_field``
``wrong_org``         another registry hospital's code in the org column → ``org_mismatch``
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from hqms import validators
from hqms.generate import conform
from hqms.spec import ID_CARD_RULE_KINDS, Column, Dataset, Rule, allowed_values

KIND_WEIGHTS = {
    "missing_required": 0.30,
    "unknown_code": 0.20,
    "bad_date": 0.17,
    "bad_check_digit": 0.13,
    "cross_field": 0.12,
    "wrong_org": 0.08,
}
KIND_RULE = {"missing_required": "required", "unknown_code": "code_table", "bad_date": "format",
             "bad_check_digit": "check", "cross_field": "cross_field", "wrong_org": "org_mismatch"}

Row = dict[str, str]


class GeneratorBug(AssertionError):
    """A row the generator meant to be clean fails a check."""


@dataclass(frozen=True)
class Defect:
    kind: str
    column: str
    rule: str


@dataclass
class Injector:
    """Defects for one dataset uploaded by one hospital."""

    ds: Dataset
    org_code: str
    other_orgs: list[str]

    def __post_init__(self) -> None:
        #: Key columns are never touched: a defect must not turn into "another record".
        self.keys = keys = set(self.ds.natural_key) | {c for k in self.ds.join_keys.values() for c in k}
        cols = self.ds.columns
        self._candidates: dict[str, list] = {
            "missing_required": [c for c in cols if c.required and c.code != self.ds.org_column
                                 and c.code not in keys],
            "unknown_code": [c for c in cols if allowed_values(c) and c.code not in keys],
            "bad_date": [c for c in cols if c.type in ("date", "datetime") and c.code not in keys],
            "bad_check_digit": [c for c in cols if c.check == "id_card"],
            "cross_field": [r for r in self.ds.rules if r.severity == "error"],
            "wrong_org": [self.ds.column(self.ds.org_column)] if self.ds.org_column and self.other_orgs else [],
        }
        self.kinds = [k for k, v in self._candidates.items() if v]

    def inject(self, row: Row, rng: np.random.Generator) -> tuple[Row, Defect] | None:
        """A copy of ``row`` with one defect, or None when no kind fits this row."""
        if found := conform.row_failures(self.ds, row, self.org_code):
            raise GeneratorBug(f"{self.ds.id}: generated row already fails {found}")
        if not self.kinds:
            return None
        weights = np.array([KIND_WEIGHTS[k] for k in self.kinds])
        order = rng.choice(len(self.kinds), size=len(self.kinds), replace=False, p=weights / weights.sum())
        for k in order.tolist():
            kind = self.kinds[k]
            targets = self._candidates[kind]
            for t in rng.permutation(len(targets)).tolist():
                target = targets[t]
                changed = _MUTATORS[kind](self, target, dict(row), rng)
                if changed is None:
                    continue
                new_row, column = changed
                expected = [(column, KIND_RULE[kind])]
                if conform.row_failures(self.ds, new_row, self.org_code) == expected:
                    return new_row, Defect(kind, column, KIND_RULE[kind])
        return None


# ------------------------------------------------------------------ mutators (None = not applicable)

def _present(col: Column, row: Row) -> bool:
    value = row.get(col.code, "")
    return value != "" and value not in col.null_tokens


def _missing(inj: Injector, col: Column, row: Row, rng) -> tuple[Row, str] | None:
    if not _present(col, row):
        return None
    row[col.code] = ""
    return row, col.code


def _unknown(inj: Injector, col: Column, row: Row, rng) -> tuple[Row, str] | None:
    if not _present(col, row):
        return None
    codes = set(allowed_values(col) or ())
    width = len(row[col.code])
    limit = col.max_length or width
    for length in (width, width + 1, width - 1):
        if length < 1 or length > limit:
            continue
        start = int(rng.integers(0, 10 ** length))
        for step in range(10 ** min(length, 3)):
            candidate = f"{(start + step * 7) % 10 ** length:0{length}d}"
            if candidate not in codes:
                row[col.code] = candidate
                return row, col.code
    return None


def _bad_date(inj: Injector, col: Column, row: Row, rng) -> tuple[Row, str] | None:
    if not _present(col, row):
        return None
    value = row[col.code]
    fmt = next((f for f in col.formats if validators.parse_datetime(value, f)), None)
    if fmt is None:
        return None
    if fmt == "YYYYMMDD":
        variants = [value[:4] + "13" + value[6:], value[:4] + "0230"]
    else:
        sep = fmt[4]
        variants = [value[:5] + "13" + value[7:], value[:5] + "02" + sep + "30" + value[10:],
                    value[:4] + "/13/" + value[8:10] + value[10:]] if sep == "-" else \
                   [value[:5] + "13" + value[7:], value[:5] + "02" + sep + "30" + value[10:]]
    row[col.code] = variants[int(rng.integers(len(variants)))]
    return row, col.code


def _bad_check(inj: Injector, col: Column, row: Row, rng) -> tuple[Row, str] | None:
    value = row.get(col.code, "")
    if len(value) != 18 or not validators.id_card_valid(value):
        return None
    wrong = [c for c in validators.ID_CHECK_CHARS if c != value[17].upper()]
    row[col.code] = value[:17] + wrong[int(rng.integers(len(wrong)))]
    return row, col.code


def _shift(col: Column, value: str, delta: float) -> str | None:
    """``value`` moved by ``delta`` (yuan / units, or days for dates), in the value's own layout."""
    if col.type in ("date", "datetime"):
        fmt = next((f for f in col.formats if validators.parse_datetime(value, f)), None)
        if fmt is None:
            return None
        moved = validators.parse_datetime(value, fmt) + timedelta(days=delta)
        strf = validators.DATE_FORMATS[fmt][1]
        return moved.strftime(strf)
    if col.type == "integer":
        return str(int(value) + int(np.sign(delta) * max(1, abs(int(delta)))))
    places = len(value.split(".", 1)[1]) if "." in value else 0
    return f"{float(value) + delta:.{places}f}"


def _cross(inj: Injector, rule: Rule, row: Row, rng) -> tuple[Row, str] | None:
    ds = inj.ds
    if rule.kind in ID_CARD_RULE_KINDS:
        return _id_card_disagrees(inj, rule, row, rng)
    if rule.kind == "required_if":
        target = ds.column(rule.column or "")
        if target.required or rule.when is None or not _present(target, row):
            return None
        if row.get(rule.when.column) not in rule.when.values:
            row[rule.when.column] = rule.when.values[0]
        row[target.code] = ""
        return row, target.code
    operands = (*rule.left, rule.right or "")
    if not all(_present(ds.column(c), row) for c in operands):
        return None
    right = ds.column(rule.right or "")
    first = ds.column(rule.left[0])
    if right.type in ("date", "datetime"):
        gap = float(rng.integers(1, 4))
        options = [(right.code, _shift(right, row[right.code], -gap - _days_apart(ds, rule, row))),
                   (first.code, _shift(first, row[first.code], gap + _days_apart(ds, rule, row)))]
    else:
        total = sum(float(row[c]) for c in rule.left)
        excess = float(row[right.code]) - total + float(rng.uniform(1, 50))
        options = [(first.code, _shift(first, row[first.code], excess)),
                   (right.code, _shift(right, row[right.code], -excess))]
    for code, value in options:
        if value is None or code in inj.keys:  # never move a record's natural key
            continue
        trial = dict(row)
        trial[code] = value
        if conform.column_failure(ds.column(code), value, trial) is None and conform.rule_fails(ds, rule, trial):
            return trial, rule.left[0]
    return None


def _id_card_disagrees(inj: Injector, rule: Rule, row: Row, rng) -> tuple[Row, str] | None:
    """The birth date moved by a few days to a year, or the sex swapped, so that it no longer
    agrees with the (untouched, valid) ID number: the mistake of a hand-typed front page."""
    ds, code = inj.ds, rule.column or ""
    if rule.when is not None and row.get(rule.when.column) not in rule.when.values:
        return None
    if not _present(ds.column(code), row):
        return None
    if rule.kind == "id_card_birth":
        value = _shift(ds.column(code), row[code], -float(rng.integers(1, 366)))
    else:
        value = {"1": "2", "2": "1"}.get(row[code])
    if value is None:
        return None
    trial = dict(row)
    trial[code] = value
    if conform.rule_fails(ds, rule, trial):
        return trial, code
    return None


def _days_apart(ds: Dataset, rule: Rule, row: Row) -> float:
    left = conform.typed(ds.column(rule.left[0]), row[rule.left[0]])
    right = conform.typed(ds.column(rule.right or ""), row[rule.right or ""])
    return max(0.0, (right - left).total_seconds() / 86400)  # type: ignore[operator]


def _wrong_org(inj: Injector, col: Column, row: Row, rng) -> tuple[Row, str] | None:
    row[col.code] = inj.other_orgs[int(rng.integers(len(inj.other_orgs)))]
    return row, col.code


_MUTATORS: dict[str, Callable] = {
    "missing_required": _missing, "unknown_code": _unknown, "bad_date": _bad_date,
    "bad_check_digit": _bad_check, "cross_field": _cross, "wrong_org": _wrong_org,
}
