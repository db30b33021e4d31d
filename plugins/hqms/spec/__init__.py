"""The interface standard as data: one YAML file per dataset under ``spec/datasets``.

Every consumer (intake prefix checks, the generator, the loader's header mapping, the validation
rules and Great Expectations suites, de-identification, dbt sources) reads the spec through this
module, so a field is described once. The YAML schema is documented in ``spec/README.md``.
"""
from __future__ import annotations

import csv
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: libyaml's loader when available (the hqms_ spec is large; the pure-Python one takes seconds).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SPEC_DIR = Path(__file__).resolve().parent
DATASETS_DIR = SPEC_DIR / "datasets"
REFERENCE_DIR = SPEC_DIR.parent / "reference"

STREAMS = ("flu", "fever", "outpatient")
TYPES = ("string", "integer", "decimal", "date", "datetime")
DATE_FORMATS = ("yyyy-MM-dd", "yyyy-MM-dd HH:mm:ss", "YYYYMMDD", "yyyy-MM-dd HH:mm", "yyyy/MM/dd",
                "yyyy/MM/dd HH:mm:ss")
PRIVACY = ("none", "drop", "pseudonymise", "generalise")
PSEUDONYM_DOMAINS = ("patient", "record")
GENERALISERS = ("birth_date", "address", "postcode")
CHECKS = ("id_card", "uscc", "org_code", "medical_org_code", "icd10", "icd9cm3", "phone", "mobile",
          "postcode")
RULE_KINDS = ("le", "required_if", "id_card_birth", "id_card_sex")
#: Rule kinds that compare a column with what a resident ID number encodes (``id_column``).
ID_CARD_RULE_KINDS = ("id_card_birth", "id_card_sex")

#: Rule names used in error reports, in the order a column is checked. Only the first failing
#: rule of a (row, column) is reported, so one defect yields exactly one error.
COLUMN_RULES = ("required", "length", "type", "format", "range", "code_table", "check")
#: Row- and file-level rule names.
ROW_RULES = ("cross_field", "org_mismatch")
FILE_RULES = ("missing_column", "unknown_column", "csv_parse", "encoding", "empty_file", "blank_rows", "text_formula",
              "duplicate_key", "after_receipt", "format_hint", "excel_hint", "number_hint", "code_hint", "org_hint",
              "dictionary_hint", "outside_period")


#: Chinese column names of codes and numbers (``检验项目代码``, ``病理诊断编码1``, ``就诊卡号``).
_CODE_NAME = re.compile(r"(代码|编码|码|号)\d*$")


class SpecError(ValueError):
    """The spec data itself is inconsistent (caught by tests, never by hospitals)."""


@dataclass(frozen=True)
class Condition:
    """``{column: P7501, in: ["03"]}`` — true when the column's value is in the list."""

    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Column:
    code: str
    zh: str
    name: str
    type: str = "string"
    formats: tuple[str, ...] = ()
    max_length: int | None = None
    required: bool = False
    code_table: str | None = None
    values: dict[str, str] | None = None
    check: str | None = None
    check_when: Condition | None = None
    min: float | None = None
    max: float | None = None
    null_tokens: tuple[str, ...] = ()
    privacy: str = "none"
    pseudonym: str | None = None
    encrypt: bool = False
    generalise: str | None = None
    en: str = ""
    note: str = ""

    @property
    def personal(self) -> bool:
        """True when values must be masked in error reports and never stored in plain text."""
        return self.privacy != "none"

    @property
    def free_text(self) -> bool:
        """Text typed by hand — names and descriptions of diagnoses, items, results, wards: not
        personal by the standard, but where an ID or phone number typed by mistake would sit
        (the warehouse keeps it redacted, :mod:`hqms.ingest.deidentify`). Coded, checked or
        formatted columns, and codes and numbers by name (…代码, …编码, …号), are not: their
        digit strings are data."""
        return (self.privacy == "none" and self.type == "string" and (self.max_length or 11) >= 11
                and not (self.code_table or self.values or self.check or self.formats)
                and not _CODE_NAME.search(self.zh))


