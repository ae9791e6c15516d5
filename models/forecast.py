"""Forecast a run's performance at a later step from its points up to a cutoff, by several methods.

Every method is fitted on the same pre-cutoff data (evaluations after the warm-up, see ``models.warmup``)
and predicts the mean of the evaluations at ``target_steps`` (the last few evaluations of a finished run in
a backtest; the planned end step of a live run), bounded to the metric's range:

* ``law`` — the entropy trajectory H(step) as a power decay to a floor (``models.curves`` family
  ``decay``), mapped through the law fitted on the pre-cutoff (H, R) pairs: R̂ = b′ − a·e^Ĥ(s+1). The slope a
  comes from all pairs; the level b′ = mean(R + a·e^H) from the latest half of them (the early,
  high-entropy pairs lever the intercept; the level is best measured where the run is now;
  ``models.law_forecast``);
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

``forecast_many`` makes the forecasts of one run at many cuts (the replay) with every curve family, the law
and the entropy decay fitted in one batch over the cuts; ``forecast`` is that batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.curves import FAMILIES, N_PARAMS, PrefixData, PrefixFits, fit_prefixes_many
from models.degenerate import _noise_sd
from models.errors import FitError, contained
from models.law_forecast import (
    MIN_ENTROPY_POINTS,
    MIN_PAIRS,
    LawInput,
    law_inputs,
    law_pairs,
    law_path,
    pairs,
)
from models.metric_range import MetricRange
from models.resample import bin_means
from models.warmup import KEEP, Warmup, detect_warmup, pinned_warmup

METHODS = ("law", "saturating", "sigmoid", "power", "last_value", "recent_mean")
NAIVE = ("last_value", "recent_mean")
MIN_EVALUATIONS = MIN_PAIRS
RECENT = 3
ROLLING_ORIGINS = (0.5, 0.65, 0.8)
#: curves are fitted on at most this many points (bucket means of longer ones): the answer does not change,
#: the cost does
MAX_FIT_POINTS = 80


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
    (out,) = forecast_many(entropy_steps, entropy, perf_steps, perf, [(cutoff_step, target_steps)], rng=rng,
                           warmup=warmup)
    if isinstance(out, FitError):
        raise out
    return out


def forecast_many(
    entropy_steps: Sequence[float] | np.ndarray,
    entropy: Sequence[float] | np.ndarray,
    perf_steps: Sequence[float] | np.ndarray,
    perf: Sequence[float] | np.ndarray,
    cuts: Sequence[tuple[float, Sequence[float] | np.ndarray]],
    *,
    rng: MetricRange,
    warmup: str | int = "auto",
) -> list[Forecast | FitError]:
    """``forecast`` of one run at each (cutoff step, target steps) of ``cuts`` (the replay's cuts): the same
    forecasts, with the curves of every cut fitted in one batch per family. A cut that cannot be forecast
    gets its ``FitError`` in its place."""
    hs, hv = _finite_sorted(entropy_steps, entropy)
    ps, pv = _finite_sorted(perf_steps, perf)
    prepared = [contained(lambda c=c, t=t: _cut(hs, hv, ps, pv, float(c), t, rng, warmup)) for c, t in cuts]
    ready = [c for c in prepared if isinstance(c, Cut)]
    curves = {family: fit_prefixes_many(family, [c.curve(family) for c in ready], refine_last_only=True)
              for family in FAMILIES}
    laws = law_inputs(ready)
    out: list[Forecast | FitError] = []
    fitted = iter(range(len(ready)))
    for c in prepared:
        if isinstance(c, FitError):
            out.append(c)
            continue
        i = next(fitted)
        out.append(contained(lambda c=c, i=i: _forecast_at(c, {f: curves[f][i] for f in FAMILIES}, laws[i], rng)))
    return out


@dataclass(frozen=True)
class Cut:
    """One cut's data after the warm-up, its binned evaluations and rolling origins."""

    cutoff_step: float
    target: np.ndarray
    hs: np.ndarray
    hv: np.ndarray
    ps: np.ndarray
    pv: np.ndarray
    warm: Warmup
    level: float
    noise: float
    bs: np.ndarray  # the evaluations the curves are fitted on (bucket means of at most MAX_FIT_POINTS)
    bv: np.ndarray
    origins: list[int]
    horizon: float
    target_noise: float
    lo: float
    hi: float
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | FitError  # the (H, R) pairs for the law, their steps

    def curve(self, family: str) -> PrefixData:
        """The evaluations to fit ``family`` on, at the rolling origins with enough points for it and the cut."""
        return PrefixData(self.bs, self.bv, [*self.family_origins(family), len(self.bs) - 1], self.lo, self.hi)

    def family_origins(self, family: str) -> list[int]:
        return [k for k in self.origins if k + 1 >= N_PARAMS[family] + 2]


def _cut(hs_all, hv_all, ps_all, pv_all, cutoff_step: float, target_steps, rng: MetricRange,
         warmup: str | int) -> Cut:
    """The points at or before ``cutoff_step`` (sorted finite ``*_all``) ready to fit; raises ``FitError``."""
    hs, hv = (a[:np.searchsorted(hs_all, cutoff_step, side="right")] for a in (hs_all, hv_all))
    ps, pv = (a[:np.searchsorted(ps_all, cutoff_step, side="right")] for a in (ps_all, pv_all))
    target = np.sort(np.asarray(target_steps, dtype=float).ravel())
    if target.size == 0:
        raise FitError("no target steps to forecast", "bad_option")
    warm, paired = _warmup(hs, hv, ps, pv, warmup)
    if warm.n:  # the pairs the law is fitted on are then those after the warm-up
        keep = ~np.isin(ps, np.asarray(warm.steps, dtype=float))
        ps, pv = ps[keep], pv[keep]
        hs, hv = hs[hs > warm.steps[-1]], hv[hs > warm.steps[-1]]
        paired = None
    if len(pv) < MIN_EVALUATIONS:
        raise FitError(f"only {len(pv)} evaluations at or before step {cutoff_step:.0f}"
                       + (" after the warm-up" if warm.n else "") + f"; a forecast needs at least {MIN_EVALUATIONS}",
                       "too_few_points_before_cutoff")
    noise = _noise_sd(pv)
    bs, bv = bin_means(ps, pv, MAX_FIT_POINTS)
    bs = bs.astype(float)
    origins = _origins(len(bs))
    lo, hi = _bounds(rng)
    return Cut(cutoff_step, target, hs, hv, ps, pv, warm, float(np.mean(pv[-RECENT:])), noise, bs, bv, origins,
                float(np.mean(target)) - float(bs[-1]), noise / np.sqrt(len(target)), lo, hi,
                contained(lambda: law_pairs(hs, hv, ps, pv, paired)))


def _forecast_at(c: Cut, curves: dict[str, PrefixFits | FitError], law: LawInput | FitError,
                 rng: MetricRange) -> Forecast:
    """Every method's forecast at one cut, from its fitted curves (module docstring)."""
    methods: dict[str, MethodForecast] = {}
    failed: dict[str, str] = {}
    for family in FAMILIES:
        fits = curves[family]
        if isinstance(fits, FitError):  # rolling origins with too few points for this family were left out
            failed[family] = str(fits)
            continue
        fam_origins = c.family_origins(family)
        final = fits.fit(len(fam_origins))
        path = rng.clip(final.predict(c.target))
        roll = [rng.clip(fits.predict_points(i)) for i in range(len(fam_origins))]
        mae, scale = _track_record(c.bs, c.bv, fam_origins, roll, c.horizon, c.target_noise)
        methods[family] = MethodForecast(family, float(np.mean(path)), scale, mae,
                                         {**final.params, "asymptote": final.asymptote}, path=np.atleast_1d(path))

    h_target = None
    if isinstance(law, FitError):
        failed["law"] = str(law)
    else:
        lp = law_path(c, law, rng)
        mae, scale = _track_record(c.bs, c.bv, lp.origins, lp.rolling, c.horizon, c.target_noise)
        methods["law"] = MethodForecast("law", float(np.mean(lp.path)), scale, mae, lp.params, lp.note, lp.path)
        h_target = lp.entropy_at_target

    for name, window in (("last_value", 1), ("recent_mean", RECENT)):
        roll = [np.full(len(c.bv), np.mean(c.bv[max(0, k - window + 1):k + 1])) for k in c.origins]
        mae, scale = _track_record(c.bs, c.bv, c.origins, roll, c.horizon, c.target_noise)
        value = float(c.pv[-1]) if window == 1 else c.level
        methods[name] = MethodForecast(name, float(rng.clip(value)), scale, mae, {"value": value},
                                       path=np.full(len(c.target), float(rng.clip(value))))

    features = _features(c.hs, c.hv, c.ps, c.pv, c.level, c.noise, methods, c.target, rng)
    return Forecast(c.cutoff_step, tuple(int(s) for s in c.target), len(c.pv), c.warm, c.level, c.noise,
                    {m: methods[m] for m in METHODS if m in methods}, failed, features, h_target)


# --- data ----------------------------------------------------------------------------------------------


def _finite_sorted(steps, values) -> tuple[np.ndarray, np.ndarray]:
    """The finite points, in step order (a cut is then a prefix: ``_cut``)."""
    s = np.asarray(steps, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if s.shape != v.shape:
        raise FitError(f"steps and values differ in length: {s.size} vs {v.size}", "shape")
    keep = np.isfinite(s) & np.isfinite(v)
    order = np.argsort(s[keep], kind="stable")
    return s[keep][order], v[keep][order]


def _warmup(hs, hv, ps, pv, mode: str | int) -> tuple[Warmup, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """The warm-up, and the (H, R) pairs it was detected on (None when it was not detected on pairs)."""
    if mode == "keep":
        return KEEP, None
    if not isinstance(mode, str):
        return pinned_warmup(ps, int(mode)), None
    if len(hs) < MIN_ENTROPY_POINTS:
        return detect_warmup(np.array([]), np.array([]), np.array([])), None
    paired = pairs(hs, hv, ps, pv)
    return detect_warmup(*paired), paired


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
    total = wt.sum()  # weighted means, as np.average computes them
    mae = float((np.abs(e) * wt).sum() / total)
    rms = float(np.sqrt((e * e * wt).sum() / total))
    mean_ahead = float((wt * wt).sum() / total)
    grow = np.sqrt(max(1.0, horizon / mean_ahead)) if mean_ahead > 0 else 1.0
    return mae, float(np.hypot(rms * grow, target_noise))


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
