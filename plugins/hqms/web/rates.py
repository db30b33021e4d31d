"""Administrators' figures: reporting and on-time rates, and each hospital's overdue periods.

Read from the administrators' read-only snapshot of the hospital-level marts
(``$HQMS_MARTS_DIR/hqms_marts_admin.duckdb``, written by :mod:`hqms.marts.publish` beside the
analysts' aggregates), never the live warehouse: a page view must not wait for — or block —
an ingest or a dbt build. The snapshot is replaced atomically, so each request opens it afresh
and sees one whole build.

Scope is the administrator's GB/T 2260 prefix against the marts' ``city_code`` (the hospital
registry's), so hospitals that never sent anything count as expected and not reported — the
whole point of the figures (川卫办医政便函〔2025〕2号). A national administrator or operator has no prefix.
Rates are over periods whose deadline has passed (``due``), as in ``submission_daily_by_region``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from hqms import config
from hqms.accounts import Principal
from hqms.marts.publish import ADMIN_SNAPSHOT_NAME
#: (mart, period column) per cadence.
MARTS = {"day": ("submission_daily", "report_date"), "month": ("submission_monthly", "month")}


class MartsUnavailable(Exception):
    """No snapshot published yet (the marts have never been built)."""


@dataclass(frozen=True)
class RateRow:
    stream: str
    period: date
    expected: int
    reported: int
    on_time: int
    not_due: int

    @property
    def reporting_rate(self) -> float | None:
        return self.reported / self.expected if self.expected else None

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.expected if self.expected else None


def snapshot_path(cfg: config.Config) -> Path:
    return cfg.marts_dir / ADMIN_SNAPSHOT_NAME


def _connect(cfg: config.Config) -> duckdb.DuckDBPyConnection:
    path = snapshot_path(cfg)
    if not path.exists():
        raise MartsUnavailable(str(path))
    return duckdb.connect(str(path), read_only=True)


def _built(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    """The cadences whose mart the snapshot holds (a daily-only build publishes no monthly one)."""
    names = {n for (n,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'").fetchall()}
    return {c: m for c, m in MARTS.items() if m[0] in names}


def _scope(who: Principal) -> tuple[str, list]:
    prefix = None if who.sees_everything else who.region_prefix()
    if prefix is None and not who.sees_everything:
        return "false", []
    return ("true", []) if prefix is None else ("city_code LIKE ? || '%'", [prefix])


def rates(cfg: config.Config, who: Principal, stream: str | None = None, days: int = 14,
          limit: int = 400) -> list[RateRow]:
    """Per (stream, period), newest first: hospitals expected (due), reported, on time — the
    daily streams' last ``days`` days and the monthly stream's last ``days // 30 + 1`` months,
    counted back from the newest period built (not from today: a back-fill is still shown)."""
    where, params = _scope(who)
    spans = {"day": f"INTERVAL {int(days)} DAY", "month": f"INTERVAL {int(days) // 30 + 1} MONTH"}
    out: list[RateRow] = []
    con = _connect(cfg)
    try:
        for cadence, (mart, period) in _built(con).items():
            cond, args = [where], list(params)
            if stream:
                cond.append("stream = ?")
                args.append(stream)
            cond.append(f"{period} > (SELECT max({period}) FROM marts.{mart}) - {spans[cadence]}")
            rows = con.execute(f"""
                SELECT stream, {period},
                       count(*) FILTER (WHERE due), count(*) FILTER (WHERE due AND received),
                       count(*) FILTER (WHERE due AND on_time), count(*) FILTER (WHERE NOT due)
                FROM marts.{mart} WHERE {' AND '.join(cond)}
                GROUP BY ALL ORDER BY 2 DESC, 1 LIMIT {int(limit)}""", args).fetchall()
            out += [RateRow(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
    finally:
        con.close()
    return sorted(out, key=lambda r: (r.period, r.stream), reverse=True)[:limit]


def hospitals(cfg: config.Config, who: Principal) -> dict[str, dict]:
    """The registry's hospitals in scope (org → name, city) with their overdue periods per stream
    (due and not received)."""
    where, params = _scope(who)
    con = _connect(cfg)
    try:
        found = {org: {"org_code": org, "name": name, "city_name": city, "overdue": {}}
                 for org, name, city in con.execute(
                     f"SELECT org_code, org_name, city_name FROM marts.hospitals WHERE {where} "
                     "ORDER BY org_code", params).fetchall()}
        for mart, _ in _built(con).values():
            for org, stream, overdue in con.execute(f"""
                    SELECT org_code, stream, count(*) FILTER (WHERE due AND NOT received)
                    FROM marts.{mart} WHERE {where} GROUP BY ALL""", params).fetchall():
                if org in found:
                    found[org]["overdue"][stream] = overdue
    finally:
        con.close()
    return found
