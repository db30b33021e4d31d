"""Spec-driven column values: one generator per column, chosen from the spec, never by hand.

A dataset's rows start as ``{code: list[str]}`` (raw cell text, ``""`` = null) built column by column:
the stream simulation *binds* the columns that carry linked meaning (who the patient is, when the
visit was, which diagnosis, which lab result …) and every other column gets a value from
:func:`generic`, picked by the column's check, code list, type and Chinese name and bounded by its
length and range. Optional columns are filled at a realistic rate; required ones always.
:func:`repair` then enforces the spec's cross-field rules that involve generic columns, so a row
without an injected defect conforms to every rule of the spec.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hqms.generate import conform
from hqms.generate.people import People, landlines, mobiles, names
from hqms.generate.registry import Hospital
from hqms.generate.timefmt import format_times
from hqms.spec import Column, Dataset, allowed_values

Cols = dict[str, list[str]]

#: Fill rates of optional columns the simulation does not bind.
FILL_CODED = 0.75
FILL_TEXT = 0.45
FILL_NUMBER = 0.6
FILL_DATE = 0.5

#: Comorbidities and other diagnoses (ICD-10 国家临床版2.0 code, name).
COMORBIDITIES = (
    ("I10.x00", "高血压"), ("E11.900", "2型糖尿病"), ("J44.900", "慢性阻塞性肺疾病"),
    ("I25.103", "冠状动脉粥样硬化性心脏病"), ("J45.900", "支气管哮喘"), ("N18.900", "慢性肾脏病"),
    ("E78.500", "高脂血症"), ("I48.900", "心房颤动"), ("K21.900", "胃食管反流病"),
    ("D64.900", "贫血"), ("E03.900", "甲状腺功能减退症"), ("I63.900", "脑梗死"),
)
#: Procedures (ICD-9-CM-3 国家临床版3.0 code, name).
PROCEDURES = (
    ("96.0400", "气管内插管"), ("96.7100", "持续性有创机械通气小于96小时"),
    ("93.9000", "无创机械通气"), ("87.4400", "胸部X线检查"), ("88.0100", "腹部CT检查"),
    ("33.2400", "支气管镜检查"), ("38.9300", "静脉导管插入术"), ("99.1800", "电解质注射"),
)
_FILLER = ("无特殊", "详见病历", "未见明显异常", "一般情况可", "无", "按医嘱执行")
_PERSON_WORDS = ("姓名", "医师", "医生", "护士", "主任", "编码员", "术者", "助", "联系人")


@dataclass
class Context:
    """What a generic value may depend on: the hospital, each row's event time and patient."""

    hospital: Hospital
    times: np.ndarray             # datetime64[s], one per row
    people: People | None = None


def pick(rng: np.random.Generator, col: Column, n: int,
         preferred: Mapping[str, float] | None = None) -> list[str]:
    """``n`` codes of the column's code list, weighted by ``preferred`` where those codes exist
    (codes outside the list are ignored, so a spec change can never produce an invalid code)."""
    codes = list(allowed_values(col) or {})
    if not codes:
        raise ValueError(f"{col.code} has no code list")
    weights = {c: w for c, w in (preferred or {}).items() if c in codes and w > 0}
    if weights:
        keys = list(weights)
        p = np.array([weights[k] for k in keys], dtype=float)
        return np.asarray(keys, dtype=object)[rng.choice(len(keys), size=n, p=p / p.sum())].tolist()
    leaf = [c for c in codes if not c.startswith("9") or len(codes) < 3] or codes
    return np.asarray(leaf, dtype=object)[rng.integers(len(leaf), size=n)].tolist()


def money(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Amounts in yuan with two decimals, log-uniform between ``lo`` and ``hi``."""
    return np.round(np.exp(rng.uniform(np.log(lo), np.log(hi), size=n)), 2)


def fmt_money(values: np.ndarray) -> list[str]:
    return [f"{v:.2f}" for v in values.tolist()]


def fmt_time(col: Column, values: np.ndarray) -> list[str]:
    """Times in the column's first (preferred) format."""
    return format_times(values, col.formats[0])


def fmt_int(values: np.ndarray) -> list[str]:
    return [str(v) for v in values.tolist()]


def _fit(col: Column, values: list[str]) -> list[str]:
    if col.max_length is None:
        return values
    m = int(col.max_length)
    return [v[:m] for v in values]


def _text(col: Column, rng: np.random.Generator, n: int, ctx: Context) -> list[str]:
    """Free text / identifiers for a string column without a code list or check."""
    zh = col.zh
    p = ctx.people
    if col.null_tokens and rng.random() < 0.5:
        return [col.null_tokens[0]] * n
    if any(w in zh for w in _PERSON_WORDS):
        return names(rng, n)
    if ("住址" in zh or "地址" in zh) and p is not None and p.n == n:
        return list(p.address)
    if "电话" in zh:
        return mobiles(rng, n)
    if "机构名称" in zh or "医院名称" in zh:
        return [ctx.hospital.name] * n
    if "病房" in zh:
        return [f"{int(k)}病区" for k in rng.integers(1, 30, size=n)]
    if "号" in zh or "流水" in zh or "代码" in zh or "码" in zh:
        width = min(int(col.max_length or 10), 10)
        return [f"{v:0{width}d}" for v in rng.integers(0, 10 ** width, size=n).tolist()]
    return np.asarray(_FILLER, dtype=object)[rng.integers(len(_FILLER), size=n)].tolist()


def _number(col: Column, rng: np.random.Generator, n: int) -> list[str]:
    lo = 0.0 if col.min is None else float(col.min)
    if col.type == "integer":
        hi = float(col.max) if col.max is not None else lo + 10
        hi = min(hi, lo + 30)
        return fmt_int(rng.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1, size=n))
    hi = float(col.max) if col.max is not None else 800.0
    return fmt_money(np.clip(money(rng, n, max(lo, 1.0), max(hi, 2.0)), lo, hi))


