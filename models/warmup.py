"""Warm-up (burn-in) evaluations: taken before the policy learned the output format, so not on the law.

In real verl GSM8K runs the evaluation at step 0 scores 0.21 (or 0.57) and the one at step 5 already 0.85:
accuracy jumps while entropy has barely moved, because the model first learns the answer format. Those
evaluations sit far *below* the law of the later ones and, having the highest entropy, lever the fit
(R² 0.35–0.51, ceilings above 1). They are detected here and excluded from the law everywhere.

Rule (``detect_warmup``). Working backwards from a clean tail — the law fitted on pairs[k:], starting at
k = min(n // 3, n − 6) — pair k − 1 joins while it is not more than ``z`` (default 4) prediction standard
errors *below* that fit — and by at least a quarter of the run's whole spread of evaluations (one-sided: only
the "not there yet" direction) — and the tail's law holds (a > 0).
The first pair that is off marks the end of the warm-up: it and everything before it are excluded. Runs whose
first evaluations follow the law lose nothing; with fewer than 7 pairs nothing is judged.

The user can keep every evaluation (``keep_warmup``) or pin the warm-up to the evaluations at or before a
step (``warmup_steps = N``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WARMUP_Z = 4.0
#: ... and at least this share of the run's whole spread below the law (a format-learning jump is a large part
#: of a run's range; a curvature of the law or a tiny systematic misfit of an almost noise-free run is not)
MIN_SHARE = 0.25
MIN_TAIL = 6


@dataclass(frozen=True)
class Warmup:
    """Leading evaluations excluded from the law: how many, at which steps, why, and how it was decided."""

    n: int
    steps: tuple[int, ...]
    reason: str | None
    mode: str  # "auto" (detected), "pinned" (user: up to a step), "keep" (user: nothing excluded)

    def to_dict(self) -> dict:
        return {"n": self.n, "excluded_steps": list(self.steps), "reason": self.reason, "mode": self.mode}


NONE = Warmup(0, (), None, "auto")


def detect_warmup(h: np.ndarray, r: np.ndarray, steps: np.ndarray, *, z: float = WARMUP_Z) -> Warmup:
    """Leading (entropy, performance) pairs that are off the law of the later ones (rule in the module).

    The law of every tail pairs[k:] comes from suffix sums in one pass (ordinary least squares in closed
    form, as ``models.law``), so the backward scan costs O(n), not a refit per k."""
    h, r = np.asarray(h, dtype=float), np.asarray(r, dtype=float)
    n = len(h)
    top = min(n // 3, n - MIN_TAIL)
    if top <= 0 or not (np.all(np.isfinite(h)) and np.all(np.isfinite(r))) or np.abs(h).max() > 50:
        return NONE
    x = np.exp(h)
    spread = float(np.ptp(r))

    def suffix(v: np.ndarray) -> np.ndarray:
        return np.cumsum(v[::-1])[::-1]

    m = np.arange(n, 0, -1, dtype=float)  # points in pairs[k:]
    sx, sy, sxx, sxy, syy = suffix(x), suffix(r), suffix(x * x), suffix(x * r), suffix(r * r)
    with np.errstate(invalid="ignore", divide="ignore"):
        cxx, cxy, cyy = sxx - sx * sx / m, sxy - sx * sy / m, syy - sy * sy / m
        slope = cxy / cxx  # = −a
        b = (sy - slope * sx) / m
        sigma = np.sqrt(np.maximum(cyy - slope * cxy, 0.0) / np.maximum(m - 2, 1))
    for k in range(top, 0, -1):
        if not (cxx[k] > 1e-12 * max(sx[k] / m[k], 1e-300) ** 2 and -slope[k] > 0 and sigma[k] > 0):
            return NONE  # the tail's law cannot be fitted or does not hold: nothing is judged
        pred = float(b[k] + slope[k] * x[k - 1])
        se = sigma[k] * np.sqrt(1 + 1 / m[k] + (x[k - 1] - sx[k] / m[k]) ** 2 / cxx[k])  # of a new evaluation
        off = (pred - r[k - 1]) / max(float(se), 1e-12)
        if off > z and pred - r[k - 1] >= MIN_SHARE * spread:
            excluded = tuple(int(s) for s in steps[:k])
            where = f"step {excluded[0]}" if k == 1 else f"steps {excluded[0]}–{excluded[-1]} ({k} evaluations)"
            return Warmup(k, excluded, f"warm-up: the evaluation{'s' if k > 1 else ''} at {where} "
                                       f"{'lie' if k > 1 else 'lies'} below the law of the later ones (step "
                                       f"{excluded[-1]}: {r[k - 1]:.3f} vs {pred:.3f} predicted, {off:.1f} "
                                       "standard errors), as before the output format is learned", "auto")
    return NONE


def pinned_warmup(steps: np.ndarray, until_step: int) -> Warmup:
    """The user's choice: evaluations at or before ``until_step`` are the warm-up."""
    excluded = tuple(int(s) for s in np.asarray(steps) if s <= until_step)
    return Warmup(len(excluded), excluded, f"warm-up pinned by the user: evaluations at or before step "
                                           f"{until_step} excluded", "pinned")


KEEP = Warmup(0, (), "warm-up detection turned off by the user: every evaluation is fitted", "keep")

