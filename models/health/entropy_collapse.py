"""Entropy collapse as the seeds define it: most of the policy's entropy spent while performance has stopped
improving (flat or falling) — whether or not the decay is still heading for a fixed floor.

* spent = 1 − H_now / H_start (medians of the first and last 5 entropy values, as ``models.collapse``);
* performance state from ``models.health.progress`` on the benchmark (warm-up excluded by the caller);
* ``critical``: spent ≥ 90% and not rising, or spent ≥ 80% and falling; ``warn``: spent ≥ 75% and not rising,
  or ``models.collapse`` projects the floor within the horizon while performance is flat; ``info``: spent ≥ 50%
  and not rising; ``ok`` otherwise (a run still rising is converging, not collapsing).

The floor projection of ``models.collapse`` is kept as evidence. ``spent_profile`` gives the share of entropy
spent at fixed steps, so a run can be ranked against the store's finished runs at the same step.
"""

from __future__ import annotations

import numpy as np

from models.collapse import START_POINTS, detect_collapse
from models.health.finding import Finding, skipped
from models.health.progress import progress_of
from models.health.series import Curve

NAME = "entropy_collapse"
CRITICAL_SPENT, CRITICAL_FALLING_SPENT, WARN_SPENT, INFO_SPENT = 0.9, 0.8, 0.75, 0.5
PROFILE_STEPS = (5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000)
ADVICE = (
    "Keep exploring before the entropy is gone: Clip-Cov or KL-Cov (clip or penalise the few high-covariance "
    "tokens), a higher upper clip (clip-higher), or a small entropy bonus.",
    "If the score has stopped rising, the checkpoint at its best step is as good as this run will get at this "
    "entropy: compare the law's ceiling with what the run has reached before spending more steps.",
    "Raise the rollout temperature or the group size to bring back diverse rollouts.",
)
REFERENCES = (
    "Cui et al., The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models (arXiv:2505.22617)",
    "Yu et al., DAPO: An Open-Source LLM Reinforcement Learning System at Scale (arXiv:2503.14476)",
)


def detect(entropy: Curve | None, performance: Curve | None, *, scale: float | None = None) -> Finding:
    if entropy is None or len(entropy.finite()) < 12:
        return skipped(NAME, "an entropy metric (actor/entropy, entropy, policy_entropy)",
                       "no entropy curve with at least 12 finite points")
    h = entropy.finite()
    if performance is None or len(performance.finite()) < 4:
        return skipped(NAME, "a performance metric (val-core/…/acc/mean@1, eval_*, or the training reward)",
                       "fewer than 4 evaluations to tell whether performance still improves")
    r = performance.finite()
    col = detect_collapse(h.steps, h.values, r.steps, r.values)
    h_start = float(np.median(h.values[:START_POINTS]))
    h_now = float(np.median(h.values[-START_POINTS:]))
    if h_start <= 0:
        return skipped(NAME, "a positive entropy", f"the entropy starts at {h_start:.3g}")
    spent = 1 - h_now / h_start
    prog = progress_of(r, scale)
    state = prog.state if prog else "unknown"
    rising = state == "rising"
    if (spent >= CRITICAL_SPENT and not rising) or (spent >= CRITICAL_FALLING_SPENT and state == "falling"):
        severity = "critical"
    elif (spent >= WARN_SPENT and not rising) or (col.verdict == "collapsing"):
        severity = "warn"
    elif spent >= INFO_SPENT and not rising:
        severity = "info"
    else:
        severity = "ok"
    ent = f"entropy {h_start:.3g} → {h_now:.3g} ({spent:.0%} spent by step {int(h.steps[-1])})"
    perf = {"rising": "the score is still rising", "flat": "the score has been flat",
            "falling": "the score is falling", "unknown": "the score's trend is unknown",
            "slow": "the score gains little"}[state]
    if prog and state == "slow":
        perf += (f" ({prog.gain:+.3g} over steps {prog.window[0]}–{prog.window[1]}, under a quarter of its gains "
                 f"so far; best {prog.best_value:.3f} at step {prog.best_step})")
    elif prog and state != "rising":
        perf += f" (best {prog.best_value:.3f} at step {prog.best_step}, last 3 evaluations {prog.recent:.3f})"
    proj = (f"; the decay reaches the 10% floor at step {col.projected_floor_step:.0f}"
            if col.projected_floor_step is not None else "")
    verdict = {"critical": "entropy has collapsed", "warn": "entropy is collapsing",
               "info": "half the entropy is spent with no gain", "ok": "no collapse"}[severity]
    if severity == "ok" and rising and spent >= INFO_SPENT:
        verdict = "converging, not collapsing"
    sentence = f"{verdict}: {ent} and {perf}{proj}."
    evidence = {"entropy_start": h_start, "entropy_now": h_now, "entropy_spent": spent,
                "projected_floor_step": col.projected_floor_step, "decay_kind": col.decay_kind,
                "floor": col.floor, "floor_projection_verdict": col.verdict,
                "entropy_slope_per_step": col.theil_sen_slope,
                "cohort_metric": "entropy spent", "cohort_value": spent}
    if prog:
        evidence |= prog.evidence()
    first = int(min(h.steps[0], r.steps[0]))
    return Finding(NAME, severity, sentence, evidence, (h.key, r.key), (first, int(h.steps[-1])),
                   ADVICE if severity != "ok" else (), REFERENCES)


def spent_profile(entropy: Curve | None) -> dict[int, float]:
    """Share of the starting entropy spent by each of ``PROFILE_STEPS`` the run reached (median of 5 points
    around the step)."""
    if entropy is None:
        return {}
    h = entropy.finite()
    if len(h) < 12:
        return {}
    h_start = float(np.median(h.values[:START_POINTS]))
    if h_start <= 0:
        return {}
    out = {}
    for s in PROFILE_STEPS:
        if h.steps[-1] < s:
            break
        i = int(np.searchsorted(h.steps, s))
        near = h.values[max(0, i - 2): i + 3]
        out[s] = float(1 - np.median(near) / h_start)
    return out
