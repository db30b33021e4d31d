"""The interface standard as data: one YAML file per dataset under ``spec/datasets``.

Every consumer (intake prefix checks, the generator, the loader's header mapping, the validation
rules and Great Expectations suites, de-identification, dbt sources) reads the spec through this
module, so a field is described once. The YAML schema is documented in ``spec/README.md``.

Three rooms, re-exported here so ``from hqms.spec import …`` is the one import: the streams and
their reporting calendar (:mod:`hqms.spec.streams`), the dataclasses (:mod:`hqms.spec.model`) and
the YAML reading (:mod:`hqms.spec.loader`).
"""
from __future__ import annotations

from hqms.spec.loader import (
    DATASETS_DIR,
    REFERENCE_DIR,
    SPEC_DIR,
    allowed_values,
    code_tables,
    dataset,
    dataset_for_filename,
    datasets,
    parse_dataset,
    reference_csv,
    stream_datasets,
)
from hqms.spec.model import (
    CHECKS,
    COLUMN_RULES,
    DATE_FORMATS,
    FILE_RULES,
    GENERALISERS,
    ID_CARD_RULE_KINDS,
    PRIVACY,
    PSEUDONYM_DOMAINS,
    ROW_RULES,
    RULE_KINDS,
    TYPES,
    Column,
    Condition,
    Dataset,
    Rule,
    SpecError,
    header_key,
)
from hqms.spec.streams import DAILY_STREAMS, MONTHLY_STREAMS, STREAM_TABLE, STREAMS, Stream, monthly_due_day, stream

__all__ = [
    "CHECKS", "COLUMN_RULES", "DAILY_STREAMS", "DATASETS_DIR", "DATE_FORMATS", "FILE_RULES", "GENERALISERS",
    "ID_CARD_RULE_KINDS", "MONTHLY_STREAMS", "PRIVACY", "PSEUDONYM_DOMAINS", "REFERENCE_DIR", "ROW_RULES",
    "RULE_KINDS", "SPEC_DIR", "STREAMS", "STREAM_TABLE", "TYPES", "Column", "Condition", "Dataset", "Rule",
    "SpecError", "Stream", "allowed_values", "code_tables", "dataset", "dataset_for_filename", "datasets",
    "header_key", "monthly_due_day", "parse_dataset", "reference_csv", "stream", "stream_datasets",
]
