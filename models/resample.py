"""Bounding the size of the curves the trend models see.

Stage, collapse, forecast and backtest fit curves with many candidate knots, decay shapes and bootstrap
replicates; their cost grows with the number of points while their answers do not change once a smooth
curve is well sampled. ``bin_means`` cuts a long curve into equal step buckets and keeps, per non-empty
bucket, the mean value at the bucket's last step (an integer step that exists, so evaluation/rollout pairing
by step keeps working). Curves of at most ``max_points`` points are returned unchanged.
"""

from __future__ import annotations

import numpy as np

MAX_MODEL_POINTS = 500


def bin_means(steps: np.ndarray, values: np.ndarray, max_points: int = MAX_MODEL_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) with at most ``max_points`` points: bucket means at each bucket's last step."""
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=float)
    if len(steps) <= max_points:
        return steps, values
    edges = np.linspace(float(steps[0]), float(steps[-1]), max_points + 1)
    bucket = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, max_points - 1)
    counts = np.bincount(bucket, minlength=max_points)
    sums = np.bincount(bucket, weights=values, minlength=max_points)
    last = np.full(max_points, -1, dtype=np.int64)
    np.maximum.at(last, bucket, np.asarray(steps, dtype=np.int64))
    keep = counts > 0
    return last[keep], sums[keep] / counts[keep]
