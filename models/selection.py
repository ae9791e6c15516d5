"""The headline forecast, stacked with weights learned on finished runs, and its calibrated interval.

Input: a ``Table`` of finished runs at one cutoff — every method's prediction of the final score, its
expected error (``scale``), its within-run rolling-origin score, and what happened.

Headline of run i (``headline_of``): a weighted mean of the methods' forecasts (stacking). The pool is the
other finished runs — of the same experiment when it has ``GROUP_MIN`` of them, else all ("leave-one-run-out":
run i never votes for its own forecast). Besides a dominated method (below), two kinds of forecast get no weight, named in ``excluded``:
the law when the run's law fit is weak (``models.weak_fit``), and an outlier — a method whose forecast lies
outside the range of the other methods' forecasts by more than ``OUTLIER_FACTOR`` times its own replayed
error (its MAE over the pool, or its within-run error without a pool). A method's weight is ∝ 1 / MAE² over the pool, for the methods that
forecast at least ``MIN_POOL`` (2) and 80% of the pool's runs; with too few finished runs the weights come
from the within-run rolling-origin errors of run i itself. A method that could not forecast run i gets no
weight. A method *dominated* over the pool — another weighted method's error was smaller on every one of the
(at least ``MIN_DOMINANCE``) pool runs both forecast — gets no weight either (``dominated``, named in ``excluded``): inverse-MAE²
weights assume independent errors, and when every method misses on the same side, as on the shared verl
runs, a method that is always further off only pulls the mean the wrong way. Weighting by the pool's errors
rather than picking the single best method keeps the choice stable when the pool is small (the pick of the
pool's best method lost to the stack on the simulated runs; ``bench/backtest.py``).

Interval (split conformal, studentised). Scores z_j = |headline_j − observed_j| / scale_j over the pool (the
same weights applied to run j's forecasts and scales); the interval is headline ± q·scale_i with q the
⌈(n + 1)·0.95⌉-th smallest score (finite-sample valid for exchangeable runs). With fewer than 19 runs that
rank does not exist: q is then a Student-t quantile (n − 1 degrees of freedom) times the scores' root mean
square — the interval a normal error of that size would have, wider the fewer runs there are — and it is
said to be uncalibrated. Intervals stay inside the metric's range.

``summarise`` scores the headline and every method over the runs: MAE, RMSE, coverage of their 95%
intervals, and says in one sentence whether the headline beat every method or which one beat it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.intervals import DEFAULT_CONFIDENCE, Z95, t_quantile

MIN_POOL = 2
#: a method is dominated only when beaten on at least this many pool runs (and 80% of the pool)
MIN_DOMINANCE = 3
GROUP_MIN = 5
#: weights ∝ 1 / MAE^WEIGHT_POWER (2: inverse squared error, as inverse-variance weighting)
WEIGHT_POWER = 2.0
#: a forecast this many times its replayed MAE outside the other methods' range is an outlier (no weight)
OUTLIER_FACTOR = 3.0
LAW = "law"


@dataclass(frozen=True, eq=False)
class Table:
    """Finished runs (rows) × methods (columns) at one cutoff."""

    runs: tuple[int, ...]
    groups: tuple[str | None, ...]
    methods: tuple[str, ...]
    predicted: np.ndarray  # N × M, NaN where a method failed
    scale: np.ndarray  # N × M
    rolling_mae: np.ndarray  # N × M, NaN where unknown
    observed: np.ndarray  # N
    lo: np.ndarray  # N, −inf when unbounded
    hi: np.ndarray  # N, +inf when unbounded
    weak_law: np.ndarray | None = None  # N bools: the run's law fit at the cut is weak (the law gets no weight)

    @property
    def errors(self) -> np.ndarray:
        return self.predicted - self.observed[:, None]


def _scores(table: Table, pool: list[int], k: int) -> np.ndarray:
    """|error| / scale of method k over the pool (a zero scale counts as a tiny one)."""
    if not pool:
        return np.array([])
    return np.abs(table.errors[pool, k]) / np.maximum(table.scale[pool, k], 1e-9)


@dataclass(frozen=True)
class Headline:
    """The forecast shown for one run: which method, why, its value and calibrated interval."""

    method: str
    predicted: float
    interval: tuple[float, float]
    rule: str  # "finished runs" (leave-one-run-out MAE) | "within run" (rolling origin) | "only method"
    pool: int  # finished runs the choice and the interval were learned from
    pool_mae: float | None  # the chosen method's MAE over the pool
    q: float  # conformal multiplier of the scale
    calibrated: bool  # False: fewer than 19 runs, q from a Student-t of the scores' RMS (see conformal_q)
    weights: dict[str, float]  # the methods combined and their weights
    excluded: dict[str, str] = None  # type: ignore[assignment]  # method → why it got no weight

    @property
    def label(self) -> str:
        """"stacked: law 52%, saturating 30%, …" (the largest weights first)."""
        top = sorted(self.weights.items(), key=lambda kv: -kv[1])
        return "stacked: " + ", ".join(f"{m} {w:.0%}" for m, w in top if w >= 0.005)

    def to_dict(self) -> dict:
        return {"method": self.method, "predicted": self.predicted, "interval": list(self.interval),
                "rule": self.rule, "pool": self.pool, "pool_mae": self.pool_mae, "q": self.q,
                "calibrated": self.calibrated, "weights": dict(self.weights), "label": self.label,
                "excluded": dict(self.excluded or {})}


def conformal_q(scores: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, bool]:
    """The studentised split-conformal multiplier and whether it is finite-sample calibrated.

    With too few scores for the conformal rank (fewer than 19 at 95%), the multiplier is that of a Student-t
    with the scores' root mean square as its scale and n − 1 degrees of freedom (wider the fewer runs there
    are); with none, 1.96 (nothing to calibrate on)."""
    s = np.sort(np.asarray(scores, dtype=float)[np.isfinite(scores)])
    n = len(s)
    rank = math.ceil((n + 1) * confidence)
    if n and rank <= n:
        return float(s[rank - 1]), True
    if n < 2:
        return float(max(Z95, s[-1] if n else 0.0)), False
    return float(t_quantile(n - 1, confidence) * np.sqrt(np.mean(s * s))), False


def pool_of(i: int | None, table: Table, group: str | None = None) -> list[int]:
    """Runs that may teach run ``i`` (``i`` None: a live run of experiment ``group``)."""
    n = len(table.runs)
    others = [j for j in range(n) if j != i]
    g = table.groups[i] if i is not None else group
    if g is not None:
        same = [j for j in others if table.groups[j] == g]
        if len(same) >= GROUP_MIN:
            return same
    return others


def _pool_mae(table: Table, pool: list[int], k: int) -> float:
    """Method k's MAE over the pool, NaN unless it forecast most of the pool."""
    e = np.abs(table.errors[pool, k]) if pool else np.array([])
    e = e[np.isfinite(e)]
    return float(e.mean()) if len(e) >= max(MIN_POOL, 0.8 * len(pool)) else float("nan")


