"""Rising → plateau stage boundary: a change point found jointly on the entropy and performance curves.

Method. Each curve y(t) is modelled as two straight segments that meet at a knot κ (a continuous hinge,
y = β0 + β1·t + β2·(t − κ)₊), fitted by least squares. For every candidate knot at once (array arithmetic:
one batched 3×3 solve per knot, no loop per knot) the residual sum of squares RSS_c(κ) of each curve c is
computed, and the knots are scored by the joint profile log-likelihood

    ℓ(κ) = −Σ_c (m_c / 2) · ln RSS_c(κ)

(Gaussian noise with its own variance per curve, so the curves' units do not matter). m_c is the curve's
*effective* number of independent points, n_c·(1 − ρ_c)/(1 + ρ_c) with ρ_c the lag-1 autocorrelation of
its residuals at the best knot: per-step entropy is dense and strongly autocorrelated, evaluations are
sparse, and without this correction the 300 entropy points would outvote the 30 evaluations and the
range would be far too narrow. The boundary is the knot maximising ℓ; its range is the likelihood-profile
set {κ : 2·(ℓ(κ̂) − ℓ(κ)) ≤ χ²₁(profile_level)}, with the level calibrated on
simulated runs (see ``PROFILE_LEVEL``) to hold the true switch about 95% of the time.

A switch is called *clear* only when (1) the hinge beats a single straight line by a likelihood-ratio
statistic of at least ``min_lr`` (a conservative bar, since the knot was searched for), (2) in the rising stage entropy falls and performance rises by at least
``MIN_CHANGE_SIGMAS`` residual standard deviations each, and both slow down after the knot (to at most
``max_slope_ratio`` of the earlier rate), and (3) the range spans at most ``max_range_frac`` of the run. Otherwise ``clear`` is False, the
reason is given, and no step is reported (the best knot is still in ``evidence``).

Shares: the fraction of the total entropy drop (start → end) and of the total performance gain realised at
the boundary. Start and end levels are medians of the points within the first and last 1% of the run's steps
(the first/last point when none is that close: sparse evaluations); the level at the boundary is the hinge's fitted value at the knot. A share above 1 means the curve ended below
(entropy: above) its level at the boundary — it is reported as is, not clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from models.errors import FitError

MIN_ENTROPY_POINTS = 8
MIN_PERFORMANCE_POINTS = 5
MAX_KNOTS = 200
#: χ²₁ quantile level of the profile range. The likelihood ratio of a change point's location is not χ²₁
#: (the problem is irregular), and at 0.95 the range held the true switch in as few as 55% of simulated runs;
#: at 0.99 it held it in ≥ 95% of them (tests/test_stages.py), so 0.99 is the default.
PROFILE_LEVEL = 0.99
MIN_LR = 10.0
MAX_SLOPE_RATIO = 0.5
MAX_RANGE_FRAC = 0.5
MIN_SEGMENT_FRAC = 0.05  # each segment covers at least 5% of the run's steps
MIN_CHANGE_SIGMAS = 3.0  # the rising stage must move each curve by ≥ 3 residual standard deviations
END_WINDOW_FRAC = 0.01  # start/end levels for the shares: median over the first/last 1% of the run's steps

METHOD = "continuous two-segment linear fit, joint profile likelihood (effective n), profile range"


@dataclass(frozen=True)
class StageBoundary:
    """Where the rising stage ends; ``step`` and ``range`` are None when there is no clear switch."""

    step: int | None
    range: tuple[int, int] | None  # likelihood-profile range (≈95% coverage, see PROFILE_LEVEL)
    share_entropy_drop: float | None  # fraction of the total entropy drop realised by `step`
    share_gain: float | None  # fraction of the total performance gain realised by `step`
    clear: bool
    reason: str  # why the switch is (or is not) clear
    method: str
    n: int  # entropy points + performance points used
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "step": self.step, "range": list(self.range) if self.range else None,
            "share_entropy_drop": self.share_entropy_drop, "share_gain": self.share_gain,
            "clear": self.clear, "reason": self.reason, "method": self.method, "n": self.n,
            "evidence": dict(self.evidence),
        }


def find_stage_boundary(
    steps: Sequence[float] | np.ndarray,
    entropy: Sequence[float] | np.ndarray,
    performance_steps: Sequence[float] | np.ndarray | None,
    performance: Sequence[float] | np.ndarray | None,
    *,
    profile_level: float = PROFILE_LEVEL,
    min_lr: float = MIN_LR,
    max_slope_ratio: float = MAX_SLOPE_RATIO,
    max_range_frac: float = MAX_RANGE_FRAC,
    max_knots: int = MAX_KNOTS,
) -> StageBoundary:
    """Find the rising → plateau boundary (method in the module docstring).

    ``performance`` may be None or empty: the boundary is then found on entropy alone and ``share_gain``
    is None. Raises ``FitError`` for too few or non-finite points.
    """
    curves = {"entropy": _curve("entropy", steps, entropy, MIN_ENTROPY_POINTS)}
    if performance is not None and performance_steps is not None and len(performance) > 0:
        curves["performance"] = _curve("performance", performance_steps, performance, MIN_PERFORMANCE_POINTS)

    t_lo = min(c[0][0] for c in curves.values())
    t_hi = max(c[0][-1] for c in curves.values())
    span = t_hi - t_lo
    knots = _candidate_knots(t_lo, t_hi, curves, max_knots)
    if knots.size == 0:
        raise FitError("too few distinct steps to place a boundary between two segments", "too_few_points")

    # pass 1 with the raw point counts, pass 2 with the effective counts from the residuals at the best knot
    fits = {name: _hinge_rss(t, y, knots, t_lo, span) for name, (t, y) in curves.items()}
    weights = {name: float(len(curves[name][1])) for name in curves}
    best = int(np.argmax(_profile(fits, weights)))
    rho = {name: _lag1_autocorr(fits[name]["resid"][best]) for name in curves}
    weights = {name: _effective_n(len(curves[name][1]), rho[name]) for name in curves}
    ll = _profile(fits, weights)
    best = int(np.argmax(ll))
    knot = float(knots[best])

    deviance = 2 * (ll[best] - ll)
    inside = knots[deviance <= stats.chi2.ppf(profile_level, 1)]
    lo, hi = int(np.floor(inside.min())), int(np.ceil(inside.max()))
    line_ll = -sum(weights[n] / 2 * np.log(max(f["line_rss"], 1e-300)) for n, f in fits.items())
    lr = float(2 * (ll[best] - line_ll))
    slopes = {name: (float(f["beta"][best, 1]), float(f["beta"][best, 1] + f["beta"][best, 2]))
              for name, f in fits.items()}
    at_knot = {name: float(f["beta"][best, 0] + f["beta"][best, 1] * (knot - t_lo)) for name, f in fits.items()}
    sigma = {name: float(np.sqrt(f["rss"][best] / len(curves[name][1]))) for name, f in fits.items()}
    change = {name: (at_knot[name] - float(f["beta"][best, 0])) / sigma[name] if sigma[name] > 0 else np.inf
              for name, f in fits.items()}

    clear, reason = _judge(lr, slopes, change, (hi - lo) / span, min_lr, max_slope_ratio, max_range_frac)
    shares = _shares(curves, at_knot, span)
    evidence = {
        "best_knot": knot, "best_knot_range": [lo, hi], "likelihood_ratio_vs_line": lr,
        "slopes_before_after": {k: list(v) for k, v in slopes.items()},
        "rising_change_in_sigmas": change, "residual_sd": sigma, "effective_n": weights, "lag1_autocorr": rho, "profile_level": profile_level,
        "n_knots": int(knots.size), "curves": list(curves),
        "n_points": {name: int(len(c[1])) for name, c in curves.items()},
        "step_span": [float(t_lo), float(t_hi)], "shares_at_best_knot": shares,
    }
    method = METHOD if "performance" in curves else METHOD + " (entropy only: no performance given)"
    return StageBoundary(
        step=int(round(knot)) if clear else None,
        range=(lo, hi) if clear else None,
        share_entropy_drop=shares["entropy_drop"] if clear else None,
        share_gain=shares.get("gain") if clear else None,
        clear=clear,
        reason=reason,
        method=method,
        n=sum(len(c[1]) for c in curves.values()),
        evidence=evidence,
    )


# --- pieces -----------------------------------------------------------------------------------------


def _curve(role: str, steps, values, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated, step-sorted float arrays of one curve."""
    t = np.asarray(steps, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if t.shape != y.shape:
        raise FitError(f"{role} steps and values differ in length: {t.size} vs {y.size}", "shape")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(y))):
        raise FitError(f"{role} contains NaN or infinite values; drop them before looking for the stage "
                       "boundary", "non_finite")
    if t.size < min_points:
        raise FitError(f"need at least {min_points} {role} points to find the stage boundary, got {t.size}",
                       "too_few_points")
    order = np.argsort(t, kind="stable")
    return t[order], y[order]


