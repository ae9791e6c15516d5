"""Forecast a run's performance at a later step from its points up to a cutoff, by several methods.

Every method is fitted on the same pre-cutoff data (evaluations after the warm-up, see ``models.warmup``)
and predicts the mean of the evaluations at ``target_steps`` (the last few evaluations of a finished run in
a backtest; the planned end step of a live run), bounded to the metric's range:

* ``law`` — the entropy trajectory H(step) as a power decay to a floor (``models.curves`` family
  ``decay``), mapped through the law fitted on the pre-cutoff (H, R) pairs: R̂ = b′ − a·e^Ĥ(s+1). The slope a
  comes from all pairs; the level b′ = mean(R + a·e^H) from the latest half of them (the early,
  high-entropy pairs lever the intercept; the level is best measured where the run is now);
* ``saturating``, ``sigmoid`` (ScaleRL's curve), ``power`` — curves in the step (``models.curves``) with
  their asymptote inside the metric's range;
* ``last_value`` — the last evaluation before the cutoff; ``recent_mean`` — the mean of the last three
  (the naive baselines: "it stays where it is").

Each method also gets a within-run track record: refitted at rolling origins inside the pre-cutoff
evaluations (at 50, 65 and 80% of them) and scored on every later pre-cutoff evaluation, errors weighted by
how far ahead they were predicted (the final score is far ahead). ``rolling_mae`` is that score (used to
choose a method when there are too few finished runs to learn from); ``scale`` is its root mean square,
grown with the square root of how much further the target lies than the rolling horizons, plus the
evaluation noise of the target mean: the method's expected error for this forecast, which split-conformal
calibration on finished runs turns into an interval (``models.selection``).

``features`` describe the run at the cutoff for the cross-run model (``models.crossrun``): its level,
slope, how much entropy it has spent, each method's predicted gain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.align import align_arrays
from models.curves import FAMILIES, N_PARAMS, fit_prefixes
from models.degenerate import _noise_sd
from models.errors import FitError
from models.law import fit_law
from models.metric_range import MetricRange
from models.resample import bin_means
from models.warmup import KEEP, Warmup, detect_warmup, pinned_warmup

METHODS = ("law", "saturating", "sigmoid", "power", "last_value", "recent_mean")
NAIVE = ("last_value", "recent_mean")
MIN_EVALUATIONS = 4
MIN_ENTROPY_POINTS = 6  # the power decay has 4 parameters
RECENT = 3
ROLLING_ORIGINS = (0.5, 0.65, 0.8)
ANCHOR_FRACTION = 0.5
#: curves are fitted on at most this many points (bucket means of longer ones): the answer does not change,
#: the cost does
MAX_FIT_POINTS = 80
#: the entropy trajectory keeps more: its decay is extrapolated 2–3× beyond the window, and the bend matters
MAX_ENTROPY_POINTS = 150


@dataclass(frozen=True)
class MethodForecast:
    """One method's forecast of the target mean, its expected error and its within-run track record."""

    name: str
    predicted: float
    scale: float
    rolling_mae: float | None
    params: dict[str, float] = field(default_factory=dict)
    note: str = ""
    path: np.ndarray = field(default_factory=lambda: np.empty(0))  # the forecast at each target step (bounded)

    def to_dict(self) -> dict:
        return {"predicted": self.predicted, "scale": self.scale, "rolling_mae": self.rolling_mae,
                "params": dict(self.params), "note": self.note}


@dataclass(frozen=True)
class Forecast:
    """Every method's forecast from the points up to ``cutoff_step``, with the evidence."""

    cutoff_step: float
    target_steps: tuple[int, ...]
    n_evaluations: int  # pre-cutoff evaluations used (after the warm-up)
    warmup: Warmup
    level: float  # mean of the last RECENT evaluations before the cutoff
    noise_sd: float
    methods: dict[str, MethodForecast]
    failed: dict[str, str]  # method → why it could not forecast
    features: dict[str, float]
    entropy_at_target: float | None

    def to_dict(self) -> dict:
        return {"cutoff_step": self.cutoff_step, "target_steps": list(self.target_steps),
                "n_evaluations": self.n_evaluations, "warmup": self.warmup.to_dict(), "level": self.level,
                "noise_sd": self.noise_sd, "methods": {k: v.to_dict() for k, v in self.methods.items()},
                "failed": dict(self.failed), "features": dict(self.features),
                "entropy_at_target": self.entropy_at_target}


