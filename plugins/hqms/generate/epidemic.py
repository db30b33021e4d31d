"""How many patients a hospital sees on a day, and who they are.

Influenza in mainland China peaks in winter (around January); southern provinces such as 广东
also see a smaller early-summer wave. Fever-clinic attendance follows flu partly; ordinary
outpatient volume is flat apart from weekends. Age mixes lean to children and the elderly for
flu. All volumes are per unit of hospital size at ``--scale 1``.
"""
from __future__ import annotations

import numpy as np

#: Mean daily visits per unit of hospital size at scale 1 (flu at the winter peak).
BASE_FLU = 9.0
BASE_FEVER = 6.0
BASE_OUTPATIENT = 22.0
#: Probability a flu visit's 就诊类型 is 01 门诊 / 02 急诊 / 03 住院 (adults; see visit_type_probs).
VISIT_TYPE_ADULT = (0.70, 0.23, 0.07)
VISIT_TYPE_VULNERABLE = (0.60, 0.25, 0.15)

#: Weights over people.AGE_BANDS: 0–4, 5–14, 15–24, 25–44, 45–64, 65–79, 80+.
AGE_MIX_FLU = (0.17, 0.23, 0.08, 0.17, 0.15, 0.13, 0.07)
AGE_MIX_FEVER = (0.07, 0.10, 0.10, 0.30, 0.23, 0.14, 0.06)
AGE_MIX_OUTPATIENT = (0.07, 0.08, 0.08, 0.30, 0.27, 0.15, 0.05)

_WEEKDAY = np.array([1.05, 1.0, 1.0, 1.0, 0.98, 0.8, 0.7])  # Monday … Sunday


def _bump(days: np.ndarray, centre_doy: int, width: float) -> np.ndarray:
    doy = (days - days.astype("datetime64[Y]")).astype(int)
    dist = np.abs(doy - centre_doy)
    dist = np.minimum(dist, 365 - dist)
    return np.exp(-0.5 * (dist / width) ** 2)


def flu_season(days: np.ndarray, province_code: str) -> np.ndarray:
    """Relative flu activity (≈0.1 in summer, 1 at the January peak) for datetime64[D] days."""
    level = 0.1 + 0.9 * _bump(days, 15, 30.0)
    if province_code == "44":
        level = level + 0.35 * _bump(days, 175, 22.0)
    return level


def influenza_b_share(days: np.ndarray) -> np.ndarray:
    """Share of influenza B among positives: B comes later in the season (spring)."""
    return 0.1 + 0.45 * _bump(days, 80, 35.0)


def weekday_factor(days: np.ndarray) -> np.ndarray:
    # 1970-01-01 was a Thursday (weekday 3).
    return _WEEKDAY[(days.astype("datetime64[D]").astype(int) + 3) % 7]


def visit_type_probs(age: np.ndarray) -> np.ndarray:
    """Per-row probabilities of 01/02/03 (children under 5 and people 65+ are admitted more)."""
    vulnerable = (age < 5) | (age >= 65)
    return np.where(vulnerable[:, None], VISIT_TYPE_VULNERABLE, VISIT_TYPE_ADULT)
