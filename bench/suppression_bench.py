"""Complementary suppression at a national scale, against primary suppression of the same table.

Builds an agg_flu-shaped table in memory — every day, epidemiological week and month of one
year × country, 南方/北方, 31 provinces and ``--cities`` cities each, random counts whose row
totals add up — and times :func:`hqms.marts.suppression.suppress` with and without the
complementary rounds (the floor: one masking pass over the same cells). Prints wall and CPU
seconds, cells, rounds and the ratio.
"""
from __future__ import annotations

import argparse
import resource
import time

import duckdb

from hqms.marts import publish
from hqms.marts.suppression import suppress


def _table(con: duckdb.DuckDBPyConnection, cities: int, counts: tuple[str, ...]) -> list[str]:
    rnd = ", ".join(f"CAST(floor(random() * random() * 30) AS BIGINT) AS {c}" for c in counts)
    con.execute(f"""CREATE TABLE hd AS SELECT d::DATE AS day, p AS province, p * 100 + c AS city, {rnd}
        FROM generate_series(DATE '2025-01-01', DATE '2025-12-31', INTERVAL 1 DAY) t(d),
             range(11, 42) p(p), range(0, {cities}) c(c)""")
    ages = "age_0_4 + age_5_14 + age_15_24 + age_25_59 + age_60_plus"
    con.execute(f"UPDATE hd SET age_unknown = greatest(outpatient_cases + emergency_cases + inpatient_cases - ({ages}), 0)")
    con.execute(f"UPDATE hd SET cases = {ages} + age_unknown, "
                f"inpatient_cases = {ages} + age_unknown - outpatient_cases - emergency_cases")
    sums = ", ".join(f"sum({c})::BIGINT AS {c}" for c in counts)
    half = "CASE WHEN province < 30 THEN 'north' ELSE 'south' END"
    parts = []
    for ptype, start in (("day", "day"), ("week", "date_trunc('week', day)::DATE"),
                         ("month", "date_trunc('month', day)::DATE")):
        for level, code, plevel, pcode in (("country", "'CN'", "NULL", "NULL"),
                                           ("flu_region", half, "'country'", "'CN'"),
                                           ("province", "province::VARCHAR", "'flu_region'", half),
                                           ("city", "city::VARCHAR", "'province'", "province::VARCHAR")):
            parts.append(f"SELECT '{ptype}' AS period_type, {start} AS period_start, '{level}' AS region_level, "
                         f"{code} AS region_code, {plevel}::VARCHAR AS parent_level, {pcode}::VARCHAR AS parent_code, "
                         f"{sums} FROM hd GROUP BY ALL")
    con.execute("CREATE TABLE agg AS " + " UNION ALL ".join(parts))
    con.execute("ALTER TABLE agg ADD COLUMN antiviral_within_48h_rate DOUBLE")
    return [r[0] for r in con.execute("DESCRIBE agg").fetchall()]


def _timed(fn) -> tuple[float, float, object]:
    cpu, wall = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.perf_counter()
    out = fn()
    return time.perf_counter() - wall, resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=10, help="cities per province (default 10: 310)")
    parser.add_argument("--memory-limit", default="1GB")
    args = parser.parse_args()
    spec = next(s for s in publish.catalog() if s.name == "agg_flu").suppression
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{args.memory_limit}'")
    columns = _table(con, args.cities, spec.counts)
    rows = con.execute("SELECT count(*) FROM agg").fetchone()[0]
    floor = _timed(lambda: suppress(con, "agg", "primary_only", spec, columns, complementary=False))
    full = _timed(lambda: suppress(con, "agg", "complementary", spec, columns))
    print(f"rows {rows:,}, cells {rows * len(spec.counts):,}")
    print(f"primary only (floor): {floor[0]:.1f} s wall, {floor[1]:.1f} s CPU; masked {floor[2].primary_cells:,}")
    print(f"complementary:        {full[0]:.1f} s wall, {full[1]:.1f} s CPU; +{full[2].complementary_cells:,} cells "
          f"in {full[2].rounds} rounds")
    print(f"ratio (wall): {full[0] / floor[0]:.1f}×")


if __name__ == "__main__":
    main()
