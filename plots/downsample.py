"""Render-time downsampling: MinMaxLTTB (``tsdownsample``) within a point budget per chart.

A chart draws at most ``CHART_BUDGET`` points in all (every x value of every trace, markers included), and a
trace at most ``MAX_POINTS``: about 2,000 per trace for a few runs, a few hundred each for 100 runs
(``trace_budget``). MinMaxLTTB preselects the minimum and maximum of many small buckets and runs LTTB on
those, so spikes survive; on top of that the global minimum and maximum are always kept (LTTB alone does not
promise them). The store keeps every point; pages read a downsampled level of it (``db.lod``) with at least
the points a trace will draw, and cut it down here.
"""

from __future__ import annotations

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

MAX_POINTS = 2_000  # per trace
CHART_BUDGET = 100_000  # per chart, all traces together
MIN_POINTS = 4  # a trace keeps at least its ends and extremes
_LTTB = MinMaxLTTBDownsampler()


def trace_budget(n_traces: int, reserved: int = 0, *, budget: int = CHART_BUDGET) -> int:
    """Points each of ``n_traces`` line traces may draw so that they and ``reserved`` marker points stay
    within ``budget``: ``MAX_POINTS`` for a few traces, fewer as traces multiply (never below
    ``MIN_POINTS``; with more traces than ``budget / MIN_POINTS`` the budget cannot hold)."""
    if n_traces <= 0:
        return MAX_POINTS
    return max(MIN_POINTS, min(MAX_POINTS, (budget - reserved) // n_traces))


def downsample_index(x: np.ndarray, y: np.ndarray, n_out: int = MAX_POINTS) -> np.ndarray:
    """Sorted indices of at most ``n_out`` points of (x, y) to draw, keeping the first, last, min and max.

    ``x`` must be increasing and ``y`` finite (drop non-finite points first: ``finite_xy``).
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=float)
    n = y.size
    if n <= n_out:
        return np.arange(n)
    if n_out < MIN_POINTS:
        raise ValueError(f"n_out must be at least {MIN_POINTS} to keep the ends and extremes, got {n_out}")
    if n_out < 8:  # too few for LTTB's buckets: the ends and extremes alone
        return np.unique(np.array([0, n - 1, int(np.argmin(y)), int(np.argmax(y))]))
    idx = _LTTB.downsample(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y), n_out=n_out - 2)
    keep = np.union1d(np.asarray(idx, dtype=np.int64), [0, n - 1, int(np.argmin(y)), int(np.argmax(y))])
    return keep  # LTTB already holds the ends, so at most 2 points are added: ≤ n_out


def finite_xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of points with a finite x and y."""
    return np.isfinite(np.asarray(x, dtype=float)) & np.isfinite(np.asarray(y, dtype=float))
