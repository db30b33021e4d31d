"""The upload streams and their reporting calendar: the one place these facts are written.

A hospital sends one zip per stream and period. Daily streams (the flu and fever packages) are
due by 24:00 of the day after the day they cover; monthly streams (the outpatient information
page) by ``due_day`` of the following month — the deadlines the reporting guides of the
interface standard set. Everything else derives from this table: the Airflow Assets
(:mod:`hqms.assets`), the period check of the hints (:mod:`hqms.ingest.hints`), and the dbt
vars ``daily_streams`` / ``monthly_streams`` / ``monthly_due_day`` (``dbt_project.yml``,
held to this table by ``tests/test_spec.py``: dbt reads its vars from that file).
"""
from __future__ import annotations

from dataclasses import dataclass

CADENCES = ("daily", "monthly")


@dataclass(frozen=True)
class Stream:
    id: str
    cadence: str                # "daily" | "monthly"
    due_day: int | None = None  # monthly: due by this day of the following month

    @property
    def monthly(self) -> bool:
        return self.cadence == "monthly"


STREAM_TABLE: tuple[Stream, ...] = (
    Stream("flu", "daily"),
    Stream("fever", "daily"),
    Stream("outpatient", "monthly", due_day=15),
)

STREAMS: tuple[str, ...] = tuple(s.id for s in STREAM_TABLE)
DAILY_STREAMS: tuple[str, ...] = tuple(s.id for s in STREAM_TABLE if not s.monthly)
MONTHLY_STREAMS: tuple[str, ...] = tuple(s.id for s in STREAM_TABLE if s.monthly)


def stream(stream_id: str) -> Stream:
    for s in STREAM_TABLE:
        if s.id == stream_id:
            return s
    raise KeyError(f"no stream {stream_id!r}; streams: {', '.join(STREAMS)}")


def monthly_due_day() -> int:
    """The due day shared by the monthly streams (dbt has one ``monthly_due_day``)."""
    (day,) = {s.due_day for s in STREAM_TABLE if s.monthly}
    assert day is not None
    return day
