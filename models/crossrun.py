"""A forecast learned from finished runs: what runs like this one did after the point it has reached.

Each run at a cutoff is described by ``models.forecast`` features: the gains its curve methods and the law
predict from its level to the target, the gain its recent slope projects, how much of its entropy it has
spent and how far the target lies (in units of the span seen). The model is a ridge regression of the gain
that actually followed — on a bounded scale: logit((x − lo)/(hi − lo)) for a metric with a range (so a
predicted gain near the top shrinks, and the forecast never leaves [lo, hi]); for an unbounded one, gains in
units of the run's own spread before the cutoff.

It is only used with at least ``MIN_TRAIN_RUNS`` finished runs to learn from, and in a backtest it is never
trained on the run it predicts (leave-one-run-out).

It never extrapolates: a feature whose spread over the training runs is negligible (below ``MIN_SPREAD`` of
its typical size — e.g. ``horizon_ratio`` when every training run was cut at the same fraction) is dropped,
and a predicted run's standardised features are clipped to the range the training runs spanned, so one
feature far off the training runs cannot move the forecast by more than the training runs did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FEATURES = ("gain_saturating", "gain_sigmoid", "gain_power", "gain_law", "slope_gain", "entropy_spent",
            "horizon_ratio")
GAIN_FEATURES = ("gain_saturating", "gain_sigmoid", "gain_power", "gain_law", "slope_gain")
MIN_TRAIN_RUNS = 6
RIDGE = 3.0
EPS = 0.005
#: a feature is dropped when its training standard deviation is below this share of max(|mean|, FLOOR)
MIN_SPREAD = 0.05
SPREAD_FLOOR = 0.05


@dataclass(frozen=True)
class RunPoint:
    """One run at one cutoff, as the cross-run model sees it."""

    features: Mapping[str, float]
    level: float
    lo: float  # the metric's range (±inf when unbounded)
    hi: float
    unit: float  # scale of gains for an unbounded metric (the run's spread before the cutoff)
    observed: float = float("nan")  # the final score (finished runs)


def _to_t(x: np.ndarray, p: RunPoint) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if np.isfinite(p.lo) and np.isfinite(p.hi):
        u = np.clip((x - p.lo) / (p.hi - p.lo), EPS, 1 - EPS)
        return np.log(u / (1 - u))
    return (x - p.level) / p.unit


def _from_t(t: float, p: RunPoint) -> float:
    if np.isfinite(p.lo) and np.isfinite(p.hi):
        return float(p.lo + (p.hi - p.lo) / (1 + np.exp(-t)))
    return float(p.level + p.unit * t)


def design_row(p: RunPoint) -> np.ndarray:
    """Features on the model's scale: gains as differences of T(level + gain) − T(level)."""
    base = _to_t(np.array([p.level]), p)[0]
    row = []
    for name in FEATURES:
        raw = p.features.get(name)
        v = np.nan if raw is None else float(raw)  # stored results hold None where a feature was not finite
        if name in GAIN_FEATURES:
            v = _to_t(np.array([p.level + v]), p)[0] - base if np.isfinite(v) else 0.0
        row.append(v)
    return np.array(row, dtype=float)


def target(p: RunPoint) -> float:
    return float(_to_t(np.array([p.observed]), p)[0] - _to_t(np.array([p.level]), p)[0])


@dataclass(frozen=True)
class Model:
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    sd: np.ndarray
    fill: np.ndarray  # per-feature value used where a run's feature is missing
    rmse: float  # in-sample error in the metric's units (the scale of its forecasts)
    n: int
    zmin: np.ndarray = None  # type: ignore[assignment]  # the training runs' standardised range per feature
    zmax: np.ndarray = None  # type: ignore[assignment]
    dropped: tuple[str, ...] = ()  # features with negligible training spread (coefficient 0)

    def standardised(self, x: np.ndarray) -> np.ndarray:
        """A design row standardised and clipped to the training range (missing values filled)."""
        x = np.where(np.isfinite(x), x, self.fill)
        z = (x - self.mean) / self.sd
        return z if self.zmin is None else np.clip(z, self.zmin, self.zmax)

    def predict(self, p: RunPoint) -> float:
        t = self.intercept + float(self.standardised(design_row(p)) @ self.coef)
        base = _to_t(np.array([p.level]), p)[0]
        return _from_t(base + t, p)