def outliers(methods: Sequence[str], predicted: np.ndarray, error: np.ndarray) -> dict[str, str]:
    """Methods whose forecast lies outside the others' range by more than ``OUTLIER_FACTOR`` × their error."""
    out = {}
    ok = [k for k in range(len(methods)) if np.isfinite(predicted[k])]
    for k in ok:
        others = [predicted[j] for j in ok if j != k]
        if len(others) < 2 or not np.isfinite(error[k]):
            continue
        dist = max(0.0, predicted[k] - max(others), min(others) - predicted[k])
        if dist > OUTLIER_FACTOR * max(float(error[k]), 1e-6):
            out[methods[k]] = (f"outlier: {predicted[k]:.3f} lies {dist:.3f} outside the other methods' "
                               f"[{min(others):.3f}, {max(others):.3f}], more than {OUTLIER_FACTOR:g}× its replayed "
                               f"error {float(error[k]):.3f}")
    return out


def dominated(table: Table, pool: list[int], ks: Sequence[int]) -> dict[str, str]:
    """Methods (indices ``ks``) whose |error| was larger than another's of ``ks`` on every pool run both
    forecast, when they share at least ``MIN_DOMINANCE`` and 80% of the pool's runs. Strict dominance is a
    strict partial order: at least one method of ``ks`` is never dominated."""
    e = np.abs(table.errors[pool]) if pool else np.empty((0, len(table.methods)))
    out = {}
    for k in ks:
        for j in ks:
            both = np.isfinite(e[:, k]) & np.isfinite(e[:, j])
            n = int(both.sum())
            if j != k and n >= max(MIN_DOMINANCE, 0.8 * len(pool)) and np.all(e[both, j] < e[both, k]):
                out[table.methods[k]] = (f"dominated: {table.methods[j]} was closer on every one of the {n} "
                                         f"finished runs both forecast")
                break
    return out


