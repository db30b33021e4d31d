"""Conforming staged rows → de-identified warehouse rows, at DuckDB speed.

What each spec column becomes is decided by its privacy class (``hqms.warehouse.derived_columns``):
typed value; keyed HMAC-SM3 pseudonym (+ SM4-GCM ciphertext); birth year and age band; city-level
region code; two-digit postcode prefix; or nothing. The SELECT is generated from the spec, so one
code path serves every dataset. Keyed crypto runs once per distinct identifier per batch
(:func:`build_keyed`); plaintext identifiers never leave the batch's in-memory staging database.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa

from hqms import crypto, identifiers
from hqms.keys import Keyring
from hqms.rules import typed_expr, value_present_sql
from hqms.spec import Column, Dataset, reference_csv
from hqms.sqltext import literal
from hqms.warehouse import META_COLUMNS, WarehouseColumn, derived_columns, table_columns

#: Age bands of the flu mart (years at the event date).
AGE_BANDS = ((0, 4, "0-4"), (5, 14, "5-14"), (15, 24, "15-24"), (25, 59, "25-59"), (60, 200, "60+"))
#: Separator of the natural-key parts (pseudonyms are hex; typed values cannot contain it unnoticed).
SEP = "\x1f"


#: Lineage columns the merge step adds to the staged rows before :func:`select_sql` runs.
LINEAGE = ("_m_upload_id", "_m_received_at", "_m_file")


#: Output SQL type per identifier kind.
KEYED_TYPES = {"patient": "VARCHAR", "record": "VARCHAR", "enc": "BLOB"}


def keyed_table(ds: Dataset, wc: WarehouseColumn) -> str:
    """Temporary table of one keyed column's distinct inputs and their outputs."""
    return f"hqms_keyed_{ds.id}_{wc.name}"


def _keyed_input(wc: WarehouseColumn) -> tuple[str, str, str] | None:
    """(kind, context SQL, value SQL) of a column computed with a key, else None."""
    col = wc.source
    if wc.role == "pid":
        if col.pseudonym == "patient":
            return "patient", "''", _normalised(col)
        return "record", "_uploader_org", _normalised(col)
    if wc.role == "enc":
        return "enc", literal(col.code), f'"{col.code}"'
    return None


#: Distinct identifiers remembered per kind, and handled per call: bounds the memo's memory
#: (≈ 300 bytes per entry) whatever the size of a round.
MEMO_LIMIT = 200_000
KEYED_CHUNK = 100_000


class KeyedMemo:
    """HMAC-SM3 pseudonyms and SM4-GCM ciphertext, each computed once per distinct input.

    One visit's identifiers recur on every prescription, lab and examination row and in each of
    those files; the memo makes every repeat a dictionary lookup. Sharing one ciphertext between
    equal cells reveals nothing new: every encrypted column has a pseudonym twin that already
    shows which cells are equal. A ``<col>_enc`` cell's GCM additional data is its column code
    (e.g. ``P13``), so a ciphertext cannot be moved to another column. The memo lives for one
    round and holds at most ``limit`` entries per kind (it starts over when full).
    """

    def __init__(self, keyring: Keyring, limit: int = MEMO_LIMIT) -> None:
        patient = keyring.pseudonym_key("patient")
        record = keyring.pseudonym_key("record")
        field_id, field_key = keyring.field_key()
        self.field_id = field_id
        self.limit = limit
        # the functions must not refer to ``self``: a reference cycle would keep each round's
        # memo (hundreds of MB) alive until Python's occasional full garbage collection
        self._compute = {
            "patient": lambda ctx, v: crypto.pseudonym_array(patient, v),
            "record": lambda ctx, v: crypto.pseudonym_array(record, v, context=ctx),
            "enc": lambda ctx, v: crypto.encrypt_array(field_id, field_key, v, ctx),
        }
        self.cache: dict[str, dict[tuple[str, str], object]] = {kind: {} for kind in KEYED_TYPES}

    def _run(self, kind: str, pairs: list[tuple[str, str]]) -> list:
        return self._compute[kind](pa.array([c for c, _ in pairs], pa.string()),
                                   pa.array([v for _, v in pairs], pa.string())).to_pylist()

    def outputs(self, kind: str, ctx: list[str], values: list[str]) -> list:
        """Outputs for (context, value) pairs, in order."""
        cache = self.cache[kind]
        pairs = list(zip(ctx, values))
        missing = [pair for pair in pairs if pair not in cache]
        if len(cache) + len(missing) > self.limit:
            cache.clear()
            if len(pairs) > self.limit:
                return self._run(kind, pairs)
            missing = pairs
        if missing:
            cache.update(zip(missing, self._run(kind, missing)))
        return [cache[pair] for pair in pairs]