def _candidate_knots(t_lo: float, t_hi: float, curves: dict, max_knots: int) -> np.ndarray:
    """Integer steps leaving ≥ MIN_SEGMENT_FRAC of the span, and at least one point of every curve, each side.

    (A continuous hinge stays identifiable with one point on a side: that point and the knot fix the line.)
    """
    margin = MIN_SEGMENT_FRAC * (t_hi - t_lo)
    lo, hi = t_lo + margin, t_hi - margin
    for t, _ in curves.values():
        lo, hi = max(lo, np.floor(t[0]) + 1), min(hi, np.ceil(t[-1]) - 1)
    if hi <= lo:
        return np.empty(0)
    return np.unique(np.round(np.linspace(lo, hi, min(max_knots, int(hi - lo) + 1))))


def _hinge_rss(t: np.ndarray, y: np.ndarray, knots: np.ndarray, t0: float, span: float) -> dict:
    """Least-squares hinge fit of y(t) for every knot at once: coefficients, RSS and residuals per knot."""
    u = (t - t0) / span  # unit time keeps the normal equations well conditioned
    k = (knots - t0) / span
    X = np.empty((k.size, u.size, 3))
    X[:, :, 0] = 1.0
    X[:, :, 1] = u
    X[:, :, 2] = np.maximum(u[None, :] - k[:, None], 0.0)
    xtx = np.einsum("kni,knj->kij", X, X)
    xty = np.einsum("kni,n->ki", X, y)
    beta = np.linalg.solve(xtx + 1e-12 * np.eye(3), xty[..., None])[..., 0]
    resid = y[None, :] - np.einsum("kni,ki->kn", X, beta)
    line = np.polyfit(u, y, 1)
    line_rss = float(np.sum((y - np.polyval(line, u)) ** 2))
    beta = beta.copy()
    beta[:, 1:] /= span  # slopes per step
    return {"beta": beta, "rss": np.sum(resid**2, axis=1), "resid": resid, "line_rss": line_rss}


