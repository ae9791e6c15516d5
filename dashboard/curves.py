"""One metric of one run made ready to draw: x axis chosen, smoothed at full resolution, downsampled.

What is read: without smoothing, the coarsest stored level (``db.lod``, table ``metric_lod``) that still has
at least the points the trace will draw (``choose_level``), else every stored point (short series, stores
written before levels existed). With smoothing, every stored point: the debiased EMA is a recursion over all
points, so it runs on the full-resolution series *before* downsampling and the smoothed line is the same
whatever the zoom or the number of runs shown. Raw and smoothed lines are downsampled separately (each keeps
its own extremes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dashboard.smoothing import ema_debiased
from plots.downsample import MAX_POINTS, downsample_index, finite_xy

X_AXES = ("step", "wall time")


@dataclass(frozen=True, eq=False)
class Curve:
    """Points to draw for one metric: raw and (when smoothing) smoothed, each ≤ ``MAX_POINTS``."""

    x: np.ndarray
    y: np.ndarray
    step: np.ndarray
    smooth_x: np.ndarray | None
    smooth_y: np.ndarray | None
    smooth_step: np.ndarray | None
    n_total: int  # finite points the curve was made from (every stored point, or the level's rows)
    x_axis: str  # "step" or "wall time" (hours since the run's first point)
    steps_all_first: float | None = None
    steps_all_last: float | None = None
    # step → x mapping (for markers at a step): anchors from the full-resolution series
    anchor_steps: np.ndarray | None = None
    anchor_x: np.ndarray | None = None
    level: int | None = None  # the stored level read (db.lod), None: every stored point

    def x_at(self, step: float) -> float:
        """x coordinate of ``step`` (identity on the step axis; interpolated/extrapolated wall time)."""
        if self.x_axis == "step" or self.anchor_steps is None or self.anchor_steps.size == 0:
            return float(step)
        s, w = self.anchor_steps, self.anchor_x
        if s.size == 1:
            return float(w[0])
        if step <= s[-1]:
            return float(np.interp(step, s, w))
        rate = (w[-1] - w[0]) / (s[-1] - s[0]) if s[-1] > s[0] else 0.0
        return float(w[-1] + (step - s[-1]) * rate)


def wall_hours(wall_time: np.ndarray) -> np.ndarray | None:
    """Hours since the first finite wall time, or None when the run has no usable wall times."""
    w = np.asarray(wall_time, dtype=float)
    if w.size == 0 or not np.isfinite(w).all():
        return None
    return (w - w[0]) / 3600.0


def choose_level(levels: Mapping[int, int], n_out: int) -> int | None:
    """The coarsest stored level with at least ``n_out`` rows ({level: rows}), or None: read every point."""
    enough = [level for level, n in levels.items() if n >= n_out]
    return max(enough) if enough else None


def prepare_curve(steps: np.ndarray, values: np.ndarray, wall_time: np.ndarray | None = None, *,
                  smoothing: float = 0.0, x_axis: str = "step", n_out: int = MAX_POINTS,
                  level: int | None = None) -> Curve:
    """The drawable curve of one series (steps increasing). ``x_axis="wall time"`` falls back to steps when
    the series lacks wall times (check ``Curve.x_axis``)."""
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {X_AXES}, got {x_axis!r}")
    if smoothing > 0 and level is not None:
        raise ValueError("smoothing runs on every stored point, not on a downsampled level")
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    x_full = steps
    used = "step"
    if x_axis == "wall time" and wall_time is not None:
        hours = wall_hours(wall_time)
        if hours is not None and np.all(np.diff(hours) >= 0):
            x_full, used = hours, "wall time"
    ok = finite_xy(x_full, values)
    xs, ys, ss = x_full[ok], values[ok], steps[ok]
    keep = downsample_index(xs, ys, n_out)
    sx = sy = sst = None
    if smoothing > 0 and ys.size:
        smooth = ema_debiased(ys, smoothing)
        k2 = downsample_index(xs, smooth, n_out)
        sx, sy, sst = xs[k2], smooth[k2], ss[k2]
    return Curve(x=xs[keep], y=ys[keep], step=ss[keep], smooth_x=sx, smooth_y=sy, smooth_step=sst,
                 n_total=int(ys.size), x_axis=used,
                 steps_all_first=float(ss[0]) if ss.size else None, steps_all_last=float(ss[-1]) if ss.size else None,
                 anchor_steps=ss[keep] if used != "step" else None, anchor_x=xs[keep] if used != "step" else None,
                 level=level)
