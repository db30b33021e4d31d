"""The bulletin's figures, read from the published snapshot (what analysts may see).

Every number comes from one query over a published table (agg_flu, agg_fever, agg_reporting,
dim_epi_week), so the bulletin equals the marts by construction and a test re-checks it. A value
suppressed in the snapshot stays None here and is printed as "<5*" (see docs/marts.md). The
administrators' variant adds the reporting heat map (hospital × day), read from the hospital-level
submission_daily of the administrators' snapshot (publish.ADMIN_SNAPSHOT_NAME), which is not
published to analysts. It never opens the live warehouse: while an ingest or a dbt build holds
DuckDB's write lock, a read-only connection to the warehouse file fails, the snapshot does not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from hqms.bulletin.weeks import EpiWeek
from hqms.errors import UserError
from hqms.marts.summary import plain

#: (key, table, column, 中文名, kind) — headline figures, country × week, with week-on-week change
HEADLINES: tuple[tuple[str, str, str, str, str], ...] = (
    ("cases", "agg_flu", "cases", "流感病例数", "count"),
    ("lab_confirmed_a", "agg_flu", "lab_confirmed_a", "实验室确诊甲型流感", "count"),
    ("lab_confirmed_b", "agg_flu", "lab_confirmed_b", "实验室确诊乙型流感", "count"),
    ("severe_cases", "agg_flu", "severe_cases", "重症病例", "count"),
    ("deaths", "agg_flu", "deaths", "死亡病例", "count"),
    ("antiviral_within_48h_rate", "agg_flu", "antiviral_within_48h_rate", "48小时内抗病毒治疗比例", "rate"),
    ("fever_visits", "agg_fever", "visits", "发热门诊就诊人次", "count"),
    ("flu_tested", "agg_fever", "flu_tested", "流感病原学检测人次", "count"),
    ("positivity", "agg_fever", "positivity", "流感病毒检测阳性率", "rate"),
    ("flu_like_share", "agg_fever", "flu_like_share", "发热门诊流感样病例占比", "rate"),
)
AGE_BANDS = (("age_0_4", "0-4岁"), ("age_5_14", "5-14岁"), ("age_15_24", "15-24岁"),
             ("age_25_59", "25-59岁"), ("age_60_plus", "60岁及以上"), ("age_unknown", "年龄不详"))
SEASONS_BACK = 2


@dataclass
class Headline:
    key: str
    label: str
    kind: str
    value: float | int | None
    previous: float | int | None
    #: False when the marts have no row for the week at all (printed "—", not "*" = suppressed)
    reported: bool = True
    previous_reported: bool = True

    @property
    def change(self) -> float | None:
        """Week-on-week change: relative for counts, in percentage points for rates."""
        if self.value is None or self.previous is None:
            return None
        if self.kind == "rate":
            return round(100 * (self.value - self.previous), 1)
        return None if self.previous == 0 else round(100 * (self.value - self.previous) / self.previous, 1)


@dataclass
class Figures:
    week: str
    week_start: str
    week_end: str
    season: str
    variant: str
    headlines: list[Headline]
    reporting: dict[str, Any]
    curves: list[dict] = field(default_factory=list)
    positivity: list[dict] = field(default_factory=list)
    ages: list[dict] = field(default_factory=list)
    severe: list[dict] = field(default_factory=list)
    fever_load: list[dict] = field(default_factory=list)
    heatmap: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        for h, d in zip(self.headlines, out["headlines"]):
            d["change"] = h.change
        return out


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, [plain(v) for v in row])) for row in cur.fetchall()]


def _country_week(con: duckdb.DuckDBPyConnection, table: str, column: str, week: EpiWeek) -> tuple[Any, bool]:
    """(value, whether the week has a row at all) for the country."""
    row = con.execute(f"SELECT {column} FROM marts.{table} WHERE period_type = 'week' AND period_label = ? "
                      "AND region_level = 'country'", [week.label]).fetchone()
    return (None, False) if row is None else (plain(row[0]), True)


def _headline(con: duckdb.DuckDBPyConnection, key: str, table: str, column: str, label: str, kind: str,
              week: EpiWeek) -> Headline:
    value, reported = _country_week(con, table, column, week)
    previous, previous_reported = _country_week(con, table, column, week.previous())
    return Headline(key, label, kind, value, previous, reported, previous_reported)


def collect(snapshot: Path, week: EpiWeek, *, admin_snapshot: Path | None = None) -> Figures:
    """All figures of the bulletin for ``week``; ``admin_snapshot`` given → administrators' variant."""
    if not snapshot.exists():
        raise UserError(f"no published snapshot at {snapshot}; run `hqms marts build` and `hqms marts publish`")
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        missing = {"agg_flu", "agg_fever", "agg_reporting", "dim_epi_week"} - {
            r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'").fetchall()}
        if missing:
            raise UserError(f"the snapshot {snapshot} has no {', '.join(sorted(missing))}: "
                            "run `hqms marts build` and `hqms marts publish`")
        headlines = [_headline(con, *spec, week) for spec in HEADLINES]
        reporting = {r["stream"]: r for r in _rows(con, """
            SELECT stream, hospitals, periods_due, periods_received, periods_on_time, reporting_rate, on_time_rate
            FROM marts.agg_reporting WHERE period_type = 'week' AND period_label = ? AND region_level = 'country'
            ORDER BY stream""", [week.label])}
        start_year = int(week.season[:4])
        seasons = [f"{y}-{y + 1}" for y in range(start_year - SEASONS_BACK, start_year + 1)]
        curves = _rows(con, f"""
            SELECT w.season, w.season_week, w.iso_week, a.region_level, a.region_code, a.region_name, a.cases
            FROM marts.agg_flu a JOIN marts.dim_epi_week w ON w.week_label = a.period_label
            WHERE a.period_type = 'week' AND a.region_level IN ('country', 'flu_region')
              AND w.season IN ({', '.join('?' * len(seasons))}) AND w.week_start <= ?
            ORDER BY a.region_level, a.region_code, w.season, w.season_week""", [*seasons, week.start])
        season_weeks = """
            FROM marts.{table} a JOIN marts.dim_epi_week w ON w.week_label = a.period_label
            WHERE a.period_type = 'week' AND a.region_level = 'country' AND w.season = ? AND w.week_start <= ?
            ORDER BY w.week_start"""
        positivity = _rows(con, "SELECT a.period_label AS week, w.season_week, a.flu_tested, a.positivity_a, "
                           "a.positivity_b, a.positivity" + season_weeks.format(table="agg_fever"),
                           [week.season, week.start])
        severe = _rows(con, "SELECT a.period_label AS week, w.season_week, a.severe_cases, a.deaths"
                       + season_weeks.format(table="agg_flu"), [week.season, week.start])
        age_row = _rows(con, f"SELECT {', '.join(c for c, _ in AGE_BANDS)} FROM marts.agg_flu WHERE period_type = "
                        "'week' AND period_label = ? AND region_level = 'country'", [week.label])
        ages = [{"band": label, "column": col, "cases": age_row[0][col] if age_row else None}
                for col, label in AGE_BANDS]
        fever_load = _rows(con, """
            SELECT strftime(period_start, '%m-%d') AS day, region_code, region_name, visits, visits_per_hospital
            FROM marts.agg_fever WHERE period_type = 'day' AND region_level = 'province'
              AND period_start BETWEEN ? AND ? ORDER BY region_code, period_start""", [week.start, week.end])
    finally:
        con.close()
    figures = Figures(week.label, week.start.isoformat(), week.end.isoformat(), week.season,
                      "admin" if admin_snapshot else "public", headlines, reporting, curves, positivity, ages,
                      severe, fever_load)
    if admin_snapshot is not None:
        figures.heatmap = reporting_heatmap(admin_snapshot, week)
    return figures


def reporting_heatmap(admin_snapshot: Path, week: EpiWeek) -> list[dict]:
    """Hospital × day of the week, per daily stream: 按时 / 迟报 / 未报 / 未到期 (submission_daily
    of the administrators' snapshot)."""
    if not admin_snapshot.exists():
        raise UserError(f"no administrators' snapshot at {admin_snapshot}; run `hqms marts publish`")
    con = duckdb.connect(str(admin_snapshot), read_only=True)
    try:
        return _rows(con, """
            SELECT CASE s.stream WHEN 'flu' THEN '流感监测' WHEN 'fever' THEN '发热门诊' ELSE s.stream END AS stream,
                   strftime(s.report_date, '%m-%d') AS day, s.org_code, coalesce(h.org_name, s.org_code) AS org_name,
                   CASE WHEN s.on_time THEN '按时' WHEN s.received THEN '迟报'
                        WHEN s.due THEN '未报' ELSE '未到期' END AS status
            FROM marts.submission_daily s LEFT JOIN marts.hospitals h USING (org_code)
            WHERE s.report_date BETWEEN ? AND ?
            ORDER BY s.stream, org_name, s.report_date""", [week.start, week.end])
    finally:
        con.close()
