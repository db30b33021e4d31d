"""The analysts' published aggregates: exact where shown, and masked cells stay unknown.

A real dbt build on the synthetic warehouse of test_dbt_marts, then ``hqms.marts.publish`` into a
real snapshot. For every published aggregate:

* the relations the suppression protects really hold in the exact (warehouse) table — row totals,
  parent area = sum of its children, week and month = sum of their days;
* every published value equals the exact one, and wherever nothing in a relation is masked the
  total recomputed from published rows equals the exact total;
* an attacker that knows every relation and every published value recovers no masked cell —
  neither by differencing (one unknown in a relation, repeated until nothing changes) nor by
  solving the whole linear system exactly; with the primary rule alone the same attacker does
  recover cells (so the attack is real);
* weekly and monthly figures equal a recomputation from the warehouse's dw tables (test_dbt_marts'
  SQL written from the definitions, not from the dbt models).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy
import pytest

from hqms import config as hqms_config
from hqms.marts import dbt, publish
from hqms.marts.suppression import SuppressionSpec, suppress

import test_dbt_marts as synthetic

pytestmark = pytest.mark.slow

AGGREGATES = ("agg_flu", "agg_fever", "agg_outpatient")
KEY = ("period_type", "period_start", "region_level", "region_code", "parent_code")

Cell = tuple[tuple, str]
Relation = tuple[Cell, list[Cell]]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hqms_config.Config]:
    cfg = synthetic._config(tmp_path_factory.mktemp("published_home"))
    synthetic.populate(cfg.warehouse_path)
    dbt.build(cfg=cfg)
    publish.publish(cfg, upload=False)
    yield cfg


def _rows(path: Path, table: str) -> dict[tuple, dict]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cur.description]
        return {tuple(r[k] for k in KEY): r for r in (dict(zip(names, row)) for row in cur.fetchall())}
    finally:
        con.close()


def _spec(name: str) -> SuppressionSpec:
    return next(s for s in publish.catalog() if s.name == name).suppression


def relations(rows: dict[tuple, dict], spec: SuppressionSpec) -> list[Relation]:
    """Every "total = sum of parts" an analyst can write down from the published structure."""
    out: list[Relation] = []
    for key in rows:
        for rel in spec.row_totals:
            out.append(((key, rel.total), [(key, p) for p in rel.parts]))
    children: dict[tuple, list[tuple]] = defaultdict(list)
    days: dict[tuple, list[tuple]] = defaultdict(list)
    areas = {k[:4]: k for k in rows if k[2] != "city"}  # above the cities an area's code is unique
    for key, row in rows.items():
        ptype, start, level, code, parent = key
        if parent is not None:
            children[areas[(ptype, start, row["parent_level"], parent)]].append(key)
        if ptype == "day":
            week = start - timedelta(days=start.weekday())
            days[("week", week, level, code, parent)].append(key)
            days[("month", start.replace(day=1), level, code, parent)].append(key)
    for total, parts in (*children.items(), *days.items()):
        for col in spec.counts:
            out.append(((total, col), [(p, col) for p in parts]))
    return out


def attack_by_differencing(published_rows: dict[tuple, dict], rels: list[Relation]) -> dict[Cell, int]:
    """Solve any relation with one unknown cell; repeat while that recovers something."""
    known = {(k, c): v for k, row in published_rows.items() for c, v in row.items() if v is not None}
    recovered: dict[Cell, int] = {}
    changed = True
    while changed:
        changed = False
        for total, parts in rels:
            unknown = [c for c in (total, *parts) if c not in known]
            if len(unknown) != 1:
                continue
            cell = unknown[0]
            others = sum(known[p] for p in parts if p != cell)
            known[cell] = recovered[cell] = (others if cell == total else known[total] - others)
            changed = True
    return recovered


def attack_by_linear_algebra(published_rows: dict[tuple, dict], rels: list[Relation]) -> set[Cell]:
    """Masked cells the whole linear system determines, whatever the values: x_i is determined
    exactly when the null space of the relations' matrix (over the unknowns) is zero in row i."""
    known = {(k, c) for k, row in published_rows.items() for c, v in row.items() if v is not None}
    equations = [[(c, sign) for c, sign in ((t, 1.0), *((p, -1.0) for p in parts)) if c not in known]
                 for t, parts in rels]
    equations = [e for e in equations if e]
    parent: dict[Cell, Cell] = {}

    def find(c: Cell) -> Cell:
        while parent.setdefault(c, c) != c:
            c = parent[c]
        return c

    for eq in equations:  # independent blocks: connected unknowns
        for c, _ in eq[1:]:
            parent[find(c)] = find(eq[0][0])
    blocks: dict[Cell, list] = defaultdict(list)
    for eq in equations:
        blocks[find(eq[0][0])].append(eq)
    determined: set[Cell] = set()
    for eqs in blocks.values():
        cells = sorted({c for eq in eqs for c, _ in eq}, key=str)
        index = {c: i for i, c in enumerate(cells)}
        matrix = numpy.zeros((len(eqs), len(cells)))
        for r, eq in enumerate(eqs):
            for c, sign in eq:
                matrix[r, index[c]] = sign
        _, sv, vt = numpy.linalg.svd(matrix)  # full_matrices: vt spans every unknown
        rank = int((sv > 1e-9).sum())
        null = vt[rank:]
        for c, i in index.items():
            if not null.size or numpy.abs(null[:, i]).max() < 1e-9:
                determined.add(c)
    return determined


