"""Backtests: forecast each run from its first part, score the forecast against what the run then did.

Protocol (the same for every method, so the scores are comparable):

* The cutoff is a fraction of the run's step span: ``cutoff_step = first + cutoff·(last − first)``, the
  span taken over both the entropy and the performance steps. Only points at or before it are used.
* ``observed_final`` is the **mean of the last ``final_window`` (default 3) evaluations** after the
  cutoff, not the last one alone: a single evaluation carries ±1–1.5 pt of sampling noise on a
  GSM8K-sized set, which would swamp the differences between methods. Every method's ``predicted`` is
  its forecast of that same mean (its point forecasts averaged over the same steps), with an interval
  for that mean (``MethodForecast.window``).
* ``error`` = predicted − observed (signed; the summary uses |error| and error²).
* Methods: ``law`` (power entropy decay → law, its level anchored on the latest pre-cutoff pairs; ``anchor=``
  and ``decay_kinds=`` reach the older variants), ``saturating`` (c − d·e^(−t/τ) in the step), ``last_value`` (the
  last evaluation seen before the cutoff) and ``combined`` (rolling-origin inverse-MSE weights), see
  ``models.forecast``. ``method`` picks which one is the run's headline ``predicted_final``; all appear
  under ``baselines`` as well.

``summarise`` gives MAE and RMSE per method over the runs, names the winner (lowest MAE) and says plainly
when a baseline beat the law — that is the estimate the dashboard should show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.errors import FitError
from models.forecast import CONFIDENCE, FORECAST_KINDS, METHODS, Bounds, forecast

DEFAULT_CUTOFF = 0.3
FINAL_WINDOW = 3
PRIMARY = "law"


@dataclass(frozen=True)
class RunBacktest:
    """One run's backtest at one cutoff: the headline method's forecast of the final score and the rest."""

    run: str | None
    method: str  # the headline method
    predicted_final: float
    interval: tuple[float, float]
    observed_final: float
    error: float  # predicted_final − observed_final
    baselines: dict[str, dict[str, float | list[float]]]  # every method: predicted, error, interval
    cutoff: float
    cutoff_step: int
    n_pairs_before_cutoff: int
    final_steps: tuple[int, ...]  # evaluations averaged into observed_final
    weights: dict[str, float] = field(default_factory=dict)  # the combined method's weights
    best_before_cutoff: str = ""  # method with the smallest rolling-origin error before the cutoff
    ceiling: float = float("nan")
    ceiling_interval: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def covered(self) -> bool:
        return self.interval[0] <= self.observed_final <= self.interval[1]

    @classmethod
    def from_dict(cls, d: Mapping) -> RunBacktest:
        """Inverse of ``to_dict`` (stored analyses are JSON; summaries need the object back)."""
        names = cls.__dataclass_fields__
        vals = {k: d[k] for k in names if k in d}
        for k in ("interval", "ceiling_interval", "final_steps"):
            if k in vals:
                vals[k] = tuple(float("nan") if v is None else v for v in vals[k])
        vals["ceiling"] = float("nan") if vals.get("ceiling") is None else vals["ceiling"]
        return cls(**vals)

    def to_dict(self) -> dict:
        return {
            "run": self.run, "method": self.method, "predicted_final": self.predicted_final,
            "interval": list(self.interval), "observed_final": self.observed_final, "error": self.error,
            "baselines": {k: dict(v) for k, v in self.baselines.items()}, "cutoff": self.cutoff,
            "cutoff_step": self.cutoff_step, "n_pairs_before_cutoff": self.n_pairs_before_cutoff,
            "final_steps": list(self.final_steps), "weights": dict(self.weights),
            "best_before_cutoff": self.best_before_cutoff, "ceiling": self.ceiling,
            "ceiling_interval": list(self.ceiling_interval), "covered": self.covered,
        }


@dataclass(frozen=True)
class MethodScore:
    mae: float
    rmse: float
    n: int
    coverage: float  # share of runs whose observed final lies in the method's interval


@dataclass(frozen=True)
class BacktestSummary:
    """MAE/RMSE per method over the runs, the winner and an honest sentence about it."""

    scores: dict[str, MethodScore]
    winner: str
    primary: str
    n_runs: int
    cutoff: float | None
    sentence: str

    @property
    def baseline_won(self) -> bool:
        return self.winner != self.primary

    def to_dict(self) -> dict:
        return {
            "scores": {k: vars(v) for k, v in self.scores.items()}, "winner": self.winner,
            "primary": self.primary, "baseline_won": self.baseline_won, "n_runs": self.n_runs,
            "cutoff": self.cutoff, "sentence": self.sentence,
        }


@dataclass(frozen=True)
class BacktestBatch:
    """``backtest_many``: the runs that could be backtested, why the others could not, and the summary."""

    results: tuple[RunBacktest, ...]
    skipped: dict[str, tuple[str, str]]  # run → (cause, message)
    summary: BacktestSummary | None


def cutoff_step_of(entropy_steps, perf_steps, cutoff: float) -> float:
    """``first + cutoff·(last − first)`` over both step sets."""
    all_steps = np.concatenate([np.asarray(entropy_steps, float).ravel(), np.asarray(perf_steps, float).ravel()])
    first, last = float(np.nanmin(all_steps)), float(np.nanmax(all_steps))
    return first + cutoff * (last - first)


def backtest_run(
    entropy_steps: Sequence[float] | np.ndarray,
    entropy: Sequence[float] | np.ndarray,
    perf_steps: Sequence[float] | np.ndarray,
    perf: Sequence[float] | np.ndarray,
    *,
    cutoff: float = DEFAULT_CUTOFF,
    method: str = PRIMARY,
    run: str | None = None,
    bounds: Bounds = (0.0, 1.0),
    loss: str = "linear",
    warmup: bool = True,
    decay_kinds: Sequence[str] = FORECAST_KINDS,
    final_window: int = FINAL_WINDOW,
    n_boot: int = 400,
    seed: int = 0,
    anchor: bool = True,
) -> RunBacktest:
    """Backtest one run (protocol in the module docstring).

    Raises ``FitError`` (cause ``too_few_points_before_cutoff``, ``nothing_after_cutoff``, ``bad_option`` …)
    when the run cannot be backtested at this cutoff.
    """
    if not 0 < cutoff < 1:
        raise FitError(f"cutoff must be a fraction of the run strictly between 0 and 1, got {cutoff}", "bad_option")
    if method not in METHODS:
        raise FitError(f"unknown method {method!r}: choose among {list(METHODS)}", "bad_option")
    ps = np.asarray(perf_steps, dtype=float).ravel()
    pv = np.asarray(perf, dtype=float).ravel()
    if ps.shape != pv.shape:
        raise FitError(f"performance steps and values differ in length: {ps.size} vs {pv.size}", "shape")
    ok = np.isfinite(ps) & np.isfinite(pv)
    ps, pv = ps[ok], pv[ok]
    order = np.argsort(ps, kind="stable")
    ps, pv = ps[order], pv[order]
    if ps.size == 0:
        raise FitError("the run has no finite evaluations to backtest against", "too_few_points")
    cstep = cutoff_step_of(entropy_steps, ps, cutoff)
    after = ps > cstep
    if not after.any():
        raise FitError(f"no evaluation after the cutoff step {cstep:.0f}: nothing to score the forecast on",
                       "nothing_after_cutoff")
    final_steps = ps[after][-final_window:]
    observed = float(pv[after][-final_window:].mean())
    fc = forecast(entropy_steps, entropy, ps, pv, cutoff_step=cstep, horizon_steps=ps[after], bounds=bounds,
                  loss=loss, warmup=warmup, decay_kinds=decay_kinds, n_boot=n_boot, seed=seed, anchor=anchor)
    baselines: dict[str, dict[str, float | list[float]]] = {}
    for name, m in fc.methods.items():
        pred, (lo, hi) = m.window(final_steps, confidence=fc.confidence, bounds=bounds, seed=seed)
        baselines[name] = {"predicted": pred, "error": pred - observed, "interval": [lo, hi]}
    head = baselines[method]
    return RunBacktest(
        run=run, method=method, predicted_final=float(head["predicted"]),
        interval=(float(head["interval"][0]), float(head["interval"][1])), observed_final=observed,
        error=float(head["error"]), baselines=baselines, cutoff=cutoff, cutoff_step=int(np.floor(cstep)),
        n_pairs_before_cutoff=fc.n_pairs, final_steps=tuple(int(s) for s in final_steps),
        weights=dict(fc.weights), best_before_cutoff=fc.best_before_cutoff, ceiling=fc.ceiling,
        ceiling_interval=fc.ceiling_interval,
    )


def backtest_many(
    runs: Mapping[str, tuple] | Iterable[tuple],
    *,
    cutoff: float = DEFAULT_CUTOFF,
    method: str = PRIMARY,
    **options,
) -> BacktestBatch:
    """Backtest many runs: ``runs`` maps a name to ``(entropy_steps, entropy, perf_steps, perf)`` (or is an
    iterable of ``(name, entropy_steps, entropy, perf_steps, perf)``). Runs that cannot be backtested are
    listed in ``skipped`` with their cause; the summary covers the rest (None if none could be)."""
    items = runs.items() if isinstance(runs, Mapping) else ((r[0], r[1:]) for r in runs)
    results, skipped = [], {}
    for name, (hs, hv, ps, pv) in items:
        try:
            results.append(backtest_run(hs, hv, ps, pv, cutoff=cutoff, method=method, run=name, **options))
        except FitError as exc:
            skipped[name] = (exc.cause, str(exc))
    summary = summarise(results, primary=method) if results else None
    return BacktestBatch(results=tuple(results), skipped=skipped, summary=summary)


def summarise(backtests: Sequence[RunBacktest], *, primary: str = PRIMARY) -> BacktestSummary:
    """MAE/RMSE/coverage per method, the winner (lowest MAE; ties go to the primary) and a plain sentence."""
    if not backtests:
        raise FitError("no backtests to summarise", "too_few_points")
    names = list(backtests[0].baselines)
    scores = {}
    for name in names:
        err = np.array([b.baselines[name]["error"] for b in backtests], dtype=float)
        cover = [b.baselines[name]["interval"][0] <= b.observed_final <= b.baselines[name]["interval"][1]
                 for b in backtests]
        scores[name] = MethodScore(mae=float(np.mean(np.abs(err))), rmse=float(np.sqrt(np.mean(err**2))),
                                   n=len(err), coverage=float(np.mean(cover)))
    best = min(scores[n].mae for n in names)
    winner = primary if scores[primary].mae <= best + 1e-12 else min(names, key=lambda n: scores[n].mae)
    cutoffs = {b.cutoff for b in backtests}
    return BacktestSummary(scores=scores, winner=winner, primary=primary, n_runs=len(backtests),
                           cutoff=cutoffs.pop() if len(cutoffs) == 1 else None,
                           sentence=_sentence(scores, winner, primary, len(backtests)))


def _sentence(scores: dict[str, MethodScore], winner: str, primary: str, n: int) -> str:
    """One honest sentence: who won, by how much, and what the dashboard should show."""
    pts = {k: 100 * v.mae for k, v in scores.items()}
    runs = f"{n} run{'s' if n != 1 else ''}"
    if winner == primary:
        others = sorted((k for k in pts if k != primary), key=pts.__getitem__)
        margin = ", ".join(f"{k} {pts[k]:.2f}" for k in others)
        return (f"The {primary} forecast won over {runs}: MAE {pts[primary]:.2f} pt of the final score "
                f"(vs {margin} pt); the dashboard shows the {primary} estimate.")
    kind = "forecast (law and baselines weighted by their pre-cutoff errors)" if winner == "combined" else "baseline"
    return (f"The {winner} {kind} beat the {primary} forecast over {runs}: MAE {pts[winner]:.2f} pt vs "
            f"{pts[primary]:.2f} pt for the {primary}; the dashboard shows the {winner} estimate, and the "
            f"{primary} forecast is not the best predictor of the final score on these runs.")


__all__ = ["CONFIDENCE", "BacktestBatch", "BacktestSummary", "MethodScore", "RunBacktest", "backtest_many",
           "backtest_run", "cutoff_step_of", "summarise"]
