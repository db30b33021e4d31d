"""Reading the spec: one YAML file per dataset under ``spec/datasets``, checked for internal
consistency as it is parsed, and the reference tables shipped beside it."""
from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any

import yaml

from hqms.spec.model import (CHECKS, DATE_FORMATS, GENERALISERS, ID_CARD_RULE_KINDS, PRIVACY, PSEUDONYM_DOMAINS,
                              RULE_KINDS, TYPES, Column, Condition, Dataset, Rule, SpecError)
from hqms.spec.streams import STREAMS

#: libyaml's loader when available (the hqms_ spec is large; the pure-Python one takes seconds).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SPEC_DIR = Path(__file__).resolve().parent
DATASETS_DIR = SPEC_DIR / "datasets"
REFERENCE_DIR = SPEC_DIR.parent / "reference"


def _condition(raw: dict[str, Any] | None) -> Condition | None:
    if not raw:
        return None
    return Condition(column=str(raw["column"]), values=tuple(str(v) for v in raw["in"]))


def _column(raw: dict[str, Any]) -> Column:
    values = raw.get("values")
    return Column(
        code=str(raw["code"]),
        zh=str(raw["zh"]),
        name=str(raw["name"]),
        type=str(raw.get("type", "string")),
        formats=tuple(raw.get("formats", ())),
        max_length=raw.get("max_length"),
        required=bool(raw.get("required", False)),
        code_table=raw.get("code_table"),
        values={str(k): str(v) for k, v in values.items()} if values else None,
        check=raw.get("check"),
        check_when=_condition(raw.get("check_when")),
        min=raw.get("min"),
        max=raw.get("max"),
        null_tokens=tuple(str(t) for t in raw.get("null_tokens", ())),
        privacy=str(raw.get("privacy", "none")),
        pseudonym=raw.get("pseudonym"),
        encrypt=bool(raw.get("encrypt", False)),
        generalise=raw.get("generalise"),
        en=str(raw.get("en", "")),
        note=str(raw.get("note", "")),
    )


def _rule(raw: dict[str, Any]) -> Rule:
    left = raw.get("left", ())
    return Rule(
        id=str(raw["id"]),
        kind=str(raw["kind"]),
        zh=str(raw.get("zh", "")),
        en=str(raw.get("en", "")),
        left=tuple([left] if isinstance(left, str) else left),
        right=raw.get("right"),
        column=raw.get("column"),
        when=_condition(raw.get("when")),
        id_column=raw.get("id_column"),
        severity=str(raw.get("severity", "error")),
    )


def parse_dataset(raw: dict[str, Any]) -> Dataset:
    """Build a :class:`Dataset` from one YAML document and check it for internal consistency."""
    ds = Dataset(
        id=str(raw["id"]),
        prefix=str(raw["prefix"]),
        stream=str(raw["stream"]),
        title_zh=str(raw.get("title_zh", "")),
        title_en=str(raw.get("title_en", "")),
        columns=tuple(_column(c) for c in raw["columns"]),
        natural_key=tuple(raw.get("natural_key", ())),
        join_keys={k: tuple(v) for k, v in (raw.get("join_keys") or {}).items()},
        org_column=raw.get("org_column"),
        event_column=raw.get("event_column"),
        rules=tuple(_rule(r) for r in raw.get("rules") or ()),
        header_aliases={k: {str(a): str(c) for a, c in v.items()}
                        for k, v in (raw.get("header_aliases") or {}).items()},
        defined_by_us=bool(raw.get("defined_by_us", False)),
        source=str(raw.get("source", "")),
    )
    _check(ds)
    return ds