def headline_of(table: Table, predicted: np.ndarray, scale: np.ndarray, rolling_mae: np.ndarray, lo: float,
                hi: float, pool: list[int], weak_law: bool = False) -> Headline:
    """The headline of a run with these per-method ``predicted``/``scale``/``rolling_mae`` rows, learned from
    the finished runs in ``pool`` (module docstring); ``weak_law``: the run's law fit is weak."""
    allm = [k for k in range(len(table.methods)) if np.isfinite(predicted[k])]
    if not allm:
        raise ValueError("no method could forecast this run")
    pool_err = np.array([_pool_mae(table, pool, k) for k in range(len(table.methods))])
    err = np.where(np.isfinite(pool_err), pool_err, np.asarray(rolling_mae, dtype=float))
    excluded = outliers(table.methods, predicted, err)
    if weak_law and LAW in table.methods and np.isfinite(predicted[table.methods.index(LAW)]):
        excluded[LAW] = "weak law fit at the cut: never the headline"
    can = [k for k in allm if table.methods[k] not in excluded] or allm
    mae = pool_err[can]
    if np.isfinite(mae).any():
        beaten = dominated(table, pool, [k for k in can if np.isfinite(pool_err[k])])
        excluded.update(beaten)
        can = [k for k in can if table.methods[k] not in beaten]
        rule, basis = "finished runs", pool_err[can]
    elif np.isfinite([rolling_mae[k] for k in can]).any():
        rule, basis = "within run", np.array([rolling_mae[k] for k in can], dtype=float)
    else:
        rule, basis = "equal weights", np.ones(len(can))
    w = np.where(np.isfinite(basis), 1.0 / np.maximum(basis, 1e-6) ** WEIGHT_POWER, 0.0)
    w = w / w.sum()
    ks = np.array(can)
    value = float(np.clip(w @ predicted[ks], lo, hi))
    s_i = float(w @ scale[ks])
    weights = {table.methods[k]: float(x) for k, x in zip(can, w, strict=True) if x > 0}
    # conformal scores of this combination over the pool (runs where every weighted method forecast)
    used = [k for k, x in zip(can, w, strict=True) if x > 0]
    wu = np.array([weights[table.methods[k]] for k in used])
    if pool:
        pp, ps = table.predicted[np.ix_(pool, used)], table.scale[np.ix_(pool, used)]
        ok = np.all(np.isfinite(pp), axis=1)
        scores = np.abs(pp[ok] @ wu - table.observed[pool][ok]) / np.maximum(ps[ok] @ wu, 1e-9)
    else:
        scores = np.array([])
    q, calibrated = conformal_q(scores)
    half = q * s_i
    pool_mae = float(np.mean(np.abs(pp[ok] @ wu - table.observed[pool][ok]))) if pool and ok.any() else None
    return Headline("stacked", value, (float(np.clip(value - half, lo, hi)), float(np.clip(value + half, lo, hi))),
                    rule, len(pool), pool_mae, q, calibrated, weights,
                    {m: why for m, why in excluded.items() if m not in weights})


def loro_headlines(table: Table) -> list[Headline]:
    """The headline of every finished run, each learned without it (the backtest of the headline)."""
    weak = table.weak_law if table.weak_law is not None else np.zeros(len(table.runs), bool)
    return [headline_of(table, table.predicted[i], table.scale[i], table.rolling_mae[i], float(table.lo[i]),
                        float(table.hi[i]), pool_of(i, table), bool(weak[i])) for i in range(len(table.runs))]


def method_intervals(table: Table) -> np.ndarray:
    """N × M × 2: every method's own leave-one-run-out conformal interval (for its coverage)."""
    n, m = table.predicted.shape
    out = np.full((n, m, 2), np.nan)
    for i in range(n):
        pool = pool_of(i, table)
        for k in range(m):
            if not np.isfinite(table.predicted[i, k]):
                continue
            q, _ = conformal_q(_scores(table, pool, k))
            half = q * table.scale[i, k]
            out[i, k] = np.clip([table.predicted[i, k] - half, table.predicted[i, k] + half], table.lo[i], table.hi[i])
    return out


@dataclass(frozen=True)
class Score:
    mae: float
    rmse: float
    n: int
    coverage: float | None

    def to_dict(self) -> dict:
        return {"mae": self.mae, "rmse": self.rmse, "n": self.n, "coverage": self.coverage}


@dataclass(frozen=True)
class Summary:
    """MAE/RMSE/coverage of the headline and of every method over the runs, and the sentence that says it."""

    scores: dict[str, Score]  # "headline" and each method
    best_method: str
    headline_methods: dict[str, int]  # how often each method had the largest weight in the headline
    n_runs: int
    cutoff: float
    sentence: str

    @property
    def headline_beat_all(self) -> bool:
        return self.scores["headline"].mae < self.scores[self.best_method].mae

    def to_dict(self) -> dict:
        return {"scores": {k: v.to_dict() for k, v in self.scores.items()}, "best_method": self.best_method,
                "headline_methods": dict(self.headline_methods), "headline_beat_all": self.headline_beat_all,
                "n_runs": self.n_runs, "cutoff": self.cutoff, "sentence": self.sentence}


