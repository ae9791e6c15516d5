"""Runs (or benchmarks) whose performance gives the law nothing to fit: a status and a reason in words.

Checked in this order on the evaluations used for the law (warm-up already excluded):

* ``too_few_evaluations`` — fewer than ``MIN_EVALUATIONS`` (3) evaluations paired with entropy;
* ``constant`` — every evaluation has the same value ("performance constant at −1.000: nothing to fit");
* ``saturated`` — a bounded metric already within ``SATURATION_MARGIN`` (2% of its range) of its maximum at
  the first evaluations: there is no room to learn, and a law fitted to noise would extrapolate past 1;
* ``no_learning`` — no significant rise: the best later level (a moving mean over a third of the
  evaluations) is not above the first third's mean by more than twice its standard error (noise from the
  spread of successive differences) and a minimum step (0.005 of a bounded range);
* ``falling`` — no significant rise, but the later level fell below the best one by more than twice its
  standard error and the minimum step: named as a fall (from the best to the end), never as "no learning";
* ``law_does_not_hold`` (``check_law``) — the fitted a ≤ 0 (performance does not rise as entropy falls) or
  R² below ``R2_MIN`` (0.3).

A degenerate series never gets law numbers in the headline (R² is never reported as 1 for a series with
no variance); the finding carries the numbers it fired on (``evidence``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.law import LawFit
from models.metric_range import MetricRange

MIN_EVALUATIONS = 3
SATURATION_MARGIN = 0.02
R2_MIN = 0.3
MIN_RISE_BOUNDED = 0.005


@dataclass(frozen=True)
class Degenerate:
    status: str  # too_few_evaluations | constant | saturated | falling | no_learning | law_does_not_hold
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "evidence": dict(self.evidence)}


def check_series(steps: np.ndarray, values: np.ndarray, rng: MetricRange) -> Degenerate | None:
    """The first check of the module docstring that fires, or None when the series can be fitted."""
    v = np.asarray(values, dtype=float)
    s = np.asarray(steps, dtype=float)
    n = len(v)
    if n < MIN_EVALUATIONS:
        return Degenerate("too_few_evaluations", f"too few evaluations: {n} paired with entropy, the law needs at "
                          f"least {MIN_EVALUATIONS}", {"n": n})
    if np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())):
        return Degenerate("constant", f"performance constant at {v[0]:.3f} over {n} evaluations: nothing to fit",
                          {"value": float(v[0]), "n": n})
    third = max(1, n // 3)
    if rng.hi is not None and rng.lo is not None:
        width = rng.hi - rng.lo
        first = float(np.mean(v[:min(3, n)]))
        if first >= rng.hi - SATURATION_MARGIN * width:
            return Degenerate("saturated", f"saturated from the start: {first:.3f} at the first evaluations, the "
                              f"metric's maximum is {rng.hi:g}: no room to learn", {"first": first, "max": rng.hi})
    early = float(np.mean(v[:third]))
    later = v[third:] if n - third >= third else v[-third:]
    best_later = float(np.max(np.convolve(later, np.ones(third) / third, mode="valid")))
    noise = _noise_sd(v)
    se = noise * np.sqrt(2.0 / third)
    floor = MIN_RISE_BOUNDED * (rng.hi - rng.lo) if rng.hi is not None and rng.lo is not None else 0.0
    rise = best_later - early
    if rise <= max(2 * se, floor):
        tail = float(np.mean(v[-third:]))
        best_level = float(np.max(np.convolve(v, np.ones(third) / third, mode="valid")))
        if best_level - tail > max(2 * se, floor):
            i = int(np.argmax(v))
            return Degenerate("falling", f"falling: from {v[i]:.3f} at best (step {s[i]:.0f}) to {v[-1]:.3f} at the "
                              f"end (last third {tail:.3f}, noise ±{noise:.3f}): no rise for the law to fit",
                              {"best": float(v[i]), "best_step": float(s[i]), "last": float(v[-1]),
                               "last_third": tail, "noise_sd": noise, "drop": best_level - tail})
        return Degenerate("no_learning", f"no learning: no significant rise (first third {early:.3f}, best later "
                          f"level {best_later:.3f}, noise ±{noise:.3f}) over steps {s[0]:.0f}–{s[-1]:.0f}",
                          {"early": early, "best_later": best_later, "noise_sd": noise, "rise": rise})
    return None


def check_law(law: LawFit) -> Degenerate | None:
    """``law_does_not_hold`` when a ≤ 0 or R² < ``R2_MIN``; None otherwise."""
    if not law.holds:
        return Degenerate("law_does_not_hold", f"law does not hold here: performance does not rise as entropy "
                          f"falls (a = {law.a:.4f} ≤ 0)", {"a": law.a, "r2": law.r2})
    if not np.isfinite(law.r2) or law.r2 < R2_MIN:
        return Degenerate("law_does_not_hold", f"law does not hold here: R² {law.r2:.2f} is below {R2_MIN} "
                          "(performance barely follows entropy)", {"a": law.a, "r2": law.r2})
    return None


def _noise_sd(v: np.ndarray) -> float:
    """Evaluation noise from successive differences (robust: 1.4826·MAD / √2)."""
    d = np.diff(v)
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))
