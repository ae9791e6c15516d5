"""What the health detectors read: a metric's curve (steps, values, wall time), and the statistics they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.collapse import Trend, trend

__all__ = ["Curve", "Trend", "level", "noise_sd", "recent", "trend_of", "window_median"]


@dataclass(frozen=True)
class Curve:
    """One metric of one run, step-sorted. ``values`` may hold non-finite points (the gradient detector counts
    them); ``wall`` is the wall time in seconds when the source logs it."""

    key: str
    steps: np.ndarray
    values: np.ndarray
    wall: np.ndarray | None = None

    @classmethod
    def of(cls, key: str, steps, values, wall=None) -> Curve:  # noqa: ANN001 - array-likes
        s = np.asarray(steps, dtype=np.int64).ravel()
        v = np.asarray(values, dtype=float).ravel()
        if s.shape != v.shape:
            raise ValueError(f"{key}: {s.size} steps but {v.size} values")
        order = np.argsort(s, kind="stable")
        w = None if wall is None else np.asarray(wall, dtype=float).ravel()[order]
        return cls(key, s[order], v[order], w)

    def finite(self) -> Curve:
        ok = np.isfinite(self.values)
        return Curve(self.key, self.steps[ok], self.values[ok], None if self.wall is None else self.wall[ok])

    def after(self, step: float) -> Curve:
        ok = self.steps > step
        return Curve(self.key, self.steps[ok], self.values[ok], None if self.wall is None else self.wall[ok])

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def span(self) -> tuple[int, int]:
        return int(self.steps[0]), int(self.steps[-1])


def recent(c: Curve, share: float = 0.25, at_least: int = 5) -> Curve:
    """The last ``share`` of a curve's steps (at least ``at_least`` points)."""
    cut = c.steps[-1] - share * (c.steps[-1] - c.steps[0])
    ok = c.steps >= cut
    if ok.sum() < at_least:
        ok = np.arange(len(c)) >= len(c) - at_least
    return Curve(c.key, c.steps[ok], c.values[ok], None if c.wall is None else c.wall[ok])


def level(values: np.ndarray, n: int = 3) -> np.ndarray:
    """Moving mean over ``n`` points (shorter at the start): a level robust to one noisy evaluation."""
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - n, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def noise_sd(values: np.ndarray) -> float:
    """Point-to-point noise from successive differences (1.4826·MAD / √2), robust to trends and steps."""
    d = np.diff(np.asarray(values, dtype=float))
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def trend_of(c: Curve) -> Trend:
    """Theil–Sen slope and Mann–Kendall test of a curve (``models.collapse.trend``)."""
    return trend(c.steps.astype(float), c.values)


def window_median(x: np.ndarray, before: int, after: int, *, without_centre: bool = False) -> np.ndarray:
    """Per point, the median of ``x[i - before : i + after + 1]`` (cut at both ends; without ``x[i]`` itself
    when ``without_centre``): the windows that fit whole in one vectorised call, the cut ones one by one —
    the same numbers as a median per point."""
    x = np.asarray(x, dtype=float)
    n, width = x.size, before + after + 1
    out = np.empty(n)
    inner = range(before, n - after) if n >= width else range(0)
    if len(inner):
        windows = np.lib.stride_tricks.sliding_window_view(x, width)
        if without_centre:
            windows = np.delete(windows, before, axis=1)
        out[inner.start:inner.stop] = np.median(windows, axis=1)
    for i in (i for i in range(n) if i not in inner):
        w = x[max(0, i - before): i + after + 1]
        out[i] = np.median(np.delete(w, min(i, before)) if without_centre else w)
    return out
