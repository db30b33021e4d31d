"""When each upload is expected to arrive (the demo replays submits at these times).

Daily files mostly arrive the next day (the front-end program runs after midnight or the data
manager uploads in the morning), some 2–3 days late, and a few less punctual hospitals skip a
day (the next day's 7-day re-send covers the flu records). The outpatient page is due by the
15th of the next month (川卫办医政便函〔2025〕2号); some hospitals are late. Times are Asia/Shanghai.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np

from hqms.config import CHINA_TZ
from hqms.generate.registry import Hospital

#: Less punctual hospitals (punctuality below this) miss a daily upload now and then.
MISSING_BELOW = 0.9
MISSING_RATE = 0.04


def daily_arrival(h: Hospital, period: date, rng: np.random.Generator) -> datetime | None:
    """Planned arrival of a daily upload, or None when the hospital skips that day."""
    if h.punctuality < MISSING_BELOW and rng.random() < MISSING_RATE:
        return None
    if rng.random() < h.punctuality:
        delay = timedelta(days=1, seconds=int(rng.integers(1800, 10 * 3600)))
    else:
        delay = timedelta(days=int(rng.integers(2, 4)), seconds=int(rng.integers(8 * 3600, 18 * 3600)))
    return datetime.combine(period, time(), CHINA_TZ) + delay


def monthly_arrival(h: Hospital, month: date, rng: np.random.Generator) -> datetime:
    """Planned arrival of a month's outpatient upload: by the 15th, or late."""
    first_next = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    on_time = rng.random() < h.punctuality
    day = int(rng.integers(1, 16)) if on_time else int(rng.integers(16, 29))
    seconds = int(rng.integers(8 * 3600, 18 * 3600))
    return datetime.combine(first_next.replace(day=day), time(), CHINA_TZ) + timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