def summarise(table: Table, headlines: Sequence[Headline], cutoff: float) -> Summary:
    obs = table.observed
    errors = {"headline": np.array([h.predicted for h in headlines]) - obs}
    covered = {"headline": [(h.interval[0] <= o <= h.interval[1]) for h, o in zip(headlines, obs, strict=True)]}
    iv = method_intervals(table)
    for k, m in enumerate(table.methods):
        ok = np.isfinite(table.predicted[:, k])
        if not ok.any():
            continue
        covered[m] = [(iv[i, k, 0] <= obs[i] <= iv[i, k, 1]) for i in np.flatnonzero(ok)]
        errors[m] = table.errors[ok, k]
    tops = [max(h.weights, key=h.weights.get) for h in headlines]
    return summary_from(errors, covered, table.methods, tops, len(headlines), cutoff)


def summary_from(errors: dict[str, np.ndarray], covered: dict[str, Sequence[bool]], methods: Sequence[str],
                 tops: Sequence[str], n: int, cutoff: float) -> Summary:
    """The summary of errors and interval coverages ("headline" and per method) and the headline's largest
    weight per run (``tops``)."""
    scores = {k: _score(errors[k], covered[k]) for k in ("headline", *methods) if k in errors}
    # a method that forecast fewer runs than the headline is not comparable on MAE: rank the complete ones
    complete = [m for m in methods if m in scores and scores[m].n == n] or [m for m in methods if m in scores]
    best = min(complete, key=lambda m: scores[m].mae)
    counts: dict[str, int] = {}  # how often each method had the largest weight
    for top in tops:
        counts[top] = counts.get(top, 0) + 1
    return Summary(scores, best, counts, n, cutoff, _sentence(scores, best, counts, n, cutoff))


def _score(err: np.ndarray, covered: Sequence[bool]) -> Score:
    err = np.asarray(err, dtype=float)
    return Score(float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2))), int(err.size),
                 float(np.mean(covered)) if len(covered) else None)


def _sentence(scores: dict[str, Score], best: str, counts: dict[str, int], n: int, cutoff: float) -> str:
    """One true sentence: how the headline did against the best single method, and what it is made of."""
    h, b = scores["headline"], scores[best]
    runs = f"{n} finished run{'s' if n != 1 else ''}"
    made = ", ".join(f"{m} in {c}" for m, c in sorted(counts.items(), key=lambda kv: -kv[1]))
    cov = f"; its 95% interval covered {h.coverage:.0%} of them" if h.coverage is not None else ""
    lead = (f"Forecasting the final score from the first {cutoff:.0%} of {runs}, the headline (a weighted mean of "
            f"the methods, weights learned for each run on the other finished runs; largest weights: {made}) had "
            f"MAE {100 * h.mae:.2f} pt{cov}")
    if h.mae < b.mae - 1e-12:
        return f"{lead}; it beat every single method (best: {best}, {100 * b.mae:.2f} pt)."
    if abs(h.mae - b.mae) <= 1e-12:
        return f"{lead}, the same as {best}, the best single method on these runs: it did not beat it."
    return (f"{lead}; {best} alone did better ({100 * b.mae:.2f} pt): the headline did not beat every method "
            "on these runs.")


@dataclass(frozen=True)
class Gap:
    """How much worse the headline did than one method over the same runs, and whether that is noise.

    ``gap`` is the mean of the paired differences |headline error| − |method error| (each run's headline
    learned without it), ``se`` their standard error (n − 1 in the variance), and ``bound`` the one-sided 95%
    paired t-test's threshold, t(0.95; n − 1)·se: a gap above it is worse than the method by more than noise."""

    gap: float
    se: float
    n: int
    bound: float

    @property
    def within_noise(self) -> bool:
        return self.gap <= self.bound + 1e-12


def gap_to(headline_error: np.ndarray, method_error: np.ndarray) -> Gap:
    """The paired gap of the headline to a method over the runs both forecast (``Gap``)."""
    d = np.abs(np.asarray(headline_error, dtype=float)) - np.abs(np.asarray(method_error, dtype=float))
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        return Gap(float(d.mean()) if n else float("nan"), float("inf"), n, float("inf"))
    se = float(np.std(d, ddof=1) / np.sqrt(n))
    return Gap(float(d.mean()), se, n, t_quantile(n - 1, 1 - 2 * (1 - DEFAULT_CONFIDENCE)) * se)
