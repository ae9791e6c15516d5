"""Backtests of one finished run: forecast it from its first part, compare with what it then did.

Protocol (the same for every method, so the scores are comparable):

* The cutoff is a fraction of the run's step span: ``cutoff_step = first + cutoff·(last − first)``, the span
  taken over both the entropy and the performance steps. Only points at or before it are used.
* ``observed_final`` is the **mean of the last ``FINAL_WINDOW`` (3) evaluations** after the cutoff, not the
  last one alone (a single evaluation carries ±1–1.5 pt of sampling noise on a GSM8K-sized set); every
  method forecasts that same mean (``models.forecast``).
* ``errors[m]`` = predicted − observed, per method.

Only finished runs are backtested (a run stopped at step 373 of a planned 600 has no final score yet); the
caller decides which runs are finished. Which method is the headline, and its calibrated interval, are
decided across runs (``models.selection``): one run cannot tell which method to trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import FitError
from models.forecast import Forecast, forecast
from models.metric_range import MetricRange

CUTOFFS = (0.1, 0.2, 0.3, 0.5)
DEFAULT_CUTOFF = 0.3
FINAL_WINDOW = 3
#: the replay grid: every finished run is cut at each of these fractions of its planned length (10% to 90%)
GRID = tuple(round(0.10 + 0.05 * i, 2) for i in range(17))


def replay_cut_step(first_step: float, end_step: float, fraction: float) -> float:
    """The step at which a run spanning ``first_step``..``end_step`` (its planned end) is ``fraction`` done."""
    return first_step + fraction * (end_step - first_step)


def bracket(fraction: float, grid: Sequence[float] = GRID) -> tuple[float, float, float]:
    """The grid fractions around ``fraction`` and the weight of the upper one (clamped to the grid's ends)."""
    f = min(max(fraction, grid[0]), grid[-1])
    hi = next(g for g in grid if g >= f - 1e-12)
    lo = max([g for g in grid if g <= f + 1e-12], default=hi)
    return lo, hi, 0.0 if hi == lo else (f - lo) / (hi - lo)


@dataclass(frozen=True)
class RunBacktest:
    """One run at one cutoff: every method's forecast of the final score and what happened."""

    cutoff: float
    cutoff_step: float
    observed_final: float
    final_steps: tuple[int, ...]
    forecast: Forecast

    @property
    def errors(self) -> dict[str, float]:
        return {m: f.predicted - self.observed_final for m, f in self.forecast.methods.items()}

    def to_dict(self) -> dict:
        return {"cutoff": self.cutoff, "cutoff_step": self.cutoff_step, "observed_final": self.observed_final,
                "final_steps": list(self.final_steps), "errors": self.errors, **self.forecast.to_dict()}


def cutoff_step_of(entropy_steps, perf_steps, cutoff: float) -> float:
    """``first + cutoff·(last − first)`` over both step sets."""
    steps = np.concatenate([np.asarray(entropy_steps, float).ravel(), np.asarray(perf_steps, float).ravel()])
    first, last = float(np.nanmin(steps)), float(np.nanmax(steps))
    return first + cutoff * (last - first)


def backtest_run(
    entropy_steps: Sequence[float] | np.ndarray,
    entropy: Sequence[float] | np.ndarray,
    perf_steps: Sequence[float] | np.ndarray,
    perf: Sequence[float] | np.ndarray,
    *,
    cutoff: float,
    rng: MetricRange,
    warmup: str | int = "auto",
    final_window: int = FINAL_WINDOW,
) -> RunBacktest:
    """Backtest one finished run at ``cutoff`` (protocol in the module docstring).

    Raises ``FitError`` (``bad_option``, ``nothing_after_cutoff``, ``too_few_points_before_cutoff`` …) when
    the run cannot be backtested at this cutoff.
    """
    if not 0 < cutoff < 1:
        raise FitError(f"cutoff must be a fraction of the run strictly between 0 and 1, got {cutoff}", "bad_option")
    ps = np.asarray(perf_steps, dtype=float).ravel()
    pv = np.asarray(perf, dtype=float).ravel()
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
    observed = float(np.mean(pv[after][-final_window:]))
    fc = forecast(entropy_steps, entropy, ps, pv, cutoff_step=cstep, target_steps=final_steps, rng=rng,
                  warmup=warmup)
    return RunBacktest(cutoff, cstep, observed, tuple(int(s) for s in final_steps), fc)