def generic(col: Column, rng: np.random.Generator, n: int, ctx: Context) -> list[str]:
    """Conforming values for ``col`` (every row filled; :func:`fill` decides which stay)."""
    h = ctx.hospital
    if col.check == "medical_org_code":
        return [h.org_code] * n
    if col.check == "uscc":
        return [h.uscc] * n
    if col.check == "org_code":
        return [h.org_code9] * n
    if col.check == "id_card" and ctx.people is not None and ctx.people.n == n:
        return list(ctx.people.id_number)
    if col.check == "icd10":
        return np.asarray([c for c, _ in COMORBIDITIES], dtype=object)[
            rng.integers(len(COMORBIDITIES), size=n)].tolist()
    if col.check == "icd9cm3":
        return np.asarray([c for c, _ in PROCEDURES], dtype=object)[
            rng.integers(len(PROCEDURES), size=n)].tolist()
    if col.check == "mobile":
        return mobiles(rng, n)
    if col.check == "phone":
        return landlines(rng, n, h.area_code) if rng.random() < 0.5 else mobiles(rng, n)
    if col.check == "postcode":
        return [h.postcode] * n
    if allowed_values(col):
        return _fit(col, pick(rng, col, n))
    if col.type in ("date", "datetime"):
        back = rng.integers(0, 3 * 86400, size=n).astype("timedelta64[s]")
        return fmt_time(col, ctx.times - back)
    if col.type in ("integer", "decimal"):
        return _number(col, rng, n)
    return _fit(col, _text(col, rng, n, ctx))


def _fill_rate(col: Column) -> float:
    if allowed_values(col) or col.check:
        return FILL_CODED
    if col.type in ("integer", "decimal"):
        return FILL_NUMBER
    if col.type in ("date", "datetime"):
        return FILL_DATE
    return FILL_TEXT


def fill(ds: Dataset, n: int, rng: np.random.Generator, bound: Mapping[str, list[str]],
         ctx: Context) -> Cols:
    """Every column of ``ds``: the bound ones as given, the rest from :func:`generic`."""
    cols: Cols = {}
    for col in ds.columns:
        if col.code in bound:
            values = list(bound[col.code])
            if len(values) != n:
                raise ValueError(f"{ds.id}.{col.code}: {len(values)} values for {n} rows")
            codes = allowed_values(col)
            if codes is not None and not set(values) <= set(codes) | {""}:
                raise ValueError(f"{ds.id}.{col.code}: codes {sorted(set(values) - set(codes) - {''})} "
                                 "are not in the spec's code list")
            cols[col.code] = values
            continue
        values = generic(col, rng, n, ctx)
        if not col.required:
            keep = (rng.random(n) < _fill_rate(col)).tolist()
            values = [v if k else "" for v, k in zip(values, keep)]
        cols[col.code] = values
    repair(ds, cols, rng, ctx, generic_codes={c.code for c in ds.columns if c.code not in bound})
    return cols


def repair(ds: Dataset, cols: Cols, rng: np.random.Generator, ctx: Context,
           generic_codes: set[str]) -> None:
    """Make generic values obey the spec's cross-field rules.

    ``required_if``: a missing target gets a value. ``le`` over a generic operand: rows that
    break it lose their optional generic operands (the exporter had nothing to send). Rules
    whose operands are all bound are the simulation's responsibility and are not re-checked.
    """
    n = len(next(iter(cols.values()))) if cols else 0
    for rule in ds.rules:
        if rule.kind == "required_if" and rule.when is not None:
            target = ds.column(rule.column or "")
            cond = cols[rule.when.column]
            need = [i for i in range(n) if cond[i] in rule.when.values and cols[target.code][i] == ""]
            if need:
                values = generic(target, rng, n, ctx)
                for i in need:
                    cols[target.code][i] = values[i]
    for rule in ds.rules:
        if rule.kind != "le" or not set(rule.columns) & generic_codes:
            continue
        droppable = [c for c in rule.columns if c in generic_codes and not ds.column(c).required]
        for i in range(n):
            row = {c: cols[c][i] for c in rule.columns}
            if rule.when:
                row[rule.when.column] = cols[rule.when.column][i]
            if conform.rule_fails(ds, rule, row):
                if not droppable:
                    raise ValueError(f"{ds.id}: rule {rule.id} broken by required generic values")
                for c in droppable:
                    cols[c][i] = ""
