"""Epidemiological weeks in Python — the same rule as dbt's dim_date (macros/epi_weeks.sql).

ISO 8601: Monday to Sunday, week 1 holds the year's first Thursday (``date.isocalendar``).
China's influenza surveillance season runs from week 14 of one year to week 13 of the next.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from hqms.errors import UserError

SEASON_FIRST_WEEK = 14
_LABEL = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class EpiWeek:
    iso_year: int
    iso_week: int

    @property
    def label(self) -> str:
        return f"{self.iso_year}-W{self.iso_week:02d}"

    @property
    def start(self) -> date:
        return date.fromisocalendar(self.iso_year, self.iso_week, 1)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=6)

    @property
    def season(self) -> str:
        first = self.iso_year if self.iso_week >= SEASON_FIRST_WEEK else self.iso_year - 1
        return f"{first}-{first + 1}"

    def previous(self) -> "EpiWeek":
        return week_of(self.start - timedelta(days=7))

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(7)]


def week_of(day: date) -> EpiWeek:
    year, week, _ = day.isocalendar()
    return EpiWeek(year, week)


def parse_week(text: str) -> EpiWeek:
    """``2025-W03`` (or ``2025W3``) → the week; a clear error for anything else."""
    m = _LABEL.match(text.strip())
    if not m:
        raise UserError(f"week {text!r}: expected YYYY-Www, e.g. 2025-W03")
    year, week = int(m.group(1)), int(m.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError as exc:
        raise UserError(f"week {text!r}: {year} has no ISO week {week}") from exc
    return EpiWeek(year, week)


def last_closed_week(today: date) -> EpiWeek:
    """The newest week whose Sunday is before ``today`` (a week closes when its Sunday ends)."""
    return week_of(today - timedelta(days=today.isoweekday()))
