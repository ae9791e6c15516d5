"""Two-sided intervals: the default confidence, the normal quantile at 95% and the Student-t quantile.

Every interval the product states (the law's band and ceiling, a scaling coefficient, a forecast's interval,
a lift between two runs) is at ``DEFAULT_CONFIDENCE`` unless a caller asks otherwise, and takes its quantile
from here.
"""

from __future__ import annotations

from functools import lru_cache

DEFAULT_CONFIDENCE = 0.95
#: the two-sided 95% quantile of the standard normal, scipy.stats.norm.ppf(0.975)
Z95 = 1.959963984540054


@lru_cache(maxsize=4096)
def t_quantile(df: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The two-sided Student-t quantile on ``df`` degrees of freedom (at least 1). Cached: scipy's ppf costs far
    more than a law fit; scipy is imported on first use, so that reading stored results never pays for it."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, max(int(df), 1)))
