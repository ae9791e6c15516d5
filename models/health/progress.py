"""Whether a score is still rising, flat or falling: the judgement the collapse, blow-up, divergence and plateau
detectors share.

* best level: the highest moving mean of 3 evaluations (one lucky evaluation is not a best), and its step;
* recent level: the mean of the last 3; the drop from best is significant when it exceeds twice its standard
  error (noise from successive differences) and ``MIN_DROP`` of the metric's scale;
* recent trend: Theil–Sen and Mann–Kendall over the last half of the evaluations (at least 5);
* ``rising``: the recent level is not below the best (by more than its standard error), the recent window
  gains more than twice that error, at least a quarter of the gains so far, and Mann–Kendall τ > 0 with
  p < 0.05 or more than three times the evaluation noise; ``slow``: a significant rise (Mann–Kendall) that is
  smaller than that (small gains: the plateau stage); ``falling``: a significant drop from the best with a
  downward recent trend (τ < 0); ``flat`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.health.series import Curve, level, noise_sd, recent, trend_of

ALPHA = 0.05
MIN_GAIN_FRAC = 0.25
MIN_DROP = 0.005  # of the score's spread scale (range of a bounded score, else its own spread)


@dataclass(frozen=True)
class Progress:
    state: str  # rising | slow | flat | falling
    best: float  # best level (moving mean of 3)
    best_step: int  # step of the best evaluation inside that best window
    best_value: float  # that evaluation's value
    recent: float
    drop: float
    drop_se: float
    slope: float
    gain: float  # Theil–Sen gain over the recent window
    tau: float
    p: float
    n: int
    window: tuple[int, int]

    def evidence(self, prefix: str = "performance") -> dict[str, float | int | str]:
        return {f"{prefix}_state": self.state, f"{prefix}_best": self.best, f"{prefix}_best_step": self.best_step,
                f"{prefix}_best_value": self.best_value,
                f"{prefix}_recent": self.recent, f"{prefix}_window_gain": self.gain, f"{prefix}_drop_from_best": self.drop,
                f"{prefix}_drop_se": self.drop_se, f"{prefix}_slope_per_step": self.slope,
                f"{prefix}_mann_kendall_tau": self.tau, f"{prefix}_mann_kendall_p": self.p}


def progress_of(c: Curve, scale: float | None = None) -> Progress | None:
    """The score's progress (module docstring); None with fewer than 4 finite evaluations."""
    c = c.finite()
    if len(c) < 4:
        return None
    v = c.values
    lv = level(v)
    i = int(np.argmax(lv[2:]) + 2) if v.size > 3 else int(np.argmax(lv))
    best = float(lv[i])
    j = max(0, i - 2) + int(np.argmax(v[max(0, i - 2): i + 1]))
    best_step, best_value = int(c.steps[j]), float(v[j])
    now = float(np.mean(v[-3:]))
    sd = noise_sd(v)
    se = sd * np.sqrt(1 / 3 + 1 / 3)
    spread = scale if scale is not None else float(np.ptp(v)) or 1.0
    drop = best - now
    window = recent(c, share=0.5, at_least=5)
    tr = trend_of(window)
    total = float(v[-1] - v[0])
    gain = tr.slope * (tr.step_to - tr.step_from)
    at_best = now >= best - se
    material = gain > 2 * se and (total <= 0 or gain >= MIN_GAIN_FRAC * total)
    if at_best and material and (tr.rising(ALPHA) or gain > 3 * sd):
        state = "rising"
    elif drop > max(2 * se, MIN_DROP * spread) and tr.tau < 0:
        state = "falling"
    elif tr.rising(ALPHA) and gain > 0:
        state = "slow"
    else:
        state = "flat"
    return Progress(state, best, best_step, best_value, now, drop, float(se), tr.slope, float(gain), tr.tau, tr.p, tr.n,
                    (int(tr.step_from), int(tr.step_to)))
