"""Entropy decay curves: exponential, power and linear models of H(step), chosen by held-out residual.

Models (t = step − step_min, so t = 0 at the first point used):

* ``exponential``  H(t) = f + (h0 − f)·e^(−t/τ),  0 ≤ f ≤ end level (the floor).   params f, h0, tau
* ``power``        H(t) = f + c·(t + t0)^(−α),     0 ≤ f ≤ end level, t0 > 0, 0 < α ≤ 3.   params f, c, t0, alpha
* ``linear``       H(t) = h0 − k·t                 (floor 0: it never levels).   params h0, k

Fitting. Each model is linear in its level parameters (f and a scale) once its shape parameters (τ, or
t0 and α) are fixed, so the shape parameters are searched on a log-spaced grid and the level parameters are
solved in closed form for every grid point at once (array arithmetic, no optimiser, no starting guess),
with the constraints 0 ≤ f ≤ end level applied exactly (rows where the free solution leaves the range are
re-solved with f at the bound). A second, finer grid around the best shape refines it. Per-step entropy is noisy and has spikes, so
the least squares is made robust by iteratively reweighting (Huber weights, tuning 1.345 × the MAD scale
of the residuals, two passes on the coarse grid): one spike cannot bend the curve.

The floor is also bounded above by the curve's end level (the median of the last max(5, 10%) points): a
floor above where entropy already is would mean entropy has to rise again to reach its asymptote, which is
not a decay — without the bound an exponential fitted to a slowly decaying tail put its floor at 0.118 when
the smoothed entropy at the end of the window was 0.108 (simulated 1.5B run, first 30%).

Choosing the model. What the decay curve is for is extrapolation (when will entropy reach its floor?), so
each model is fitted to the first 75% of the points and scored by its RMSE on the held-out last 25%; the
model with the smallest held-out RMSE wins, except that a model with fewer parameters is preferred when
it is within 2% of the best. The winner is then refitted on all points. With fewer than 12 points the
held-out tail would be too short to judge, so AIC (n·ln(RSS/n) + 2k) on all points decides instead.
``candidates`` lists the score of every model tried; ``criterion`` says which score it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import FitError

KINDS = ("exponential", "power", "linear")
N_PARAMS = {"linear": 2, "exponential": 3, "power": 4}
MIN_POINTS = 4
HOLDOUT_FRACTION = 0.25
MIN_POINTS_HOLDOUT = 12
PARSIMONY = 0.02  # a simpler model within 2% of the best held-out RMSE is preferred
HUBER_K = 1.345
IRLS_PASSES = 2
#: power exponents beyond this (with a large t0) only mimic an exponential; leave that shape to `exponential`
MAX_ALPHA = 3.0
#: the floor may not exceed the curve's end level, the median of the last max(END_POINTS, END_FRACTION·n) points
END_POINTS = 5
END_FRACTION = 0.1


@dataclass(frozen=True)
class DecayFit:
    """A fitted entropy decay curve H(step) and the evidence for choosing it."""

    kind: str  # "exponential" | "power" | "linear"
    params: dict[str, float]  # see the module docstring; time is t = step − step_min
    rmse: float  # in-sample RMSE of this fit on all n points
    n: int
    step_min: int
    step_max: int
    floor: float  # the asymptote the model decays toward (0 for linear)
    candidates: tuple[tuple[str, float], ...]  # (kind, score) of every model tried, score per `criterion`
    criterion: str = "holdout_rmse"  # "holdout_rmse" (last 25% held out) or "aic" (n < 12)

    def predict(self, steps: np.ndarray | float) -> np.ndarray:
        """Entropy the model gives at ``steps`` (absolute step numbers, any shape)."""
        t = np.asarray(steps, dtype=float) - self.step_min
        return _evaluate(self.kind, self.params, t)

    def step_at(self, level: float) -> float | None:
        """First step ≥ step_min at which the curve is at or below ``level``; None if it never gets there.

        A decaying exponential or power curve never reaches its own floor, so ``level ≤ floor`` gives None
        unless the curve already starts at or below it.
        """
        if float(self.predict(self.step_min)) <= level:
            return float(self.step_min)
        t = _time_at(self.kind, self.params, float(level))
        return None if t is None else float(self.step_min + t)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "params": dict(self.params), "rmse": self.rmse, "n": self.n,
            "step_min": self.step_min, "step_max": self.step_max, "floor": self.floor,
            "candidates": [list(c) for c in self.candidates], "criterion": self.criterion,
        }


def fit_decay(
    steps: Sequence[float] | np.ndarray,
    entropy: Sequence[float] | np.ndarray,
    *,
    kinds: Sequence[str] = KINDS,
) -> DecayFit:
    """Fit each model in ``kinds`` to H(step) and return the one chosen by held-out residual (see module)."""
    t_abs, h = _validate(steps, entropy, kinds)
    step_min = int(np.floor(t_abs[0]))
    t = t_abs - step_min
    n = len(h)

    if n >= MIN_POINTS_HOLDOUT and len(kinds) > 1:
        criterion = "holdout_rmse"
        cut = n - max(3, int(round(n * HOLDOUT_FRACTION)))
        scores = {}
        for kind in kinds:
            params = _fit_kind(kind, t[:cut], h[:cut])
            resid = h[cut:] - _evaluate(kind, params, t[cut:])
            scores[kind] = float(np.sqrt(np.mean(resid**2)))
        fits = {}
    else:
        criterion = "aic"
        scores, fits = {}, {}
        for kind in kinds:
            params = _fit_kind(kind, t, h)
            rss = float(np.sum((h - _evaluate(kind, params, t)) ** 2))
            scores[kind] = n * np.log(max(rss, 1e-300) / n) + 2 * N_PARAMS[kind]
            fits[kind] = params

    chosen = _choose(scores, criterion)
    params = fits.get(chosen) or _fit_kind(chosen, t, h)
    resid = h - _evaluate(chosen, params, t)
    return DecayFit(
        kind=chosen,
        params=params,
        rmse=float(np.sqrt(np.mean(resid**2))),
        n=n,
        step_min=step_min,
        step_max=int(np.ceil(t_abs[-1])),
        floor=float(params.get("f", 0.0)),
        candidates=tuple((k, float(scores[k])) for k in kinds),
        criterion=criterion,
    )


# --- validation and selection -----------------------------------------------------------------------


def _validate(steps, entropy, kinds) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(steps, dtype=float).ravel()
    h = np.asarray(entropy, dtype=float).ravel()
    if t.shape != h.shape:
        raise FitError(f"steps and entropy differ in length: {t.size} vs {h.size}", "shape")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise FitError(f"unknown decay model(s) {unknown or list(kinds)}: choose among {list(KINDS)}",
                       "bad_option")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(h))):
        raise FitError("steps or entropy contain NaN or infinite values; drop them before fitting the decay",
                       "non_finite")
    if t.size < MIN_POINTS:
        raise FitError(f"need at least {MIN_POINTS} entropy points to fit a decay curve, got {t.size}",
                       "too_few_points")
    order = np.argsort(t, kind="stable")
    t, h = t[order], h[order]
    if t[-1] - t[0] <= 0:
        raise FitError("all entropy points are at the same step; a decay curve needs a span of steps",
                       "no_step_spread")
    return t, h


def _choose(scores: dict[str, float], criterion: str) -> str:
    """Best score; with held-out RMSE a simpler model within PARSIMONY of the best wins."""
    best = min(scores, key=scores.__getitem__)
    if criterion != "holdout_rmse":
        return best
    limit = scores[best] * (1 + PARSIMONY) + 1e-15
    near = [k for k in scores if scores[k] <= limit]
    return min(near, key=lambda k: (N_PARAMS[k], scores[k]))


# --- models -----------------------------------------------------------------------------------------


def _evaluate(kind: str, p: dict[str, float], t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    if kind == "exponential":
        return p["f"] + (p["h0"] - p["f"]) * np.exp(-t / p["tau"])
    if kind == "power":
        with np.errstate(invalid="ignore", divide="ignore"):
            return p["f"] + p["c"] * np.power(np.maximum(t + p["t0"], 1e-12), -p["alpha"])
    return p["h0"] - p["k"] * t


def _time_at(kind: str, p: dict[str, float], level: float) -> float | None:
    """Smallest t ≥ 0 where the (monotone) model crosses down to ``level``; None if it never does."""
    if kind == "linear":
        return (p["h0"] - level) / p["k"] if p["k"] > 0 else None
    if kind == "exponential":
        amp = p["h0"] - p["f"]
        if amp <= 0 or level <= p["f"]:
            return None
        return float(-p["tau"] * np.log((level - p["f"]) / amp))
    if p["c"] <= 0 or level <= p["f"]:
        return None
    return max(0.0, float(((level - p["f"]) / p["c"]) ** (-1.0 / p["alpha"]) - p["t0"]))


def end_level(h: np.ndarray) -> float:
    """Robust level of the curve at its end: the median of the last max(5, 10%) points."""
    k = min(len(h), max(END_POINTS, int(np.ceil(END_FRACTION * len(h)))))
    return float(np.median(h[-k:]))


def _fit_kind(kind: str, t: np.ndarray, h: np.ndarray) -> dict[str, float]:
    if kind == "linear":
        return _fit_linear(t, h)
    span = max(float(t[-1] - t[0]), 1.0)
    f_max = max(end_level(h), 0.0)
    if kind == "exponential":
        def basis(tau: np.ndarray) -> np.ndarray:
            return np.exp(-t[None, :] / tau[:, None])
        coarse = span * np.logspace(-2.5, 1.5, 64)
        g, f, c = _grid_search(basis, coarse, h, refine=1.15, f_max=f_max)
        return {"f": f, "h0": f + c, "tau": float(g)}

    def basis_p(g: np.ndarray) -> np.ndarray:
        return np.power(t[None, :] + g[:, 0:1], -g[:, 1:2])
    t0s = span * np.logspace(-3, 0.5, 18)
    alphas = np.logspace(-1.3, np.log10(MAX_ALPHA), 18)
    coarse = np.stack(np.meshgrid(t0s, alphas, indexing="ij"), axis=-1).reshape(-1, 2)
    g, f, c = _grid_search(basis_p, coarse, h, refine=np.array([1.35, 1.12]), upper=np.array([np.inf, MAX_ALPHA]),
                           f_max=f_max)
    return {"f": f, "c": c, "t0": float(g[0]), "alpha": float(g[1])}


def _fit_linear(t: np.ndarray, h: np.ndarray) -> dict[str, float]:
    """Huber-IRLS straight line."""
    w = np.ones_like(h)
    for _ in range(IRLS_PASSES + 1):
        sw = w.sum()
        tm, hm = (w * t).sum() / sw, (w * h).sum() / sw
        stt = (w * (t - tm) ** 2).sum()
        slope = (w * (t - tm) * (h - hm)).sum() / stt if stt > 0 else 0.0
        h0 = hm - slope * tm
        w = _huber_weights(h - (h0 + slope * t))
    return {"h0": float(h0), "k": float(-slope)}


def _grid_search(basis, coarse: np.ndarray, h: np.ndarray, refine, upper=np.inf,
                 f_max: float = np.inf) -> tuple[np.ndarray, float, float]:
    """Robust search over shape parameters: coarse grid, IRLS reweighting, then a finer grid around the best."""
    w = np.ones_like(h)
    B = basis(coarse)  # evaluated once, reused by every reweighting pass
    for _ in range(IRLS_PASSES):
        best, f, c = _solve_grid(B, h, w, coarse, f_max)
        w = _huber_weights(h - (f + c * basis(np.asarray(best)[None, ...])[0]))
    # finer grid around the best shape (multiplicative steps, each shape parameter on its own axis)
    if np.ndim(best):
        axes = best[None, :] * np.power(np.asarray(refine)[None, :], np.linspace(-1, 1, 9)[:, None])
        fine = np.minimum(np.stack([a.ravel() for a in np.meshgrid(*axes.T, indexing="ij")], axis=-1), upper)
    else:
        fine = best * np.power(refine, np.linspace(-1, 1, 21))
    best, f, c = _solve_grid(basis(fine), h, w, fine, f_max)
    return best, f, c


def _solve_grid(B: np.ndarray, h: np.ndarray, w: np.ndarray, grid: np.ndarray, f_max: float = np.inf):
    """Weighted least squares of h ≈ f + c·B[g] for every grid row g at once, with 0 ≤ f ≤ f_max; best row."""
    sw = w.sum()
    hm = (w * h).sum() / sw
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        bm = (B * w).sum(axis=1) / sw
        dB = B - bm[:, None]
        sbb = (w * dB * dB).sum(axis=1)
        c = (w * dB * (h - hm)).sum(axis=1) / sbb
        f = hm - c * bm
        # f < 0 violates the floor constraint: re-solve those rows through the origin (f = 0)
        c0 = (w * B * h).sum(axis=1) / (w * B * B).sum(axis=1)
        neg = f < 0
        f = np.where(neg, 0.0, f)
        c = np.where(neg, c0, c)
        # f > f_max: a floor above where the curve already is (entropy would have to rise to reach it)
        high = f > f_max
        c1 = (w * B * (h - f_max)).sum(axis=1) / (w * B * B).sum(axis=1)
        f = np.where(high, f_max, f)
        c = np.where(high, c1, c)
        resid = h[None, :] - f[:, None] - c[:, None] * B
        loss = (w * resid * resid).sum(axis=1)
    loss = np.where(np.isfinite(loss), loss, np.inf)
    i = int(np.argmin(loss))
    return grid[i], float(f[i]), float(c[i])


def _huber_weights(resid: np.ndarray) -> np.ndarray:
    """Huber IRLS weights with the MAD scale of the residuals."""
    scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    if scale <= 0:
        return np.ones_like(resid)
    a = np.abs(resid) / (HUBER_K * scale)
    return np.where(a <= 1, 1.0, 1.0 / np.maximum(a, 1e-12))