def forecast(
    entropy_steps: Sequence[float] | np.ndarray,
    entropy: Sequence[float] | np.ndarray,
    perf_steps: Sequence[float] | np.ndarray,
    perf: Sequence[float] | np.ndarray,
    *,
    cutoff_step: float,
    target_steps: Sequence[float] | np.ndarray,
    rng: MetricRange,
    warmup: str | int = "auto",
) -> Forecast:
    """Forecast the mean of R at ``target_steps`` from the points at or before ``cutoff_step``.

    ``warmup``: "auto" (detected on the pre-cutoff pairs), "keep" (nothing excluded) or a step (evaluations
    at or before it excluded). Raises ``FitError`` (cause ``too_few_points_before_cutoff``) when fewer than
    ``MIN_EVALUATIONS`` evaluations remain before the cutoff.
    """
    hs, hv = _finite_before(entropy_steps, entropy, cutoff_step)
    ps, pv = _finite_before(perf_steps, perf, cutoff_step)
    target = np.sort(np.asarray(target_steps, dtype=float).ravel())
    if target.size == 0:
        raise FitError("no target steps to forecast", "bad_option")
    warm = _warmup(hs, hv, ps, pv, warmup)
    if warm.n:
        keep = ~np.isin(ps, np.asarray(warm.steps, dtype=float))
        ps, pv = ps[keep], pv[keep]
        hs, hv = hs[hs > warm.steps[-1]], hv[hs > warm.steps[-1]]
    if len(pv) < MIN_EVALUATIONS:
        raise FitError(f"only {len(pv)} evaluations at or before step {cutoff_step:.0f}"
                       + (" after the warm-up" if warm.n else "") + f"; a forecast needs at least {MIN_EVALUATIONS}",
                       "too_few_points_before_cutoff")
    level = float(np.mean(pv[-RECENT:]))
    noise = _noise_sd(pv)
    bs, bv = bin_means(ps, pv, MAX_FIT_POINTS)
    bs = bs.astype(float)
    origins = _origins(len(bs))
    horizon = float(np.mean(target)) - float(bs[-1])
    target_noise = noise / np.sqrt(len(target))
    lo, hi = _bounds(rng)

    methods: dict[str, MethodForecast] = {}
    failed: dict[str, str] = {}
    for family in FAMILIES:
        try:  # rolling origins with too few points for this family are left out
            fam_origins = [k for k in origins if k + 1 >= N_PARAMS[family] + 2]
            fits = fit_prefixes(family, bs, bv, [*fam_origins, len(bs) - 1], lo=lo, hi=hi, refine_last_only=True)
        except FitError as exc:
            failed[family] = str(exc)
            continue
        final = fits.fit(len(fam_origins))
        path = rng.clip(final.predict(target))
        pred = float(np.mean(path))
        roll = [rng.clip(fits.predict_points(i)) for i in range(len(fam_origins))]
        mae, scale = _track_record(bs, bv, fam_origins, roll, horizon, target_noise)
        methods[family] = MethodForecast(family, pred, scale, mae, {**final.params, "asymptote": final.asymptote},
                                         path=np.atleast_1d(path))

    h_target = None
    try:
        law_fc, h_target = _law(hs, hv, ps, pv, bs, bv, origins, target, horizon, target_noise, rng)
        methods["law"] = law_fc
    except FitError as exc:
        failed["law"] = str(exc)

    for name, window in (("last_value", 1), ("recent_mean", RECENT)):
        roll = [np.full(len(bv), np.mean(bv[max(0, k - window + 1):k + 1])) for k in origins]
        mae, scale = _track_record(bs, bv, origins, roll, horizon, target_noise)
        value = float(pv[-1]) if window == 1 else level
        methods[name] = MethodForecast(name, float(rng.clip(value)), scale, mae, {"value": value},
                                       path=np.full(len(target), float(rng.clip(value))))

    features = _features(hs, hv, ps, pv, level, noise, methods, target, rng)
    return Forecast(float(cutoff_step), tuple(int(s) for s in target), len(pv), warm, level, noise,
                    {m: methods[m] for m in METHODS if m in methods}, failed, features, h_target)