def _check(ds: Dataset) -> None:
    problems: list[str] = []
    codes = [c.code for c in ds.columns]
    names = [c.name for c in ds.columns]
    for label, seq in (("code", codes), ("name", names)):
        dupes = {x for x in seq if seq.count(x) > 1}
        if dupes:
            problems.append(f"duplicate column {label}s {sorted(dupes)}")
    if ds.stream not in STREAMS:
        problems.append(f"stream {ds.stream!r} not in {STREAMS}")
    if not ds.prefix.endswith("_"):
        problems.append(f"prefix {ds.prefix!r} must end with '_'")
    for col in ds.columns:
        where = f"{ds.id}.{col.code}"
        if col.type not in TYPES:
            problems.append(f"{where}: type {col.type!r}")
        if col.type in ("date", "datetime") and not col.formats:
            problems.append(f"{where}: date/datetime needs formats")
        for fmt in col.formats:
            if fmt not in DATE_FORMATS:
                problems.append(f"{where}: format {fmt!r} not in {DATE_FORMATS}")
        if col.privacy not in PRIVACY:
            problems.append(f"{where}: privacy {col.privacy!r}")
        if col.privacy == "pseudonymise" and col.pseudonym not in PSEUDONYM_DOMAINS:
            problems.append(f"{where}: pseudonymise needs pseudonym in {PSEUDONYM_DOMAINS}")
        if col.privacy == "generalise" and col.generalise not in GENERALISERS:
            problems.append(f"{where}: generalise needs generalise in {GENERALISERS}")
        if col.encrypt and col.privacy != "pseudonymise":
            problems.append(f"{where}: encrypt only applies to pseudonymised columns")
        if col.check and col.check not in CHECKS:
            problems.append(f"{where}: check {col.check!r} not in {CHECKS}")
        if col.code_table and col.values:
            problems.append(f"{where}: give code_table or values, not both")
        if col.check_when and col.check_when.column not in codes:
            problems.append(f"{where}: check_when names unknown column {col.check_when.column}")
    for key in (ds.natural_key, *ds.join_keys.values()):
        for code in key:
            if code not in codes:
                problems.append(f"key column {code} not in dataset")
    for code in (ds.org_column, ds.event_column):
        if code and code not in codes:
            problems.append(f"column {code} not in dataset")
    for rule in ds.rules:
        if rule.kind not in RULE_KINDS:
            problems.append(f"rule {rule.id}: kind {rule.kind!r}")
        for code in rule.columns:
            if code not in codes:
                problems.append(f"rule {rule.id}: unknown column {code}")
        if rule.kind in ID_CARD_RULE_KINDS:
            problems += _id_card_rule_problems(ds, rule, codes)
        if rule.severity not in ("error", "warning"):
            problems.append(f"rule {rule.id}: severity {rule.severity!r}")
    for scheme, mapping in ds.header_aliases.items():
        for alias, code in mapping.items():
            if code not in codes:
                problems.append(f"alias {scheme}.{alias} → unknown column {code}")
    if problems:
        raise SpecError(f"spec {ds.id}: " + "; ".join(problems))


def _id_card_rule_problems(ds: Dataset, rule: Rule, codes: list[str]) -> list[str]:
    """An ID-number rule needs an ``id_card``-checked id_column and a date (birth) or coded
    (sex) column to compare; anything else would silently never fire."""
    if rule.id_column not in codes or rule.column not in codes:
        return [f"rule {rule.id}: needs column and id_column"]
    problems = []
    if ds.column(rule.id_column).check != "id_card":
        problems.append(f"rule {rule.id}: id_column {rule.id_column} is not checked as id_card")
    target = ds.column(rule.column)
    if rule.kind == "id_card_birth" and target.type != "date":
        problems.append(f"rule {rule.id}: column {target.code} must be a date")
    if rule.kind == "id_card_sex" and target.code_table != "RC001":
        problems.append(f"rule {rule.id}: column {target.code} must use RC001 (sex)")
    return problems


@functools.cache
def datasets() -> dict[str, Dataset]:
    """All datasets by id, loaded once per process."""
    found: dict[str, Dataset] = {}
    for path in sorted(DATASETS_DIR.glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            ds = parse_dataset(yaml.load(fh, Loader=_YAML_LOADER))
        if ds.id in found:
            raise SpecError(f"dataset id {ds.id} defined twice")
        found[ds.id] = ds
    prefixes = [d.prefix for d in found.values()]
    if len(set(prefixes)) != len(prefixes):
        raise SpecError(f"file prefixes must be unique: {prefixes}")
    return found


def dataset(dataset_id: str) -> Dataset:
    return datasets()[dataset_id]


def stream_datasets(stream: str) -> list[Dataset]:
    return [d for d in datasets().values() if d.stream == stream]


def dataset_for_filename(filename: str) -> Dataset | None:
    """The dataset whose prefix the file's base name starts with (case-insensitive), else None.

    Entries may sit in a folder inside the zip, so only the last path component counts.
    """
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if not base.endswith(".csv"):
        return None
    for ds in datasets().values():
        if base.startswith(ds.prefix.lower()):
            return ds
    return None


@functools.cache
def code_tables() -> dict[str, dict[str, str]]:
    """RC code tables from ``reference/rc_codes.csv``: table id → {code: label}."""
    tables: dict[str, dict[str, str]] = {}
    path = REFERENCE_DIR / "rc_codes.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            tables.setdefault(row["table_id"], {})[row["code"]] = row["label_zh"]
    return tables


def allowed_values(col: Column) -> dict[str, str] | None:
    """The code list a column's values must come from (inline values or its RC table)."""
    if col.values:
        return col.values
    if col.code_table:
        try:
            return code_tables()[col.code_table]
        except KeyError as exc:
            raise SpecError(f"column {col.code}: unknown code table {col.code_table}") from exc
    return None


def reference_csv(name: str) -> list[dict[str, str]]:
    """Rows of a reference CSV shipped with the package (regions, flu lists, ...)."""
    with (REFERENCE_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))