def _profile(fits: dict, weights: dict) -> np.ndarray:
    """Joint profile log-likelihood over the knots (up to a constant)."""
    return -sum(weights[name] / 2 * np.log(np.maximum(f["rss"], 1e-300)) for name, f in fits.items())


def _lag1_autocorr(resid: np.ndarray) -> float:
    r = resid - resid.mean()
    den = float(np.sum(r * r))
    return float(np.sum(r[1:] * r[:-1]) / den) if den > 0 and r.size > 2 else 0.0


def _effective_n(n: int, rho: float) -> float:
    """Number of independent points worth of evidence in n AR(1)-correlated ones (at least 3)."""
    rho = min(max(rho, 0.0), 0.99)
    return float(min(n, max(3.0, n * (1 - rho) / (1 + rho))))


def _judge(lr: float, slopes: dict, change: dict, range_frac: float, min_lr: float, max_ratio: float,
           max_range_frac: float) -> tuple[bool, str]:
    """Is the switch clear? Returns (clear, reason)."""
    if lr < min_lr:
        return False, (f"no clear switch: two segments fit only slightly better than one straight line "
                       f"(likelihood ratio {lr:.1f} < {min_lr:g})")
    for name, sign, verb in (("entropy", -1, "fall"), ("performance", 1, "rise")):
        if name in change and sign * change[name] < MIN_CHANGE_SIGMAS:
            return False, (f"no clear switch: {name} does not {verb} materially before the best knot "
                           f"({change[name]:+.1f} residual SDs; need {MIN_CHANGE_SIGMAS:g})")
    h1, h2 = slopes["entropy"]
    if not (h1 < 0 and h2 > h1 * max_ratio):
        return False, (f"no clear switch: entropy does not fall and then slow down at the best knot "
                       f"(slope {h1:.3g} then {h2:.3g} per step)")
    if "performance" in slopes:
        r1, r2 = slopes["performance"]
        if not (r1 > 0 and r2 < r1 * max_ratio):
            return False, (f"no clear switch: performance does not rise and then slow down at the best knot "
                           f"(slope {r1:.3g} then {r2:.3g} per step)")
    if range_frac > max_range_frac:
        return False, (f"no clear switch: the boundary's range covers {range_frac:.0%} of the run "
                       f"(limit {max_range_frac:.0%})")
    return True, (f"clear switch: likelihood ratio {lr:.1f} vs one line; entropy slope {h1:.3g} → {h2:.3g}"
                  + (f", performance slope {slopes['performance'][0]:.3g} → {slopes['performance'][1]:.3g}"
                     if "performance" in slopes else "") + " per step")


def _level(t: np.ndarray, y: np.ndarray, at: float, half: float) -> float:
    """Median of the points within ``half`` steps of ``at`` (the nearest point when none is)."""
    near = np.abs(t - at) <= half
    return float(np.median(y[near])) if near.any() else float(y[int(np.argmin(np.abs(t - at)))])


def _shares(curves: dict, at_knot: dict, span: float) -> dict:
    """Fractions of the total entropy drop and performance gain realised at the knot (None if no drop/gain)."""
    half = max(END_WINDOW_FRAC * span, 1.0)
    out: dict[str, float | None] = {}
    for name, key, sign in (("entropy", "entropy_drop", -1.0), ("performance", "gain", 1.0)):
        if name not in curves:
            continue
        t, y = curves[name]
        start, end = _level(t, y, t[0], half), _level(t, y, t[-1], half)
        total = sign * (end - start)
        out[key] = float(sign * (at_knot[name] - start) / total) if total > 0 else None
    return out
