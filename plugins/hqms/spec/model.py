"""The spec's model: the dataclasses a dataset's YAML becomes, and the vocabularies they use.

Kept apart from the YAML reading (:mod:`hqms.spec.loader`) so the types can be read, and
imported, without the loader; ``hqms.spec`` re-exports both.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

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
