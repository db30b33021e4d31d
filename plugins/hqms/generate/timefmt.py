"""Vectorised date/time helpers: numpy ``datetime64`` arrays in, spec-formatted strings out.

Formatting a million timestamps one ``strftime`` at a time costs seconds; numpy's
``datetime_as_string`` does it in C, and the spec's formats are all rearrangements of ISO text.
"""
from __future__ import annotations

from datetime import date

import numpy as np

DAY = np.timedelta64(1, "D")


def day(d: date | str) -> np.datetime64:
    return np.datetime64(d, "D")


def format_times(values: np.ndarray, fmt: str) -> list[str]:
    """``values`` (datetime64; NaT → empty) in one of the spec's date formats."""
    if len(values) == 0:
        return []
    if fmt in ("yyyy-MM-dd", "YYYYMMDD", "yyyy/MM/dd"):
        text = np.datetime_as_string(values.astype("datetime64[D]"), unit="D")
    elif fmt in ("yyyy-MM-dd HH:mm:ss", "yyyy/MM/dd HH:mm:ss"):
        text = np.char.replace(np.datetime_as_string(values.astype("datetime64[s]"), unit="s"), "T", " ")
    elif fmt == "yyyy-MM-dd HH:mm":
        text = np.char.replace(np.datetime_as_string(values.astype("datetime64[m]"), unit="m"), "T", " ")
    else:
        raise ValueError(f"unknown date format {fmt!r}")
    if fmt == "YYYYMMDD":
        text = np.char.replace(text, "-", "")
    elif fmt.startswith("yyyy/"):
        text = np.char.replace(text, "-", "/")
    out = text.tolist()
    if np.isnat(values).any():
        nat = np.isnat(values)
        out = ["" if missing else s for s, missing in zip(out, nat.tolist())]
    return out


def completed_years(birth: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Age in completed years at ``ref`` (both datetime64[D])."""
    by = birth.astype("datetime64[Y]").astype(int)
    ry = ref.astype("datetime64[D]").astype("datetime64[Y]").astype(int)
    # Compare month/day, not day-of-year, so leap years do not shift birthdays.
    bm = birth.astype("datetime64[M]").astype(int) % 12
    rm = ref.astype("datetime64[D]").astype("datetime64[M]").astype(int) % 12
    bd = (birth - birth.astype("datetime64[M]")).astype(int)
    rd = (ref.astype("datetime64[D]") - ref.astype("datetime64[D]").astype("datetime64[M]")).astype(int)
    before = (rm < bm) | ((rm == bm) & (rd < bd))
    return ry - by - before.astype(int)
