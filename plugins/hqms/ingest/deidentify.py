"""Conforming staged rows → de-identified warehouse rows, at DuckDB speed.

What each spec column becomes is decided by its privacy class (``hqms.warehouse.derived_columns``):
typed value; keyed HMAC-SM3 pseudonym (+ SM4-GCM ciphertext); birth year and age band; city-level
region code; two-digit postcode prefix; or nothing. The SELECT is generated from the spec, so one
code path serves every dataset. Keyed crypto runs as vectorised Arrow UDFs; plaintext identifiers
never leave the staging file, which is deleted after the upload is merged.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa

from hqms import crypto
from hqms.keys import Keyring
from hqms.rules import typed_expr, value_present_sql
from hqms.spec import Column, Dataset, reference_csv
from hqms.warehouse import META_COLUMNS, WarehouseColumn, table_columns

#: Age bands of the flu mart (years at the event date).
AGE_BANDS = ((0, 4, "0-4"), (5, 14, "5-14"), (15, 24, "15-24"), (25, 59, "25-59"), (60, 200, "60+"))
#: Separator for composite HMAC inputs: cannot occur in CSV text fields we accept.
SEP = "\x1f"


#: Lineage columns the merge step adds to the staged rows before :func:`select_sql` runs.
LINEAGE = ("_m_upload_id", "_m_received_at", "_m_file")


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def register_udfs(con: duckdb.DuckDBPyConnection, keyring: Keyring) -> None:
    """Keyed functions used by the generated SELECT (keys stay in this process, never in SQL)."""
    patient = keyring.pseudonym_key("patient")
    record = keyring.pseudonym_key("record")
    field_id, field_key = keyring.field_key()

    def pid_patient(values: pa.Array) -> pa.Array:
        return crypto.pseudonym_array(patient, values)

    def pid_record(orgs: pa.Array, values: pa.Array) -> pa.Array:
        return crypto.pseudonym_array(record, values, context=orgs)

    def enc(values: pa.Array, aad: pa.Array) -> pa.Array:
        return crypto.encrypt_array(field_id, field_key, values, aad)

    for name in ("hqms_pid_patient", "hqms_pid_record", "hqms_enc"):
        try:
            con.remove_function(name)
        except duckdb.InvalidInputException:
            pass
    con.create_function("hqms_pid_patient", pid_patient, ["VARCHAR"], "VARCHAR", type="arrow",
                        null_handling="special", side_effects=False)
    con.create_function("hqms_pid_record", pid_record, ["VARCHAR", "VARCHAR"], "VARCHAR", type="arrow",
                        null_handling="special", side_effects=False)
    con.create_function("hqms_enc", enc, ["VARCHAR", "VARCHAR"], "BLOB", type="arrow",
                        null_handling="special", side_effects=True)
    _install_regions(con)
    con.execute(f"SET VARIABLE hqms_field_key_id = {_lit(field_id)}")


def _install_regions(con: duckdb.DuckDBPyConnection) -> None:
    """``hqms_region_of(address)``: city-level GB/T 2260 code (province when no city matches).

    Provinces are recognised by the first two characters of the address (unique among the 34
    provincial units), then that province's cities by name. Built as a SQL macro over constant
    maps so it runs inside DuckDB's vectorised engine; county detail is deliberately dropped.
    """
    regions = reference_csv("regions.csv")
    provinces = {r["name_zh"][:2]: r["region_code"] for r in regions if r["level"] == "province"}
    cities: dict[str, list[tuple[str, str]]] = {}
    for r in regions:
        if r["level"] == "city":
            cities.setdefault(r["province_code"], []).append((r["name_zh"], r["region_code"]))
    prov_map = "MAP {" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in provinces.items()) + "}"
    city_map = "MAP {" + ", ".join(
        f"{_lit(p)}: [" + ", ".join(f"{{'n': {_lit(n)}, 'c': {_lit(c)}}}" for n, c in lst) + "]"
        for p, lst in cities.items()) + "}"
    con.execute(f"""CREATE OR REPLACE TEMP MACRO hqms_city_of(addr, prov) AS coalesce(
        list_filter(coalesce({city_map}[left(prov, 2)], []), c -> contains(addr, c.n))[1].c, prov)""")
    con.execute(f"CREATE OR REPLACE TEMP MACRO hqms_region_of(addr) AS "
                f"hqms_city_of(addr, {prov_map}[left(addr, 2)])")


def _normalised(col: Column) -> str:
    """The identifier text that is hashed: ID numbers canonicalised so 15- and 18-digit forms of one
    person give one pseudonym; other identifiers upper-cased without surrounding blanks."""
    raw = f'"{col.code}"'
    if col.check == "id_card":
        return f"coalesce(hqms_normalise_id_card({raw}), upper({raw}))"
    return f"upper({raw})"


def _age_years(birth: str, event: str) -> str:
    return (f"((date_diff('month', {birth}, {event}) - "
            f"CASE WHEN day({event}) < day({birth}) THEN 1 ELSE 0 END) // 12)")


def _age_band(age: str) -> str:
    whens = " ".join(f"WHEN {age} BETWEEN {lo} AND {hi} THEN '{label}'" for lo, hi, label in AGE_BANDS)
    return f"CASE {whens} END"


def _expr(wc: WarehouseColumn, ds: Dataset) -> str:
    col = wc.source
    present = value_present_sql(col)
    if wc.role == "value":
        return typed_expr(col)
    if wc.role == "pid":
        if col.pseudonym == "patient":
            return f"CASE WHEN {present} THEN hqms_pid_patient({_normalised(col)}) END"
        return f"CASE WHEN {present} THEN hqms_pid_record(_uploader_org, {_normalised(col)}) END"
    if wc.role == "enc":
        return f"CASE WHEN {present} THEN hqms_enc(\"{col.code}\", {_lit(ds.id + '.' + col.code)}) END"
    if wc.role == "year":
        return f"year({typed_expr(col)})::INTEGER"
    if wc.role == "age_band":
        if not ds.event_column:
            return "NULL::VARCHAR"
        event = f"CAST({typed_expr(ds.column(ds.event_column))} AS DATE)"
        return _age_band(_age_years(f"CAST({typed_expr(col)} AS DATE)", event))
    if wc.role == "region":
        return f"CASE WHEN {present} THEN hqms_region_of(\"{col.code}\") END"
    if wc.role == "prefix":
        return f"CASE WHEN {present} THEN left(\"{col.code}\", 2) END"
    raise ValueError(f"unknown warehouse role {wc.role}")


def natural_key_expr(ds: Dataset) -> str:
    """HMAC of (org, dataset, typed natural-key values): equal for a record and its re-sends even
    when the exporter changed a date's format between days."""
    parts = [_lit(ds.id)] + [f"coalesce(CAST({typed_expr(ds.column(c))} AS VARCHAR), '')"
                             for c in ds.natural_key]
    joined = f" || {_lit(SEP)} || ".join(parts)
    return f"hqms_pid_record(_uploader_org, {joined})"


def select_sql(ds: Dataset, source: str) -> str:
    """SELECT producing dw.<dataset> rows (META_COLUMNS order, then the derived columns) from
    staged rows that carry ``_uploader_org``, ``_row`` and the :data:`LINEAGE` columns, so the
    files of many uploads go through one statement."""
    meta = {
        "_nk": natural_key_expr(ds),
        "_org_code": "_uploader_org",
        "_upload_id": "_m_upload_id",
        "_received_at": "CAST(_m_received_at AS TIMESTAMPTZ)",
        "_source_file": "_m_file",
        "_source_row": "_row",
        "_loaded_at": "now()",
        "_key_id": "getvariable('hqms_field_key_id')",
    }
    exprs = [f"{meta[name]} AS \"{name}\"" for name, _ in META_COLUMNS]
    exprs += [f"{_expr(wc, ds)} AS \"{wc.name}\"" for wc in table_columns(ds)]
    return "SELECT " + ",\n  ".join(exprs) + f"\nFROM {source}"
