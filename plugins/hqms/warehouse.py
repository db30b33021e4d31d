"""Shape of the de-identified warehouse, derived from the spec.

The warehouse is one DuckDB file (``Config.warehouse_path``):

* ``dw.<dataset>`` — one table per dataset, conforming rows only, de-identified: a column's
  privacy class decides what is kept (see ``spec/README.md``); one row per natural key per hospital
  (``_nk``), the latest received version wins.
* ``ops.uploads``, ``ops.upload_files``, ``ops.upload_errors`` — per-upload results for the
  submission marts and the data team (no personal values: error values are masked).
* ``ref.hospitals`` — the hospital registry (医院信息汇总表) without personal contact columns.
* ``marts.*`` — built by dbt.

Only one process may write the file at a time (DuckDB); Airflow serialises writers through the
``hqms_warehouse`` pool.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from hqms.rules import TYPED_SQL
from hqms.spec import Column, Dataset, datasets


#: Lineage and key columns every dw table carries.
META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_nk", "VARCHAR"),            # SHA-256 of (org, de-identified natural key values): identity across re-sends
    ("_org_code", "VARCHAR"),      # uploader's 医疗机构代码 (the key's implicit first part)
    ("_upload_id", "VARCHAR"),     # lineage: the upload the current version came from
    ("_received_at", "TIMESTAMPTZ"),
    ("_source_file", "VARCHAR"),
    ("_source_row", "BIGINT"),
    ("_loaded_at", "TIMESTAMPTZ"),
    ("_key_id", "VARCHAR"),        # id of the field-encryption key used for *_enc columns
)


@dataclass(frozen=True)
class WarehouseColumn:
    """One column of a dw table and the spec column it comes from."""

    name: str
    sql_type: str
    source: Column
    role: str  # value | pid | enc | year | age_band | region | prefix


def derived_columns(col: Column) -> list[WarehouseColumn]:
    """What the warehouse keeps of one spec column (nothing for ``drop``)."""
    if col.privacy == "none":
        return [WarehouseColumn(col.name, TYPED_SQL[col.type], col, "value")]
    if col.privacy == "pseudonymise":
        out = [WarehouseColumn(f"{col.name}_pid", "VARCHAR", col, "pid")]
        if col.encrypt:
            out.append(WarehouseColumn(f"{col.name}_enc", "BLOB", col, "enc"))
        return out
    if col.privacy == "generalise":
        if col.generalise == "birth_date":
            return [WarehouseColumn(f"{col.name}_year", "INTEGER", col, "year"),
                    WarehouseColumn(f"{col.name}_age_band", "VARCHAR", col, "age_band")]
        if col.generalise == "address":
            return [WarehouseColumn(f"{col.name}_region", "VARCHAR", col, "region")]
        if col.generalise == "postcode":
            return [WarehouseColumn(f"{col.name}_prefix", "VARCHAR", col, "prefix")]
    return []


def table_columns(ds: Dataset) -> list[WarehouseColumn]:
    return [wc for col in ds.columns for wc in derived_columns(col)]


def create_table_sql(ds: Dataset) -> str:
    cols = [f'"{n}" {t}' for n, t in META_COLUMNS]
    cols += [f'"{wc.name}" {wc.sql_type}' for wc in table_columns(ds)]
    return f"CREATE TABLE IF NOT EXISTS dw.{ds.id} (\n  " + ",\n  ".join(cols) + "\n)"


OPS_DDL = (
    """CREATE TABLE IF NOT EXISTS ops.uploads (
        upload_id VARCHAR PRIMARY KEY, stream VARCHAR, org_code VARCHAR, channel VARCHAR,
        file_name VARCHAR, sha256 VARCHAR, size_bytes BIGINT, received_at TIMESTAMPTZ,
        status VARCHAR, message_zh VARCHAR, message_en VARCHAR, record_count BIGINT,
        conforming_count BIGINT, error_count BIGINT, warning_count BIGINT,
        processed_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS ops.upload_files (
        upload_id VARCHAR, file_name VARCHAR, dataset VARCHAR, stream VARCHAR,
        record_count BIGINT, conforming_count BIGINT, period_start DATE, period_end DATE)""",
    # the event date a replaced record had, when its new version moved it to another date: the
    # incremental marts must rebuild the old date too (they only see the new rows' dates)
    """CREATE TABLE IF NOT EXISTS ops.moved_periods (
        dataset VARCHAR, org_code VARCHAR, period_date DATE, moved_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS ops.upload_errors (
        upload_id VARCHAR, seq BIGINT, file_name VARCHAR, "row" BIGINT, column_code VARCHAR,
        rule VARCHAR, check_id VARCHAR, severity VARCHAR, message_zh VARCHAR, message_en VARCHAR,
        value_masked VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS ref.hospitals (
        org_code VARCHAR PRIMARY KEY, org_code9 VARCHAR, uscc VARCHAR, licence_no VARCHAR,
        name VARCHAR, province_code VARCHAR, city_code VARCHAR, city_name VARCHAR,
        medicine_type VARCHAR, category VARCHAR, level VARCHAR, grade VARCHAR)""",
)


def ensure_schema(con: duckdb.DuckDBPyConnection, *, constraints: bool = True) -> None:
    """Create every schema and table that does not exist yet (idempotent, cheap).

    ``constraints=False`` leaves out the PRIMARY KEYs, for a DuckLake warehouse (DuckLake has
    no keys or indexes; nothing relies on them: every writer replaces rows by DELETE + INSERT)."""
    for schema in ("dw", "ops", "ref"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for ddl in OPS_DDL:
        con.execute(ddl if constraints else ddl.replace(" PRIMARY KEY", ""))
    for ds in datasets().values():
        con.execute(create_table_sql(ds))