def build_keyed(con: duckdb.DuckDBPyConnection, memo: KeyedMemo, ds: Dataset, source: str) -> None:
    """Fill one :func:`keyed_table` per keyed column of ``ds`` from the distinct inputs in
    ``source`` (its conforming rows), :data:`KEYED_CHUNK` inputs at a time.

    Why tables and not a Python UDF inside the SELECT: a UDF runs per row vector on DuckDB's
    worker threads, which then queue on the GIL; here the crypto runs once per distinct input,
    and :func:`select_sql` joins small per-column tables.
    """
    for wc in table_columns(ds):
        spec = _keyed_input(wc)
        if spec is None:
            continue
        kind, ctx, value = spec
        table = keyed_table(ds, wc)
        out_type = pa.string() if KEYED_TYPES[kind] == "VARCHAR" else pa.binary()
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (ctx VARCHAR, v VARCHAR, out {KEYED_TYPES[kind]})")
        distinct = con.execute(f"SELECT DISTINCT {ctx} AS ctx, {value} AS v FROM {source} "
                               f"WHERE {value_present_sql(wc.source)}").to_arrow_table()
        for start in range(0, distinct.num_rows, KEYED_CHUNK):
            part = distinct.slice(start, KEYED_CHUNK)
            ctx_list, values = part["ctx"].to_pylist(), part["v"].to_pylist()
            rows = pa.table({"ctx": part["ctx"], "v": part["v"],
                             "out": pa.array(memo.outputs(kind, ctx_list, values), out_type)})
            con.register("hqms_keyed_rows", rows)
            con.execute(f"INSERT INTO {table} SELECT * FROM hqms_keyed_rows")
            con.unregister("hqms_keyed_rows")
        del distinct
    con.execute(f"SET VARIABLE hqms_field_key_id = {literal(memo.field_id)}")


def install_regions(con: duckdb.DuckDBPyConnection) -> None:
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
    prov_map = "MAP {" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in provinces.items()) + "}"
    city_map = "MAP {" + ", ".join(
        f"{literal(p)}: [" + ", ".join(f"{{'n': {literal(n)}, 'c': {literal(c)}}}" for n, c in lst) + "]"
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


def install_redaction(con: duckdb.DuckDBPyConnection) -> None:
    """``hqms_redact_identifiers(text)``: :func:`hqms.identifiers.redact` as a DuckDB function.

    Why Python and not a regular expression in SQL: the definition normalises width and
    separators first (NFKC), which RE2 cannot, and it is the same one that masks reported values
    (:mod:`hqms.identifiers`). :func:`_redacted` calls it only for cells that pass the RE2 guard
    (seven number characters close together), so ordinary text never leaves DuckDB."""
    con.create_function("hqms_redact_identifiers", identifiers.redact, [duckdb.sqltype("VARCHAR")],
                        duckdb.sqltype("VARCHAR"), type="native", side_effects=False)


def _redacted(value: str) -> str:
    """``value`` (SQL) with identifiers replaced by :data:`hqms.identifiers.REDACTED` — a hospital
    that types a patient's ID or phone into a result or diagnosis text must not put it into the
    warehouse. Needs :func:`install_redaction` on the connection."""
    return (f"CASE WHEN regexp_matches({value}, {literal(identifiers.SQL_GUARD)}) "
            f"THEN hqms_redact_identifiers({value}) ELSE {value} END")


def _age_years(birth: str, event: str) -> str:
    return (f"((date_diff('month', {birth}, {event}) - "
            f"CASE WHEN day({event}) < day({birth}) THEN 1 ELSE 0 END) // 12)")


def _age_band(age: str) -> str:
    whens = " ".join(f"WHEN {age} BETWEEN {lo} AND {hi} THEN '{label}'" for lo, hi, label in AGE_BANDS)
    return f"CASE {whens} END"


def _expr(wc: WarehouseColumn, ds: Dataset, keyed_alias: str | None) -> str:
    col = wc.source
    present = value_present_sql(col)
    if keyed_alias is not None:
        return f"CASE WHEN {present} THEN {keyed_alias}.out END"
    if wc.role == "value":
        return _redacted(typed_expr(col)) if col.free_text else typed_expr(col)
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
    parts = [literal(ds.id), '"_org_code"']
    for code in ds.natural_key:
        kept = {wc.role: wc.name for wc in derived_columns(ds.column(code))}
        name = kept.get("pid") or kept.get("value")
        if name is None:
            raise ValueError(f"{ds.id}: natural-key column {code} is neither kept nor pseudonymised")
        parts.append(f"coalesce(CAST(\"{name}\" AS VARCHAR), '')")
    return "sha256(" + f" || {literal(SEP)} || ".join(parts) + ")"


def select_sql(ds: Dataset, source: str) -> str:
    """SELECT producing dw.<dataset> rows (META_COLUMNS order, then the derived columns) from
    staged rows that carry ``_uploader_org``, ``_row`` and the :data:`LINEAGE` columns, so the
    files of many uploads go through one statement; pseudonyms and ciphertext are looked up in
    the tables :func:`build_keyed` filled from the same ``source``."""
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
    joins = []
    for i, wc in enumerate(table_columns(ds)):
        spec = _keyed_input(wc)
        alias = None
        if spec:
            kind, ctx, value = spec
            alias = f"k{i}"
            joins.append(f"LEFT JOIN {keyed_table(ds, wc)} AS {alias} "
                         f"ON {alias}.ctx = {ctx} AND {alias}.v = {value}")
        exprs.append(f"{_expr(wc, ds, alias)} AS \"{wc.name}\"")
    inner = "SELECT " + ",\n  ".join(exprs) + f"\nFROM {source} AS s\n" + "\n".join(joins)
    # ``_nk`` is META_COLUMNS[0]: the key leads, ``*`` keeps the rest in the table's order
    return f"SELECT {natural_key_expr(ds)} AS _nk, *\nFROM ({inner})"
