"""Entropy collapse detector: entropy heading for its floor while performance has stopped improving.

Inputs are the run's entropy curve (every step) and performance curve (every evaluation). Definitions:

* ``h_start``: median of the first ``START_POINTS`` entropy values (robust to a noisy first rollout);
  ``floor`` = ``floor_frac`` × ``h_start``; ``h_now``: median of the last ``START_POINTS`` values.
* The *recent window* is the last ``window`` steps (default: the last quarter of the run). Its entropy
  trend is the Theil–Sen slope with its confidence interval (``scipy.stats.theilslopes``) and the
  Mann–Kendall test (Kendall's τ between step and value, two-sided p, via ``scipy.stats.kendalltau``).
  Entropy is *falling* when τ < 0, p < ``alpha`` and the Theil–Sen interval lies below 0.
* Performance over the recent window (widened, if needed, to hold at least ``MIN_PERF_WINDOW``
  evaluations): Theil–Sen slope and Mann–Kendall. Performance is *still rising* when τ > 0 and p < ``alpha``,
  or when the Theil–Sen slope over the window adds at least ``min_gain_frac`` (10%) of the run's total gain
  so far (last minus first evaluation, when positive). The second clause is there because a handful of
  evaluations gives Mann–Kendall little power: "not significantly rising" alone would call a run whose
  accuracy still climbs 0.08 over its last eight evaluations flat, and raise a false alarm. Otherwise
  performance has *flattened*.
* The projected step at which entropy reaches the floor is ``fit_decay(steps, entropy).step_at(floor)``
  (exponential, power or linear decay, chosen by held-out residual; see ``models.decay``). A decay that
  levels off above the floor never gets there (None).

Verdicts, first match wins:

* ``insufficient_data``: entropy or performance missing or too short — the message names the metric role.
* ``collapsed``: entropy is already at or below the floor (``h_now`` ≤ ``floor``) and performance is flat.
* ``collapsing``: entropy falling, projected to reach the floor within ``horizon`` more steps (default: the
  run's length again), and performance flat.
* ``collapsed`` too: at least ``SPENT_FRAC`` (80%) of the entropy spent and performance flat or falling, though
  not heading for the floor — the seeds' collapse, whether or not the decay still heads for a fixed floor.
* ``converging``: entropy falling or at the floor, but performance still rising — the trade is still paying.
  Never an alarm.
* ``healthy``: anything else (entropy steady, or levelling off above the floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import stats

from models.decay import fit_decay
from models.errors import FitError
from models.resample import bin_means

VERDICTS = ("collapsing", "collapsed", "converging", "healthy", "insufficient_data")
ALARMS = ("collapsing", "collapsed")
FLOOR_FRAC = 0.1
WINDOW_FRAC = 0.25
ALPHA = 0.05
START_POINTS = 5
MIN_ENTROPY_POINTS = 12
MIN_ENTROPY_WINDOW = 8
MIN_PERF_POINTS = 4
MIN_PERF_WINDOW = 5
MIN_GAIN_FRAC = 0.1
SPENT_FRAC = 0.8


@dataclass(frozen=True)
class CollapseFinding:
    """The verdict and every number it was reached on (None where a number could not be computed)."""

    verdict: str  # one of VERDICTS
    message: str
    theil_sen_slope: float | None  # entropy per step over the recent window
    theil_sen_ci: tuple[float, float] | None
    mann_kendall: tuple[float, float] | None  # (tau, p) of entropy over the recent window
    h_start: float | None
    h_now: float | None
    floor: float | None
    performance_slope: float | None  # performance per step (Theil–Sen) over its recent window
    performance_p: float | None  # Mann–Kendall p of performance over its recent window
    projected_floor_step: float | None  # step at which the decay model reaches the floor
    decay_kind: str | None
    evidence: dict = field(default_factory=dict)

    @property
    def alarm(self) -> bool:
        return self.verdict in ALARMS

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict, "message": self.message, "alarm": self.alarm,
            "theil_sen_slope": self.theil_sen_slope,
            "theil_sen_ci": list(self.theil_sen_ci) if self.theil_sen_ci else None,
            "mann_kendall": list(self.mann_kendall) if self.mann_kendall else None,
            "h_start": self.h_start, "h_now": self.h_now, "floor": self.floor,
            "performance_slope": self.performance_slope, "performance_p": self.performance_p,
            "projected_floor_step": self.projected_floor_step, "decay_kind": self.decay_kind,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class Trend:
    """Theil–Sen slope (with CI) and Mann–Kendall (τ, p) of one curve over a window."""

    slope: float
    ci: tuple[float, float]
    tau: float
    p: float
    n: int
    step_from: float
    step_to: float

    def falling(self, alpha: float) -> bool:
        return self.tau < 0 and self.p < alpha and self.ci[1] < 0

    def rising(self, alpha: float) -> bool:
        return self.tau > 0 and self.p < alpha


def theil_sen(steps: np.ndarray, values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """``scipy.stats.theilslopes``' slope and ``confidence`` interval — the same numbers (Sen 1968, eq. 2.6),
    from two partial sorts of the pairwise slopes instead of a full sort (the n² slopes of a long curve made
    the sort most of a run's health check). Non-finite input goes to scipy itself."""
    x, y = np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    if x.size != y.size or x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        slope, _, lo, hi = stats.theilslopes(values, steps, alpha=confidence)
        return slope, lo, hi
    if np.all(np.diff(x) > 0):  # steps in order: the pairs a step apart, two steps apart, … (no n × n matrices)
        slopes = np.concatenate([(y[k:] - y[:-k]) / (x[k:] - x[:-k]) for k in range(1, x.size)])
    else:
        deltax = x[:, np.newaxis] - x
        pos = deltax > 0
        slopes = (y[:, np.newaxis] - y)[pos] / deltax[pos]
    nt = slopes.size
    if nt == 0:  # every step the same: scipy warns and says NaN
        slope, _, lo, hi = stats.theilslopes(values, steps, alpha=confidence)
        return slope, lo, hi
    alpha = 1.0 - confidence if confidence > 0.5 else confidence
    z = stats.norm.ppf(alpha / 2.0)
    ny = len(y)
    nxreps = [int(k) for k in np.unique(x, return_counts=True)[1] if k > 1]
    nyreps = [int(k) for k in np.unique(y, return_counts=True)[1] if k > 1]
    sigsq = 1 / 18. * (ny * (ny - 1) * (2 * ny + 5) - sum(k * (k - 1) * (2 * k + 5) for k in nxreps)
                       - sum(k * (k - 1) * (2 * k + 5) for k in nyreps))
    middle = slice((nt - 1) // 2, nt // 2 + 1)  # the one or two middle slopes, as np.median takes their mean
    try:
        sigma = np.sqrt(sigsq)
        ru = min(int(np.round((nt - z * sigma) / 2.)), nt - 1)
        rl = max(int(np.round((nt + z * sigma) / 2.)) - 1, 0)
    except ValueError:
        ranks = None
    else:
        ranks = (rl, ru)
    at = at_ranks(slopes, [middle.start, middle.stop - 1, *(ranks or ())])
    medslope = np.mean([at[k] for k in range(middle.start, middle.stop)])
    lo, hi = (at[ranks[0]], at[ranks[1]]) if ranks is not None else (np.nan, np.nan)
    return medslope, lo, hi


#: below this many values a partition of them all is as fast as bracketing the ranks first
BRACKET_FROM = 20_000


def at_ranks(values: np.ndarray, ranks: Sequence[int]) -> dict[int, float]:
    """The values at these ranks of ``values`` sorted (what ``np.partition(values, ranks)`` puts there, exactly).

    A long array is not partitioned whole: a fixed sample of it brackets the ranks' values, and only the
    values inside the bracket are partitioned (the pairwise slopes of a 1,000-point window are 500,000
    values, the ranks a Theil–Sen interval needs lie within a few percent of the middle). A bracket that
    misses a rank — rare, the margin is four standard errors of the sample's quantiles — falls back to the
    whole partition."""
    wanted = sorted(set(ranks))
    n = values.size
    if n >= BRACKET_FROM:
        sample = np.sort(values[np.random.default_rng(0).integers(0, n, 4_000)])
        margin = 0.03  # four standard errors of a quantile of 4,000 draws (at most 0.0079 each)
        lo = sample[max(0, int((wanted[0] / n - margin) * sample.size))]
        hi = sample[min(sample.size - 1, int(np.ceil((wanted[-1] / n + margin) * sample.size)))]
        below = int(np.count_nonzero(values < lo))
        inside = values[(values >= lo) & (values <= hi)]
        if below <= wanted[0] and wanted[-1] < below + inside.size:
            part = np.partition(inside, [k - below for k in wanted])
            return {k: float(part[k - below]) for k in wanted}
    part = np.partition(values, wanted)
    return {k: float(part[k]) for k in wanted}


def trend(steps: np.ndarray, values: np.ndarray, confidence: float = 0.95) -> Trend:
    """Theil–Sen slope with its ``confidence`` interval, and the Mann–Kendall trend test.

    Mann–Kendall is Kendall's τ between time and value; ``scipy.stats.kendalltau`` gives the two-sided p
    (exact for small samples without ties, with the tie-corrected normal approximation otherwise).

    A run's analysis asks for the trend of the same window up to three times (the collapse verdict and the
    health detectors that share its windows); the last few answers are kept by value, so the O(n²) slopes of
    a window are computed once.
    """
    x = np.ascontiguousarray(steps, dtype=float)
    y = np.ascontiguousarray(values, dtype=float)
    return _trend(x.tobytes(), y.tobytes(), x.shape, float(confidence))


@lru_cache(maxsize=16)
def _trend(x_bytes: bytes, y_bytes: bytes, shape: tuple[int, ...], confidence: float) -> Trend:
    steps = np.frombuffer(x_bytes).reshape(shape)
    values = np.frombuffer(y_bytes).reshape(-1)
    slope, lo, hi = theil_sen(steps, values, confidence)
    tau, p = stats.kendalltau(steps, values)
    tau = 0.0 if not np.isfinite(tau) else float(tau)  # constant values: no trend
    p = 1.0 if not np.isfinite(p) else float(p)
    return Trend(float(slope), (float(lo), float(hi)), tau, p, int(len(values)), float(steps[0]),
                 float(steps[-1]))


def detect_collapse(
    steps: Sequence[float] | np.ndarray | None,
    entropy: Sequence[float] | np.ndarray | None,
    perf_steps: Sequence[float] | np.ndarray | None,
    perf: Sequence[float] | np.ndarray | None,
    *,
    floor_frac: float = FLOOR_FRAC,
    window: float | None = None,
    horizon: float | None = None,
    alpha: float = ALPHA,
    min_gain_frac: float = MIN_GAIN_FRAC,
) -> CollapseFinding:
    """Judge whether entropy is collapsing (rules in the module docstring).

    ``window`` (steps) defaults to the last quarter of the run; ``horizon`` (steps beyond the last one)
    within which a projected arrival at the floor counts as "heading for it", to the run's length so far.
    """
    h = _series(steps, entropy)
    r = _series(perf_steps, perf)
    if h is None or len(h[1]) < MIN_ENTROPY_POINTS:
        return _insufficient("entropy", MIN_ENTROPY_POINTS, 0 if h is None else len(h[1]))
    if r is None or len(r[1]) < MIN_PERF_POINTS:
        return _insufficient("performance", MIN_PERF_POINTS, 0 if r is None else len(r[1]))
    ht, hv = h
    rt, rv = r

    span = float(ht[-1] - ht[0])
    window = WINDOW_FRAC * span if window is None else float(window)
    horizon = span if horizon is None else float(horizon)
    h_start = float(np.median(hv[:START_POINTS]))
    h_now = float(np.median(hv[-START_POINTS:]))
    floor = floor_frac * h_start

    hw = ht >= ht[-1] - window
    if hw.sum() < MIN_ENTROPY_WINDOW:
        hw = np.arange(len(ht)) >= len(ht) - MIN_ENTROPY_WINDOW
    h_trend = trend(ht[hw], hv[hw])
    rw = rt >= ht[-1] - window
    if rw.sum() < MIN_PERF_WINDOW:
        rw = np.arange(len(rt)) >= len(rt) - MIN_PERF_WINDOW
    r_trend = trend(rt[rw], rv[rw])

    projected, decay_kind, decay_info = _projection(ht, hv, floor)
    falling = h_trend.falling(alpha)
    total_gain = float(rv[-1] - rv[0])
    window_gain = r_trend.slope * (r_trend.step_to - r_trend.step_from)
    material = total_gain > 0 and window_gain >= min_gain_frac * total_gain
    rising = r_trend.rising(alpha) or material
    at_floor = h_now <= floor
    heading = projected is not None and projected <= ht[-1] + horizon

    verdict, message = _verdict(falling, rising, at_floor, heading, h_now, floor, h_start, h_trend, r_trend,
                                projected, alpha)
    evidence = {
        "floor_frac": floor_frac, "window_steps": window, "horizon_steps": horizon, "alpha": alpha,
        "entropy_window": [h_trend.step_from, h_trend.step_to, h_trend.n],
        "performance_window": [r_trend.step_from, r_trend.step_to, r_trend.n],
        "performance_mann_kendall": [r_trend.tau, r_trend.p],
        "performance_slope_ci": list(r_trend.ci), "performance_window_gain": window_gain,
        "performance_total_gain": total_gain, "min_gain_frac": min_gain_frac,
        "entropy_falling": falling, "performance_rising": rising, "at_floor": at_floor,
        "heading_for_floor": heading, "decay": decay_info,
        "entropy_used": 1 - h_now / h_start if h_start > 0 else None, "n_entropy": int(len(hv)), "n_performance": int(len(rv)),
        "last_step": float(ht[-1]),
    }
    return CollapseFinding(
        verdict=verdict, message=message, theil_sen_slope=h_trend.slope, theil_sen_ci=h_trend.ci,
        mann_kendall=(h_trend.tau, h_trend.p), h_start=h_start, h_now=h_now, floor=floor,
        performance_slope=r_trend.slope, performance_p=r_trend.p, projected_floor_step=projected,
        decay_kind=decay_kind, evidence=evidence,
    )


# --- pieces -----------------------------------------------------------------------------------------


def _series(steps, values) -> tuple[np.ndarray, np.ndarray] | None:
    """Finite, step-sorted points of one curve; None when nothing was given."""
    if steps is None or values is None:
        return None
    t = np.asarray(steps, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if t.shape != y.shape:
        raise FitError(f"steps and values differ in length: {t.size} vs {y.size}", "shape")
    ok = np.isfinite(t) & np.isfinite(y)
    order = np.argsort(t[ok], kind="stable")
    return t[ok][order], y[ok][order]


def _insufficient(role: str, need: int, got: int) -> CollapseFinding:
    what = "no" if got == 0 else f"only {got}"
    message = (f"cannot judge entropy collapse: {what} finite '{role}' points (need at least {need}); "
               f"map a metric key to the '{role}' role or wait for more steps")
    return CollapseFinding(
        verdict="insufficient_data", message=message, theil_sen_slope=None, theil_sen_ci=None,
        mann_kendall=None, h_start=None, h_now=None, floor=None, performance_slope=None, performance_p=None,
        projected_floor_step=None, decay_kind=None,
        evidence={"missing_role": role, "points": got, "points_needed": need},
    )


DECAY_POINTS = 120


def _projection(t: np.ndarray, h: np.ndarray, floor: float) -> tuple[float | None, str | None, dict]:
    """Step at which the chosen decay model reaches the floor (None if never, or if no model fits). The decay
    models see at most ``DECAY_POINTS`` bucket means (the projection does not change, the cost does)."""
    try:
        fit = fit_decay(*bin_means(t, h, DECAY_POINTS))
    except FitError as exc:
        return None, None, {"error": str(exc), "cause": exc.cause}
    step = fit.step_at(floor)
    return step, fit.kind, {"kind": fit.kind, "params": dict(fit.params), "rmse": fit.rmse,
                            "model_floor": fit.floor, "candidates": [list(c) for c in fit.candidates],
                            "criterion": fit.criterion}


def _verdict(falling: bool, rising: bool, at_floor: bool, heading: bool, h_now: float, floor: float,
             h_start: float, h_trend: Trend, r_trend: Trend, projected: float | None,
             alpha: float) -> tuple[str, str]:
    """Apply the rules of the module docstring; the message quotes the numbers the verdict rests on."""
    used = 1 - h_now / h_start if h_start > 0 else float("nan")
    ent = (f"entropy {h_start:.3g} → {h_now:.3g} ({used:.0%} used; floor {floor:.3g}); recent Theil–Sen slope "
           f"{h_trend.slope:.3g}/step [{h_trend.ci[0]:.3g}, {h_trend.ci[1]:.3g}], Mann–Kendall τ = "
           f"{h_trend.tau:.2f}, p = {h_trend.p:.2g}")
    gain = r_trend.slope * (r_trend.step_to - r_trend.step_from)
    perf = (f"performance slope {r_trend.slope:.3g}/step over the last {r_trend.n} evaluations "
            f"({gain:+.3g} over the window), Mann–Kendall τ = {r_trend.tau:.2f}, p = {r_trend.p:.2g}")
    proj = f"projected to reach the floor at step {projected:.0f}" if projected is not None else \
        "not projected to reach the floor"
    if at_floor and not rising:
        return "collapsed", f"entropy has collapsed to its floor and performance is flat: {ent}; {perf}"
    if falling and heading and not rising:
        return "collapsing", (f"entropy is collapsing while performance has flattened: {ent}, {proj}; {perf}")
    if used >= SPENT_FRAC and not rising:
        return "collapsed", (f"entropy is mostly spent ({used:.0%}) and performance is flat or falling: {ent}; "
                             f"{perf}")
    if (falling or at_floor) and rising:
        return "converging", (f"entropy is falling but performance is still rising (convergence, not "
                              f"collapse): {ent}; {perf}")
    if falling:
        return "healthy", (f"entropy is falling but not heading for its floor within the horizon ({proj}; "
                           f"the decay levels off or is too slow): {ent}; {perf}")
    return "healthy", f"no significant downward entropy trend over the recent window (p ≥ {alpha:g}): {ent}; {perf}"
