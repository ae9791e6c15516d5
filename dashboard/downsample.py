"""Render-time downsampling: MinMaxLTTB (``tsdownsample``) to at most ``MAX_POINTS`` per trace.

The store keeps every point; a trace is cut down only when it is drawn. MinMaxLTTB preselects the minimum
and maximum of many small buckets and runs LTTB on those, so spikes survive; on top of that the global
minimum and maximum are always kept (LTTB alone does not promise them).
"""

from __future__ import annotations

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

MAX_POINTS = 2_000
_LTTB = MinMaxLTTBDownsampler()


def downsample_index(x: np.ndarray, y: np.ndarray, n_out: int = MAX_POINTS) -> np.ndarray:
    """Sorted indices of at most ``n_out`` points of (x, y) to draw, keeping the first, last, min and max.

    ``x`` must be increasing and ``y`` finite (drop non-finite points first: ``finite_xy``).
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=float)
    n = y.size
    if n <= n_out:
        return np.arange(n)
    if n_out < 4:
        raise ValueError(f"n_out must be at least 4 to keep the ends and extremes, got {n_out}")
    idx = _LTTB.downsample(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y), n_out=n_out - 2)
    keep = np.union1d(np.asarray(idx, dtype=np.int64), [0, n - 1, int(np.argmin(y)), int(np.argmax(y))])
    return keep  # LTTB already holds the ends, so at most 2 points are added: ≤ n_out


def finite_xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of points with a finite x and y."""
    return np.isfinite(np.asarray(x, dtype=float)) & np.isfinite(np.asarray(y, dtype=float))
