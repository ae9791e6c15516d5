"""Interval quantiles shared by the fits and the forecasts: the normal 95% multiplier and Student-t quantiles."""

from __future__ import annotations

from functools import lru_cache

DEFAULT_CONFIDENCE = 0.95
Z95 = 1.959963984540054


@lru_cache(maxsize=4096)
def t_quantile(df: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Two-sided Student-t quantile with ``df`` degrees of freedom (at least 1); scipy is imported on first use."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, max(int(df), 1)))
