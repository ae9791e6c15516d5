"""When a law fit is too weak to be trusted: a low R², or a ceiling interval that spans most of the metric's range.

A weak fit is still shown (with this reason beside it) but never carries the headline: the law method gets no
weight in that run's forecast (``models.selection``).
"""

from __future__ import annotations

import math

from models.metric_range import MetricRange

#: below this R² the law explains too little of the run's (H, R) pairs
WEAK_R2 = 0.5
#: a ceiling interval wider than this share of the metric's range says little about the ceiling
WEAK_SPAN = 0.5


def weak_fit_reason(r2: float | None, ceiling_lo: float | None, ceiling_hi: float | None,
                    rng: MetricRange) -> str | None:
    """Why a law fit is weak (one sentence), or None when it is not."""
    if r2 is not None and math.isfinite(r2) and r2 < WEAK_R2:
        return f"weak fit: R² {r2:.2f} < {WEAK_R2:g}, the law explains little of this run"
    b = rng.bounds
    if b is not None and ceiling_lo is not None and ceiling_hi is not None:
        width = b[1] - b[0]
        span = float(ceiling_hi) - float(ceiling_lo)
        if width > 0 and math.isfinite(span) and span > WEAK_SPAN * width:
            return (f"weak fit: the ceiling's 95% interval spans {span / width:.0%} of the metric's range "
                    f"(more than {WEAK_SPAN:.0%})")
    return None