@dataclass(frozen=True)
class _Design:
    """Every run's design row, target and scale, computed once for all the fits of a leave-one-run-out."""

    X: np.ndarray  # design rows, NaN where a feature is missing
    y: np.ndarray  # realised gains on the model's scale
    base: np.ndarray  # T(level)
    lo: np.ndarray
    hi: np.ndarray
    level: np.ndarray
    unit: np.ndarray
    observed: np.ndarray

    @classmethod
    def of(cls, points: Sequence[RunPoint]) -> _Design:
        def col(name: str) -> np.ndarray:
            return np.array([getattr(p, name) for p in points], dtype=float)

        return cls(np.array([design_row(p) for p in points]).reshape(len(points), len(FEATURES)),
                   np.array([target(p) for p in points]), np.array([_to_t(np.array([p.level]), p)[0] for p in points]),
                   col("lo"), col("hi"), col("level"), col("unit"), col("observed"))

    def back(self, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``_from_t`` of the runs ``idx`` (vectorised)."""
        lo, hi = self.lo[idx], self.hi[idx]
        bounded = np.isfinite(lo) & np.isfinite(hi)
        with np.errstate(over="ignore", invalid="ignore"):
            on_range = lo + (hi - lo) / (1 + np.exp(-t))
            unbounded = self.level[idx] + self.unit[idx] * t
        return np.where(bounded, on_range, unbounded)


def fit(points: Sequence[RunPoint]) -> Model:
    """Ridge regression of the realised gain on the features (module docstring)."""
    return _fit(_Design.of(points), np.arange(len(points)))


def _fit(d: _Design, idx: np.ndarray) -> Model:
    X, y = d.X[idx], d.y[idx]
    finite = np.isfinite(X)
    fill = np.array([np.median(X[finite[:, j], j]) if finite[:, j].any() else 0.0 for j in range(X.shape[1])])
    X = np.where(finite, X, fill)
    mean, sd = X.mean(axis=0), X.std(axis=0)
    keep = sd >= MIN_SPREAD * np.maximum(np.abs(mean), SPREAD_FLOOR)
    sd = np.where(keep, sd, 1.0)
    Z = np.where(keep, (X - mean) / sd, 0.0)
    ym = float(y.mean())
    coef = np.zeros(Z.shape[1])
    if keep.any():
        Zk = Z[:, keep]
        coef[keep] = np.linalg.solve(Zk.T @ Zk + RIDGE * np.eye(Zk.shape[1]), Zk.T @ (y - ym))
    err = d.back(idx, d.base[idx] + ym + Z @ coef) - d.observed[idx]  # in-sample, in the metric's units
    dropped = tuple(f for f, k in zip(FEATURES, keep, strict=True) if not k)
    return Model(coef, ym, mean, sd, fill, float(np.sqrt(np.mean(np.square(err)))), len(idx),
                 Z.min(axis=0), Z.max(axis=0), dropped)


def loro(points: Sequence[RunPoint], groups: Sequence[str | None] | None = None,
         min_group: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-run-out forecasts and scales of every run (NaN with too few other runs): the model for run
    i is fitted on the other runs of its group when the group has ``min_group`` of them, else on all others."""
    n = len(points)
    pred, scale = np.full(n, np.nan), np.full(n, np.nan)
    d = _Design.of(points) if n else None
    for i in range(n):
        others = _pool(i, n, groups, min_group)
        if len(others) < MIN_TRAIN_RUNS:
            continue
        m = _fit(d, np.array(others))
        t = m.intercept + float(m.standardised(d.X[i]) @ m.coef)
        pred[i], scale[i] = float(d.back(np.array([i]), np.array([d.base[i] + t]))[0]), m.rmse
    return pred, scale


def _pool(i: int | None, n: int, groups: Sequence[str | None] | None, min_group: int) -> list[int]:
    others = [j for j in range(n) if j != i]
    if groups is not None and i is not None and groups[i] is not None:
        same = [j for j in others if groups[j] == groups[i]]
        if len(same) >= min_group:
            return same
    return others
