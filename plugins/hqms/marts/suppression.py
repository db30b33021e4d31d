"""Complementary small-cell suppression of the published aggregates, run inside DuckDB.

Why complementary: masking only the counts of 1–4 (primary suppression) is undone by
subtraction — a province's total minus its other cities' published counts gives the masked
city back, a week minus its other six days gives the masked day. So every published aggregate
is treated as a system of additive relations, each "total = sum of parts":

* row: within one row (an area × period), a total and the columns that split it
  (``config.meta.row_totals`` in the dbt YAML: cases = outpatient + emergency + inpatient, …);
* column: one indicator of one period over the children of an area and the parent's own row
  (country → 南方/北方 → province → city, linked by ``parent_level`` / ``parent_code``);
* time: one indicator of one area over the days of an epidemiological week or of a month and
  the week's or month's own row.

Rule (docs/marts.md, "Complementary suppression"): mask every count of 1–4; then, while some
relation has exactly one masked cell, mask one more cell of it — the smallest non-zero part
(ties by position), else a zero part, else the total. At the fixed point no relation has
exactly one masked cell, so no masked cell equals a published total minus published cells,
and differencing cannot start anywhere. Values derived from a count (rates, money) are masked
with it. The choice depends on the data only, never on the run (rows are numbered by their
grain), so two publications of the same data mask the same cells.

The loop is plain SQL over two small tables (cells and relation memberships), so it runs in the
snapshot's DuckDB at any size the marts have, without pandas.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

#: Counts below this (and above zero) are masked in published exports.
SMALL_CELL = 5
#: The columns that identify one published row (those present in a table are used).
GRAIN = ("stream", "period_type", "period_start", "region_level", "region_code", "parent_level", "parent_code")


@dataclass(frozen=True)
class RowTotal:
    """One row relation: ``total`` equals the sum of ``parts`` in every row."""

    total: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class SuppressionSpec:
    """What to protect in one table (read from the dbt YAML by :func:`hqms.marts.publish.catalog`)."""

    counts: tuple[str, ...] = ()
    #: column → the counts it derives from; masked when any of them is
    derived: dict[str, tuple[str, ...]] = field(default_factory=dict)
    row_totals: tuple[RowTotal, ...] = ()


@dataclass(frozen=True)
class SuppressionResult:
    rows: int
    rows_with_masks: int
    primary_cells: int
    complementary_cells: int
    rounds: int


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _small(expr: str) -> str:
    return f"({expr} BETWEEN 1 AND {SMALL_CELL - 1})"


def _members_sql(spec: SuppressionSpec, columns: list[str]) -> str:
    """Every (relation key, cell, is_total) of the table held in ``_sup_src`` / ``_sup_cells``."""
    colno = {c: i for i, c in enumerate(spec.counts)}
    n = len(spec.counts)
    parts = []
    for k, rel in enumerate(spec.row_totals):
        for col in (rel.total, *rel.parts):
            parts.append(f"SELECT 'r{k}:' || _rid AS gkey, _rid * {n} + {colno[col]} AS cell, "
                         f"{'true' if col == rel.total else 'false'} AS is_total FROM _sup_src")
    if "parent_code" in columns:  # the area tree: a parent's row is the sum of its children's
        key = "concat_ws('|', {lvl}, {code}, s.period_type, s.period_start{extra}, c.colno)"
        extra = ", s.stream" if "stream" in columns else ""
        parts.append(f"SELECT {key.format(lvl='s.parent_level', code='s.parent_code', extra=extra)}, c.cell, false "
                     "FROM _sup_cells c JOIN _sup_src s USING (_rid) WHERE s.parent_code IS NOT NULL")
        parts.append(f"SELECT {key.format(lvl='s.region_level', code='s.region_code', extra=extra)}, c.cell, true "
                     "FROM _sup_cells c JOIN _sup_src s USING (_rid)")
    if "period_type" in columns:  # days add up to their epidemiological week and their month
        area = "s.region_level, s.region_code, coalesce(s.parent_code, '')" + (", s.stream" if "stream" in columns else "")
        for period in ("week", "month"):
            parts.append(f"SELECT concat_ws('|', '{period}', CAST(date_trunc('{period}', s.period_start) AS DATE), {area}, c.colno), "
                         "c.cell, false FROM _sup_cells c JOIN _sup_src s USING (_rid) WHERE s.period_type = 'day'")
            parts.append(f"SELECT concat_ws('|', '{period}', s.period_start, {area}, c.colno), c.cell, true "
                         f"FROM _sup_cells c JOIN _sup_src s USING (_rid) WHERE s.period_type = '{period}'")
    return " UNION ALL ".join(parts)


_ONE_MASKED = """
WITH g AS (
    SELECT m.gkey
    FROM _sup_members m JOIN _sup_cells c USING (cell)
    GROUP BY m.gkey
    HAVING count(*) FILTER (WHERE c.masked) = 1 AND count(*) >= 2
), candidates AS (
    SELECT m.gkey, m.cell, row_number() OVER (
        PARTITION BY m.gkey ORDER BY m.is_total, c.value = 0, c.value, m.cell) AS choice
    FROM _sup_members m JOIN g USING (gkey) JOIN _sup_cells c USING (cell)
    WHERE NOT c.masked
)
SELECT DISTINCT cell FROM candidates WHERE choice = 1
"""


def suppress(con: duckdb.DuckDBPyConnection, source: str, target: str, spec: SuppressionSpec,
             columns: list[str], *, complementary: bool = True) -> SuppressionResult:
    """``CREATE TABLE target`` as ``source`` with small cells masked (NULL) and a row flag.

    ``complementary=False`` applies the primary rule only — what the old per-hospital export did;
    the tests use it to show that the differencing attacker then succeeds.
    """
    missing = (set(spec.counts) | set(spec.derived) | {b for bs in spec.derived.values() for b in bs}
               | {c for r in spec.row_totals for c in (r.total, *r.parts)}) - set(columns)
    if missing:
        raise ValueError(f"{target}: small-cell columns not in the table: {sorted(missing)}")
    grain = [c for c in GRAIN if c in columns] or columns
    con.execute(f"CREATE OR REPLACE TEMP TABLE _sup_src AS SELECT row_number() OVER "
                f"(ORDER BY {', '.join(_q(c) for c in grain)}) AS _rid, * FROM {source}")
    n = max(len(spec.counts), 1)
    cells = [f"SELECT _rid, _rid * {n} + {i} AS cell, {i} AS colno, CAST({_q(c)} AS BIGINT) AS value, "
             f"coalesce({_small(_q(c))}, false) AS masked, coalesce({_small(_q(c))}, false) AS is_primary FROM _sup_src"
             for i, c in enumerate(spec.counts)]
    con.execute("CREATE OR REPLACE TEMP TABLE _sup_cells AS "
                + (" UNION ALL ".join(cells) if cells else
                   "SELECT 0::BIGINT AS _rid, 0::BIGINT AS cell, 0 AS colno, 0::BIGINT AS value, false AS masked, "
                   "false AS is_primary WHERE false"))
    rounds = 0
    if complementary and spec.counts:
        members = _members_sql(spec, columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _sup_members AS {members}" if members else
                    "CREATE OR REPLACE TEMP TABLE _sup_members (gkey VARCHAR, cell BIGINT, is_total BOOLEAN)")
        while True:
            chosen = con.execute(f"CREATE OR REPLACE TEMP TABLE _sup_chosen AS {_ONE_MASKED}; "
                                 "SELECT count(*) FROM _sup_chosen").fetchone()[0]
            if not chosen:
                break
            rounds += 1
            con.execute("UPDATE _sup_cells SET masked = true WHERE cell IN (SELECT cell FROM _sup_chosen)")
    flags = ", ".join(f"coalesce(bool_or(masked) FILTER (WHERE colno = {i}), false) AS m{i}"
                      for i in range(len(spec.counts))) or "false AS m_none"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _sup_flags AS SELECT s._rid, {flags} FROM _sup_src s "
                "LEFT JOIN _sup_cells c USING (_rid) GROUP BY s._rid")
    colno = {c: i for i, c in enumerate(spec.counts)}
    exprs = []
    for col in columns:
        bases = [col] if col in colno else list(spec.derived.get(col, ()))
        if bases:
            cond = " OR ".join(f"f.m{colno[b]}" for b in bases)
            exprs.append(f"CASE WHEN {cond} THEN NULL ELSE s.{_q(col)} END AS {_q(col)}")
        else:
            exprs.append(f"s.{_q(col)}")
    any_mask = " OR ".join(f"f.m{i}" for i in range(len(spec.counts))) or "false"
    con.execute(f"CREATE TABLE {target} AS SELECT {', '.join(exprs)}, ({any_mask}) AS small_cells_suppressed "
                "FROM _sup_src s JOIN _sup_flags f USING (_rid) ORDER BY s._rid")
    primary, extra = con.execute("SELECT count(*) FILTER (WHERE is_primary), "
                                 "count(*) FILTER (WHERE masked AND NOT is_primary) FROM _sup_cells").fetchone()
    rows, flagged = con.execute(f"SELECT count(*), count(*) FILTER (WHERE small_cells_suppressed) FROM {target}"
                                ).fetchone()
    for tmp in ("_sup_src", "_sup_cells", "_sup_members", "_sup_chosen", "_sup_flags"):
        con.execute(f"DROP TABLE IF EXISTS {tmp}")
    return SuppressionResult(rows, flagged, primary, extra, rounds)