@pytest.mark.parametrize("table", AGGREGATES)
def test_relations_hold_in_the_exact_aggregates(published: hqms_config.Config, table: str) -> None:
    exact = _rows(published.warehouse_path, f"marts.{table}")
    rels = relations(exact, _spec(table))
    assert len(rels) > len(exact)
    broken = [(t, sum(exact[k][c] for k, c in parts), exact[t[0]][t[1]])
              for t, parts in rels if sum(exact[k][c] for k, c in parts) != exact[t[0]][t[1]]]
    assert broken == []


@pytest.mark.parametrize("table", AGGREGATES)
def test_published_values_are_exact_and_totals_add_up_where_nothing_is_masked(
        published: hqms_config.Config, table: str) -> None:
    exact = _rows(published.warehouse_path, f"marts.{table}")
    shown = _rows(published.marts_dir / publish.SNAPSHOT_NAME, f"marts.{table}")
    assert shown.keys() == exact.keys()
    spec = _spec(table)
    for key, row in shown.items():
        for col in spec.counts:
            assert row[col] is None or row[col] == exact[key][col], (key, col)
            if exact[key][col] in range(1, 5):
                assert row[col] is None, (key, col)
        assert row["small_cells_suppressed"] == any(row[c] is None for c in spec.counts)
    complete = [(t, parts) for t, parts in relations(shown, spec)
                if all(shown[k][c] is not None for k, c in (t, *parts))]
    assert complete, "every relation has a masked cell: the check would be empty"
    for (tk, tc), parts in complete:
        assert sum(shown[k][c] for k, c in parts) == shown[tk][tc] == exact[tk][tc]


@pytest.mark.parametrize("table", AGGREGATES)
def test_no_masked_cell_is_recovered_from_the_published_totals(published: hqms_config.Config, table: str) -> None:
    shown = _rows(published.marts_dir / publish.SNAPSHOT_NAME, f"marts.{table}")
    spec = _spec(table)
    rels = relations(shown, spec)
    masked = sum(v is None for row in shown.values() for c, v in row.items() if c in spec.counts)
    assert masked > 0
    assert attack_by_differencing(shown, rels) == {}
    assert attack_by_linear_algebra(shown, rels) == set()


def test_the_attack_recovers_cells_under_primary_suppression_alone(published: hqms_config.Config) -> None:
    """Without complementary cells the same attacker gets real counts back (so it can fail)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{published.warehouse_path}' AS wh (READ_ONLY)")
    spec = _spec("agg_flu")
    columns = [r[0] for r in con.execute("DESCRIBE wh.marts.agg_flu").fetchall()]
    suppress(con, "wh.marts.agg_flu", "primary_only", spec, columns, complementary=False)
    cur = con.execute("SELECT * FROM primary_only")
    names = [d[0] for d in cur.description]
    shown = {tuple(r[k] for k in KEY): r for r in (dict(zip(names, row)) for row in cur.fetchall())}
    con.close()
    exact = _rows(published.warehouse_path, "marts.agg_flu")
    recovered = attack_by_differencing(shown, relations(shown, spec))
    assert recovered
    assert all(exact[k][c] == v and 1 <= v <= 4 for (k, c), v in recovered.items())


def test_suppression_is_deterministic(published: hqms_config.Config, tmp_path: Path) -> None:
    first = _rows(published.marts_dir / publish.SNAPSHOT_NAME, "marts.agg_flu")
    again = publish.publish(published, upload=False)
    assert next(m for m in again.marts if m.name == "agg_flu").complementary_cells > 0
    second = _rows(published.marts_dir / publish.SNAPSHOT_NAME, "marts.agg_flu")
    strip = lambda rows: {k: {c: v for c, v in r.items() if c != "_built_at"} for k, r in rows.items()}  # noqa: E731
    assert strip(first) == strip(second)


def test_weekly_and_monthly_flu_figures_equal_a_recomputation_from_dw(published: hqms_config.Config) -> None:
    """Country and province × epi week / month, summed here from the dw recomputation."""
    sql = f"""
        WITH r AS ({synthetic.FLU_RECOMPUTED}), h AS (SELECT org_code, province_code FROM ref.hospitals)
        SELECT p.period_type, p.period_start, p.region_level, p.region_code,
               sum(r.cases), sum(r.inpatient_cases), sum(r.lab_confirmed_b), sum(r.severe_cases), sum(r.deaths)
        FROM r LEFT JOIN h USING (org_code),
             LATERAL (SELECT * FROM (VALUES
                 ('week', CAST(date_trunc('week', r.report_date) AS DATE)),
                 ('month', CAST(date_trunc('month', r.report_date) AS DATE))) AS t (period_type, period_start)) AS pt,
             LATERAL (SELECT pt.period_type, pt.period_start, lv.region_level, lv.region_code FROM (VALUES
                 ('country', 'CN'), ('province', coalesce(h.province_code, 'unknown'))) AS lv (region_level, region_code)) AS p
        GROUP BY ALL ORDER BY ALL"""
    expected = synthetic._query(published, sql)
    got = synthetic._query(published, """
        SELECT period_type, period_start, region_level, region_code, cases, inpatient_cases, lab_confirmed_b,
               severe_cases, deaths
        FROM marts.agg_flu WHERE period_type IN ('week', 'month') AND region_level IN ('country', 'province')
        ORDER BY ALL""")
    assert expected and got == expected
    weeks = {r[1] for r in got if r[0] == "week"}
    assert weeks == {date(2025, 1, 6)}  # 2025-W02: the synthetic week, Monday to Sunday
