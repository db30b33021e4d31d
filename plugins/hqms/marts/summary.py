"""A short picture of the marts, for the end of the main job and for operators.

Reads the warehouse read-only (exact counts; run it when no writer is active) or the published
snapshot (what analysts see: the country's monthly aggregates, exact unless a whole month of the
country is a small cell).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from hqms import config as hqms_config
from hqms.errors import UserError
from hqms.marts.publish import SNAPSHOT_NAME

#: (label, SQL over one mart) — each returns a single row of named values.
QUERIES: dict[str, str] = {
    "flu_daily": """
        SELECT min(report_date) AS first_day, max(report_date) AS last_day,
               count(DISTINCT org_code) AS hospitals, sum(visits) AS visits, sum(cases) AS cases,
               sum(outpatient_cases) AS outpatient, sum(emergency_cases) AS emergency,
               sum(inpatient_cases) AS inpatient, sum(lab_confirmed_a) AS lab_a, sum(lab_confirmed_b) AS lab_b,
               sum(antiviral_treated) AS antiviral, sum(antiviral_within_48h) AS antiviral_48h,
               sum(severe_cases) AS severe, sum(deaths) AS deaths
        FROM marts.flu_daily""",
    "fever_daily": """
        SELECT min(report_date) AS first_day, max(report_date) AS last_day,
               count(DISTINCT org_code) AS hospitals, sum(visits) AS visits,
               sum(observation_stays) AS observation, sum(flu_tested) AS flu_tested,
               sum(flu_positive) AS flu_positive
        FROM marts.fever_daily""",
    "outpatient_monthly": """
        SELECT min(month) AS first_month, max(month) AS last_month, count(DISTINCT org_code) AS hospitals,
               sum(visits) AS visits, sum(emergency_visits) AS emergency, sum(infusion_visits) AS infusion,
               round(sum(total_cost) / nullif(sum(visits), 0), 2) AS avg_cost
        FROM marts.outpatient_monthly""",
    # reporting rates over the hospital-periods that are due (deadline passed when the mart was
    # built), like the roll-ups' rates; periods not yet due are only counted
    **{mart: f"""
        SELECT stream, count(*) FILTER (WHERE due) AS expected, count(*) FILTER (WHERE due AND received) AS received,
               count(*) FILTER (WHERE due AND on_time) AS on_time, count(*) FILTER (WHERE NOT due) AS not_yet_due,
               sum(conforming_records) / nullif(sum(records), 0) AS conformance
        FROM marts.{mart} GROUP BY stream ORDER BY stream""" for mart in ("submission_daily", "submission_monthly")},
}


def _sum(column: str, alias: str) -> str:
    """A total over the country's months, NULL (shown "-") when any month's value is masked."""
    return f"CASE WHEN count(*) = count({column}) THEN sum({column}) END AS {alias}"


#: The same figures from the published snapshot, which holds no hospital-level table: summed over
#: the country's monthly rows (exact wherever a month of the whole country is not a small cell).
#: `hospitals` is the most in any one month (hospitals of different months cannot be told apart).
SNAPSHOT_QUERIES: dict[str, str] = {
    "flu_daily": f"""
        SELECT (SELECT min(period_start) FROM marts.agg_flu WHERE period_type = 'day') AS first_day,
               (SELECT max(period_start) FROM marts.agg_flu WHERE period_type = 'day') AS last_day,
               max(hospitals) AS hospitals,
               {_sum('visits', 'visits')}, {_sum('cases', 'cases')}, {_sum('outpatient_cases', 'outpatient')},
               {_sum('emergency_cases', 'emergency')}, {_sum('inpatient_cases', 'inpatient')},
               {_sum('lab_confirmed_a', 'lab_a')}, {_sum('lab_confirmed_b', 'lab_b')}, {_sum('antiviral_treated', 'antiviral')},
               {_sum('antiviral_within_48h', 'antiviral_48h')}, {_sum('severe_cases', 'severe')}, {_sum('deaths', 'deaths')}
        FROM marts.agg_flu WHERE period_type = 'month' AND region_level = 'country'""",
    "fever_daily": f"""
        SELECT (SELECT min(period_start) FROM marts.agg_fever WHERE period_type = 'day') AS first_day,
               (SELECT max(period_start) FROM marts.agg_fever WHERE period_type = 'day') AS last_day,
               max(hospitals) AS hospitals,
               {_sum('visits', 'visits')}, {_sum('observation_stays', 'observation')}, {_sum('flu_tested', 'flu_tested')},
               {_sum('flu_positive', 'flu_positive')}
        FROM marts.agg_fever WHERE period_type = 'month' AND region_level = 'country'""",
    "outpatient_monthly": f"""
        SELECT strftime(min(period_start), '%Y-%m') AS first_month, strftime(max(period_start), '%Y-%m') AS last_month,
               max(hospitals) AS hospitals, {_sum('visits', 'visits')}, {_sum('emergency_visits', 'emergency')},
               {_sum('infusion_visits', 'infusion')}, round(sum(total_cost) / nullif(sum(visits), 0), 2) AS avg_cost
        FROM marts.agg_outpatient WHERE period_type = 'month' AND region_level = 'country'""",
    **{mart: f"""
        SELECT stream, sum(periods_due) AS expected, sum(periods_received) AS received,
               sum(periods_on_time) AS on_time, 0 AS not_yet_due, NULL AS conformance
        FROM marts.agg_reporting WHERE period_type = 'month' AND region_level = 'country'
          AND stream IN {streams} GROUP BY stream ORDER BY stream"""
       for mart, streams in (("submission_daily", "('flu', 'fever')"), ("submission_monthly", "('outpatient')"))},
}


def _connect(cfg: hqms_config.Config, source: str) -> duckdb.DuckDBPyConnection:
    if source == "warehouse" and cfg.warehouse_lake:
        from hqms import warehouse_attach

        try:
            return warehouse_attach.connect(cfg, read_only=True)
        except warehouse_attach.WarehouseUnavailable as exc:
            raise UserError(str(exc)) from exc
    path: Path = cfg.warehouse_path if source == "warehouse" else cfg.marts_dir / SNAPSHOT_NAME
    if not path.exists():
        raise UserError(f"no {source} at {path}; run `hqms marts build`"
                        + (" and `hqms marts publish`" if source == "snapshot" else ""))
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        raise UserError(f"{path} is in use by a writer; retry later ({exc})") from exc


def collect(cfg: hqms_config.Config | None = None, source: str = "warehouse") -> dict[str, Any]:
    """Headline figures per mart (JSON-friendly)."""
    cfg = cfg or hqms_config.load()
    con = _connect(cfg, source)
    try:
        out: dict[str, Any] = {"source": source}
        for name, sql in (QUERIES if source == "warehouse" else SNAPSHOT_QUERIES).items():
            try:
                cur = con.execute(sql)
            except duckdb.CatalogException:  # mart not built yet
                out[name] = None
                continue
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, [plain(v) for v in row])) for row in cur.fetchall()]
            out[name] = rows if name.startswith("submission") else rows[0]
        return out
    finally:
        con.close()


def plain(value: Any) -> Any:
    """Dates and decimals as JSON-friendly scalars."""
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return float(value)


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _pct(part: Any, whole: Any) -> str:
    return "-" if not whole or part is None else f"{100 * part / whole:.1f}%"


def render(data: dict[str, Any]) -> str:
    """Plain-text summary (a dozen lines); marts not built yet are said to be so."""
    lines = [f"HQMS marts ({data['source']})"]
    flu, fever, opd = data["flu_daily"], data["fever_daily"], data["outpatient_monthly"]
    if flu is None:
        lines.append("flu      not built yet")
    else:
        lines.append(
            f"flu      {flu['first_day'] or '-'} … {flu['last_day'] or '-'}: {_n(flu['hospitals'])} hospitals, "
            f"{_n(flu['visits'])} visits, {_n(flu['cases'])} cases (outpatient {_n(flu['outpatient'])}, "
            f"emergency {_n(flu['emergency'])}, inpatient {_n(flu['inpatient'])})")
        lines.append(
            f"         lab-confirmed A {_n(flu['lab_a'])} / B {_n(flu['lab_b'])}; antiviral "
            f"{_n(flu['antiviral'])} ({_pct(flu['antiviral_48h'], flu['antiviral'])} within 48 h); "
            f"severe {_n(flu['severe'])}; deaths {_n(flu['deaths'])}")
    if fever is None:
        lines.append("fever    not built yet")
    else:
        lines.append(
            f"fever    {fever['first_day'] or '-'} … {fever['last_day'] or '-'}: {_n(fever['hospitals'])} "
            f"hospitals, {_n(fever['visits'])} visits, {_n(fever['observation'])} observation stays, flu "
            f"tested {_n(fever['flu_tested'])}, positive {_n(fever['flu_positive'])} "
            f"({_pct(fever['flu_positive'], fever['flu_tested'])})")
    if opd is None:
        lines.append("outpat.  not built yet")
    else:
        lines.append(
            f"outpat.  {opd['first_month'] or '-'} … {opd['last_month'] or '-'}: {_n(opd['hospitals'])} "
            f"hospitals, {_n(opd['visits'])} visits, emergency {_n(opd['emergency'])}, infusion "
            f"{_pct(opd['infusion'], opd['visits'])}, avg cost {_n(opd['avg_cost'])} yuan")
    for row in (data["submission_daily"] or []) + (data["submission_monthly"] or []):
        lines.append(
            f"reporting {row['stream']:<10} {_n(row['received'])}/{_n(row['expected'])} hospital-periods due "
            f"received ({_pct(row['received'], row['expected'])}), on time "
            f"{_pct(row['on_time'], row['expected'])}, conforming records {_pct(row['conformance'], 1)}"
            + (f"; {_n(row['not_yet_due'])} not yet due" if row["not_yet_due"] else ""))
    if data["source"] == "snapshot":
        lines.append("(snapshot: country × month aggregates; a value suppressed there counts as missing)")
    return "\n".join(lines)
