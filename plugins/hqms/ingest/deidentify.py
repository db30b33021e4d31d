"""Conforming staged rows → de-identified warehouse rows, at DuckDB speed.

What each spec column becomes is decided by its privacy class (``hqms.warehouse.derived_columns``):
typed value; keyed HMAC-SM3 pseudonym (+ SM4-GCM ciphertext); birth year and age band; city-level
region code; two-digit postcode prefix; or nothing. The SELECT is generated from the spec, so one
code path serves every dataset. Keyed crypto runs as vectorised Arrow UDFs, once per distinct
value of each vector (a lab file repeats one visit's identifiers on every item row); plaintext
identifiers never leave the batch's in-memory staging database.
"""
from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from hqms import crypto
from hqms.keys import Keyring
from hqms.rules import typed_expr, value_present_sql
from hqms.spec import Column, Dataset, reference_csv
from hqms.warehouse import META_COLUMNS, WarehouseColumn, derived_columns, table_columns

#: Age bands of the flu mart (years at the event date).
AGE_BANDS = ((0, 4, "0-4"), (5, 14, "5-14"), (15, 24, "15-24"), (25, 59, "25-59"), (60, 200, "60+"))
#: Separator of the natural-key parts (pseudonyms are hex; typed values cannot contain it unnoticed).
SEP = "\x1f"


#: Lineage columns the merge step adds to the staged rows before :func:`select_sql` runs.
LINEAGE = ("_m_upload_id", "_m_received_at", "_m_file")


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _row_keys(columns: list[pa.Array]) -> pa.Array:
    """An int64 per row, equal exactly when all ``columns`` are equal (NULL equals NULL)."""
    key: pa.Array | None = None
    for column in columns:
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes = encoded.indices.cast(pa.int64())
        key = codes if key is None else pc.add(pc.multiply(key, len(encoded.dictionary)), codes)
    return key


def on_distinct(fn: Callable[..., pa.Array], *columns: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``fn(*columns)`` computed once per distinct row of ``columns`` and spread back.

    Same result as calling ``fn`` on every row — for the ciphertext too: every enc column has a
    pseudonym twin that already shows which cells are equal, so sharing a nonce between equal
    cells of one vector reveals nothing more.
    """
    cols = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
    key = _row_keys(cols)
    distinct = pc.unique(key)
    if len(distinct) == len(key):
        return fn(*cols)
    first = pc.index_in(distinct, value_set=key)
    result = fn(*(pc.take(c, first) for c in cols))
    return pc.take(result, pc.index_in(key, value_set=distinct))


def register_udfs(con: duckdb.DuckDBPyConnection, keyring: Keyring) -> None:
    """Keyed functions used by the generated SELECT (keys stay in this process, never in SQL)."""
    patient = keyring.pseudonym_key("patient")
    record = keyring.pseudonym_key("record")
    field_id, field_key = keyring.field_key()

    def pid_patient(values: pa.Array) -> pa.Array:
        return on_distinct(lambda v: crypto.pseudonym_array(patient, v), values)

    def pid_record(orgs: pa.Array, values: pa.Array) -> pa.Array:
        return on_distinct(lambda o, v: crypto.pseudonym_array(record, v, context=o), orgs, values)

    def enc(values: pa.Array, aad: pa.Array) -> pa.Array:
        return on_distinct(lambda v, a: crypto.encrypt_array(field_id, field_key, v, a), values, aad)

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
    """SHA-256 of (dataset, org, natural-key values) over the *de-identified* output columns:
    typed values (equal for a record and its re-sends even when the exporter changed a date's
    format between days) and keyed pseudonyms in place of identifiers. The key therefore holds
    nothing the row does not already show, and costs no keyed hash of its own."""
    parts = [_lit(ds.id), '"_org_code"']
    for code in ds.natural_key:
        kept = {wc.role: wc.name for wc in derived_columns(ds.column(code))}
        name = kept.get("pid") or kept.get("value")
        if name is None:
            raise ValueError(f"{ds.id}: natural-key column {code} is neither kept nor pseudonymised")
        parts.append(f"coalesce(CAST(\"{name}\" AS VARCHAR), '')")
    return "sha256(" + f" || {_lit(SEP)} || ".join(parts) + ")"


def select_sql(ds: Dataset, source: str) -> str:
    """SELECT producing dw.<dataset> rows (META_COLUMNS order, then the derived columns) from
    staged rows that carry ``_uploader_org``, ``_row`` and the :data:`LINEAGE` columns, so the
    files of many uploads go through one statement."""
    meta = {
        "_org_code": "_uploader_org",
        "_upload_id": "_m_upload_id",
        "_received_at": "CAST(_m_received_at AS TIMESTAMPTZ)",
        "_source_file": "_m_file",
        "_source_row": "_row",
        "_loaded_at": "now()",
        "_key_id": "getvariable('hqms_field_key_id')",
    }
    exprs = [f"{meta[name]} AS \"{name}\"" for name, _ in META_COLUMNS if name != "_nk"]
    exprs += [f"{_expr(wc, ds)} AS \"{wc.name}\"" for wc in table_columns(ds)]
    inner = "SELECT " + ",\n  ".join(exprs) + f"\nFROM {source}"
    # ``_nk`` is META_COLUMNS[0]: the key leads, ``*`` keeps the rest in the table's order
    return f"SELECT {natural_key_expr(ds)} AS _nk, *\nFROM ({inner})"
