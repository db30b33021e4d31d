"""A hospital's records of one dataset over the whole run, and which of them each file carries.

A record has a *window day* (the day that places it in files: visit, discharge, death …), the first
day it *may* be exported (a lab result or a drug order exists only from its own time on) and,
when a later export knows more, the day from which its *final* version is sent (before that the
provisional version goes out: an in-patient's ICU stay or death is filled once it happened). The
flu stream re-sends the last seven window days every day; a file dated D carries the records with
window day in (D-lookback, D] that exist by D.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hqms.generate.writer import quote_all
from hqms.spec import Dataset

Cols = dict[str, list[str]]

QUOTED_TYPES = ("string", "date", "datetime")
SERIAL_UID = "serialVersionUID"


def format_lines(ds: Dataset, cols: Cols, serial_uid: bool) -> list[str]:
    """CSV lines (no line end): text quoted, numbers bare, empty for null, spec column order."""
    ordered = [quote_all(cols[c.code]) if c.type in QUOTED_TYPES else cols[c.code] for c in ds.columns]
    lines = [",".join(t) for t in zip(*ordered)]
    return [line + "," for line in lines] if serial_uid else lines


def header(ds: Dataset, serial_uid: bool) -> str:
    return ",".join(ds.codes) + ("," + SERIAL_UID if serial_uid else "")


def row_at(ds: Dataset, cols: Cols, i: int) -> dict[str, str]:
    return {code: cols[code][i] for code in ds.codes}


@dataclass
class Records:
    """Rows of one dataset for one hospital (raw cell text, ``""`` = null)."""

    ds: Dataset
    cols: Cols
    window: np.ndarray                   # int64 day numbers (datetime64[D] as int)
    available: np.ndarray                # first day it can be exported
    final_from: np.ndarray | None = None  # provisional version sent before this day
    provisional: Cols | None = None
    _lines: dict[tuple[bool, bool], list[str]] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.window)

    def lines(self, serial_uid: bool, provisional: bool = False) -> list[str]:
        key = (serial_uid, provisional)
        if key not in self._lines:
            cols = self.provisional if provisional and self.provisional is not None else self.cols
            self._lines[key] = format_lines(self.ds, cols, serial_uid)
        return self._lines[key]

    def select(self, first_day: int, last_day: int, as_of: int) -> np.ndarray:
        """Indices of the records a file dated ``as_of`` carries for window days first…last."""
        mask = (self.window >= first_day) & (self.window <= last_day) & (self.available <= as_of)
        return np.flatnonzero(mask)

    def is_provisional(self, idx: np.ndarray, as_of: int) -> np.ndarray:
        if self.final_from is None:
            return np.zeros(len(idx), dtype=bool)
        return self.final_from[idx] > as_of


def sort_records(rec: Records) -> Records:
    """Rows ordered by window day (stable), as an exporter's ORDER BY would."""
    order = np.argsort(rec.window, kind="stable")
    if (order == np.arange(rec.n)).all():
        return rec
    take = order.tolist()

    def reorder(cols: Cols) -> Cols:
        return {k: [v[i] for i in take] for k, v in cols.items()}

    return Records(rec.ds, reorder(rec.cols), rec.window[order], rec.available[order],
                   None if rec.final_from is None else rec.final_from[order],
                   None if rec.provisional is None else reorder(rec.provisional))