# --- data ----------------------------------------------------------------------------------------------


def _finite_before(steps, values, cutoff_step: float) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(steps, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if s.shape != v.shape:
        raise FitError(f"steps and values differ in length: {s.size} vs {v.size}", "shape")
    keep = np.isfinite(s) & np.isfinite(v) & (s <= cutoff_step)
    order = np.argsort(s[keep], kind="stable")
    return s[keep][order], v[keep][order]


def _pairs(hs, hv, ps, pv):
    a = align_arrays(hs.astype(np.int64), hv, ps.astype(np.int64), pv)
    return a.entropy, a.performance, a.steps.astype(float)


def _warmup(hs, hv, ps, pv, mode: str | int) -> Warmup:
    if mode == "keep":
        return KEEP
    if not isinstance(mode, str):
        return pinned_warmup(ps, int(mode))
    if len(hs) < MIN_ENTROPY_POINTS:
        return detect_warmup(np.array([]), np.array([]), np.array([]))
    h, r, steps = _pairs(hs, hv, ps, pv)
    return detect_warmup(h, r, steps)


def _bounds(rng: MetricRange) -> tuple[float, float]:
    b = rng.bounds
    return (-np.inf, np.inf) if b is None else b


def _origins(n: int) -> list[int]:
    """Rolling-origin point indices inside n pre-cutoff points (each leaves later points to score)."""
    out = sorted({int(round(q * (n - 1))) for q in ROLLING_ORIGINS})
    return [k for k in out if k + 1 >= MIN_EVALUATIONS and k < n - 1]


def _track_record(steps: np.ndarray, values: np.ndarray, origins: list[int], predictions: list[np.ndarray],
                  horizon: float, target_noise: float) -> tuple[float | None, float]:
    """Horizon-weighted rolling-origin MAE, and the expected error at ``horizon`` (module docstring)."""
    err, w = [], []
    for k, pred in zip(origins, predictions, strict=True):
        ahead = steps[k + 1:] - steps[k]
        err.append(pred[k + 1:] - values[k + 1:])
        w.append(ahead)
    if not err:
        return None, float(np.hypot(target_noise, np.std(values) if len(values) > 1 else 0.0))
    e, wt = np.concatenate(err), np.concatenate(w)
    if wt.sum() <= 0 or not np.all(np.isfinite(e)):
        return None, float(np.hypot(target_noise, np.std(values)))
    mae = float(np.average(np.abs(e), weights=wt))
    rms = float(np.sqrt(np.average(e * e, weights=wt)))
    mean_ahead = float(np.average(wt, weights=wt))
    grow = np.sqrt(max(1.0, horizon / mean_ahead)) if mean_ahead > 0 else 1.0
    return mae, float(np.hypot(rms * grow, target_noise))


# --- the law through the entropy trajectory -----------------------------------------------------------------


def _law(hs, hv, ps, pv, bs, bv, origins, target, horizon, target_noise, rng: MetricRange):
    """The law method (module docstring) at the cutoff and at the rolling origins."""
    if len(hs) < MIN_ENTROPY_POINTS:
        raise FitError(f"only {len(hs)} entropy points before the cutoff", "too_few_points_before_cutoff")
    h, r, pair_steps = _pairs(hs, hv, ps, pv)
    if len(h) < MIN_EVALUATIONS:
        raise FitError(f"only {len(h)} (entropy, performance) pairs before the cutoff", "too_few_points_before_cutoff")
    law = fit_law(h, r)
    if not law.holds:
        raise FitError(f"the law does not hold before the cutoff (a = {law.a:.3g} ≤ 0)", "law_does_not_hold")
    ehs, ehv = bin_means(hs, hv, MAX_ENTROPY_POINTS)
    ehs = ehs.astype(float)
    # entropy origins at the same steps as the performance origins
    h_origins = [int(np.searchsorted(ehs, bs[k], side="right") - 1) for k in origins]
    usable = [i for i, k in enumerate(h_origins) if k + 1 >= N_PARAMS["decay"] + 2]
    floors = [max(_end_level(ehv[:k + 1]), 0.0) for k in [h_origins[i] for i in usable]] + [max(_end_level(ehv), 0.0)]
    decay = fit_prefixes("decay", ehs, ehv, [h_origins[i] for i in usable] + [len(ehs) - 1], lo=0.0,
                         hi=np.asarray(floors), refine_last_only=True)
    final = decay.fit(len(usable))
    h_target = final.predict(target + 1)
    b_level = _anchored_level(law.a, h, r)
    path = rng.clip(b_level - law.a * np.exp(h_target))
    pred = float(np.mean(path))
    roll, used = [], []
    for j, i in enumerate(usable):
        m = int(np.searchsorted(pair_steps, bs[origins[i]], side="right"))
        if m < MIN_EVALUATIONS:
            continue
        try:
            law_k = fit_law(h[:m], r[:m])
        except FitError:
            continue
        b_k = _anchored_level(law_k.a, h[:m], r[:m])
        h_fc = decay.fit(j).predict(bs + 1)
        roll.append(rng.clip(b_k - law_k.a * np.exp(h_fc)))
        used.append(origins[i])
    mae, scale = _track_record(bs, bv, used, roll, horizon, target_noise)
    params = {"a": law.a, "b": law.b, "b_anchored": b_level, "r2": law.r2, "ceiling_lo": law.ceiling_lo,
              "ceiling_hi": law.ceiling_hi, "entropy_floor": final.asymptote,
              "entropy_at_target": float(np.mean(h_target))}
    note = f"entropy: power decay to {final.asymptote:.3f}; level from the last {_anchor_m(len(h))} pairs"
    return MethodForecast("law", pred, scale, mae, params, note, np.atleast_1d(path)), float(np.mean(h_target))


def _anchor_m(n: int) -> int:
    return min(n, max(3, int(np.ceil(ANCHOR_FRACTION * n))))


def _anchored_level(a: float, h: np.ndarray, r: np.ndarray) -> float:
    m = _anchor_m(len(h))
    return float(np.mean(r[-m:] + a * np.exp(h[-m:])))


def _end_level(h: np.ndarray) -> float:
    k = min(len(h), max(5, int(np.ceil(0.1 * len(h)))))
    return float(np.median(h[-k:]))


# --- features for the cross-run model ------------------------------------------------------------------------


def _features(hs, hv, ps, pv, level, noise, methods, target, rng: MetricRange) -> dict[str, float]:
    """The run at the cutoff, for ``models.crossrun`` (gains are in the metric's units; see there)."""
    half = max(2, len(ps) // 2)
    x, y = ps[-half:], pv[-half:]
    slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else 0.0
    ahead = float(np.mean(target) - ps[-1])
    feats = {"level": level, "last": float(pv[-1]), "noise_sd": noise, "slope_gain": slope * ahead,
             "spread": float(np.std(pv)), "first": float(pv[0])}
    for m in ("law", "saturating", "sigmoid", "power"):
        feats[f"gain_{m}"] = methods[m].predicted - level if m in methods else float("nan")
    if len(hv):
        h_now = float(np.mean(hv[-max(1, min(10, len(hv) // 10)):]))
        h_first = float(np.mean(hv[:max(1, min(5, len(hv) // 10))]))
        feats["entropy_now"] = h_now
        feats["entropy_spent"] = 1.0 - h_now / h_first if h_first > 0 else float("nan")
    feats["law_a"] = methods["law"].params["a"] if "law" in methods else float("nan")
    span = float(ps[-1] - ps[0])
    feats["horizon_ratio"] = ahead / span if span > 0 else float("nan")
    return feats