@dataclass(frozen=True)
class Rule:
    """A cross-field rule. ``le``: sum(left) <= right; ``required_if``: column required when;
    ``id_card_birth`` / ``id_card_sex``: column agrees with the birth date / sex that the ID number
    in ``id_column`` encodes (when ``when`` holds)."""

    id: str
    kind: str
    zh: str
    en: str
    left: tuple[str, ...] = ()
    right: str | None = None
    column: str | None = None
    when: Condition | None = None
    id_column: str | None = None
    #: "warning": reported to the hospital, the row still goes on (a plausibility check that
    #: real exports fail for reasons other than a wrong record, e.g. a mistyped birth date)
    severity: str = "error"

    @property
    def columns(self) -> tuple[str, ...]:
        cols = list(self.left)
        for extra in (self.right, self.column, self.id_column, self.when.column if self.when else None):
            if extra:
                cols.append(extra)
        return tuple(cols)


@dataclass(frozen=True)
class Dataset:
    id: str
    prefix: str
    stream: str
    title_zh: str
    title_en: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]
    join_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    org_column: str | None = None
    event_column: str | None = None
    rules: tuple[Rule, ...] = ()
    header_aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    defined_by_us: bool = False
    source: str = ""

    def column(self, code: str) -> Column:
        for col in self.columns:
            if col.code == code:
                return col
        raise KeyError(f"{self.id}: no column {code}")

    @functools.cached_property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.columns)

    @functools.cached_property
    def alias_map(self) -> dict[str, str]:
        """Every accepted header spelling (:func:`header_key` form) → canonical code: the codes,
        the header aliases of the spec (pinyin, …), and the standard's Chinese column names,
        which some exporters write as the header (``医疗机构代码``, ``年龄(岁)``)."""
        mapping = {header_key(code): code for code in self.codes}
        for scheme in self.header_aliases.values():
            for alias, code in scheme.items():
                mapping.setdefault(header_key(alias), code)
        for col in self.columns:
            mapping.setdefault(header_key(col.zh), col.code)
        return mapping

    def column_for_header(self, token: str) -> str | None:
        """The code a header field names, or None. Besides every :attr:`alias_map` spelling,
        a field naming one column twice, by code and by Chinese name, in either order
        (``P900(医疗机构代码)``, ``医疗机构代码（P900）``, ``P900_医疗机构代码``,
        ``JZSJ 就诊时间``): both halves must name the same column."""
        key = header_key(token)
        if (code := self.alias_map.get(key)) is not None:
            return code
        for first, second in _header_halves(key):
            code = self.alias_map.get(first)
            if code is not None and code == self.alias_map.get(second):
                return code
        return None


#: What may join a code and a name in one header field (besides brackets).
_HEADER_JOINERS = "-_:/.|"


def _header_halves(key: str) -> list[tuple[str, str]]:
    """Candidate (one half, other half) splits of a header key: ``A(B)`` at every opening
    bracket, and an ASCII head (a code) before the rest."""
    halves = []
    if key.endswith(")"):
        halves += [(key[:i].rstrip(_HEADER_JOINERS), key[i + 1:-1]) for i, ch in enumerate(key) if ch == "(" and i]
    ascii_head = len(key) - len(key.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"))
    halves += [(key[:i], key[i:].strip(_HEADER_JOINERS)) for i in range(1, ascii_head + 1)]
    return halves


def header_key(token: str) -> str:
    """How header spellings compare: NFKC (full-width letters and brackets as half-width),
    without blanks, upper-cased."""
    return "".join(unicodedata.normalize("NFKC", token).split()).upper()


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


def stream_of_files(filenames: list[str]) -> str | None:
    """The single stream that all the named files belong to, else None."""
    streams = {ds.stream for name in filenames if (ds := dataset_for_filename(name))}
    return streams.pop() if len(streams) == 1 else None


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
