"""Debiased exponential moving average, as TensorBoard's smoothing slider computes it.

    last ← weight·last + (1 − weight)·y_k        (last starts at 0)
    smoothed_k = last / (1 − weight^(k+1))       (bias correction: the EMA started from 0)

``k`` counts finite points only; non-finite points are carried through as NaN and do not move the average.
On a constant series the result is that constant (up to rounding), at every point including the first.
"""

from __future__ import annotations

import numpy as np


def ema_debiased(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased EMA of ``values`` with smoothing ``weight`` in [0, 1) (0 returns the values unchanged)."""
    y = np.asarray(values, dtype=float)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    if weight == 0.0 or y.size == 0:
        return y.copy()
    from scipy.signal import lfilter  # imported on first use: a page that does not smooth never pays for it

    finite = np.isfinite(y)
    out = np.full(y.shape, np.nan)
    yf = y[finite]
    if yf.size == 0:
        return out
    ema = lfilter([1.0 - weight], [1.0, -weight], yf)
    k = np.arange(1, yf.size + 1, dtype=float)
    debias = -np.expm1(k * np.log(weight))  # 1 − weight^k, accurate for weight near 1
    out[finite] = ema / debias
    return out
