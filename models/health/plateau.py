"""Plateau: the steps (and hours, where wall time is logged) spent since a benchmark's best evaluation.

* the best level and its step from ``models.health.progress`` (a moving mean of 3: one lucky evaluation is
  not a best); share of the run since then;
* ``warn``: the score is falling and at least 25% of the run (and 3 evaluations) came after the best;
  ``info``: flat with at least 40% of the run and 4 evaluations after the best; ``ok`` otherwise;
* hours: the steps since the best times the median wall time per step between evaluations (restarts make
  wall clocks jump, so their difference is not used);
* a constant score has no best to measure from: skipped, saying so.

The live forecast (what the remaining planned steps buy) is added to the sentence by the analysis, which
knows it.
"""

from __future__ import annotations

import numpy as np

from models.health.finding import Finding, skipped
from models.health.progress import progress_of
from models.health.series import Curve

NAME = "plateau"
ADVICE = (
    "Stop the run, or keep the checkpoint of the best step: the steps since have not bought anything.",
    "More of the same will not help: harder prompts, a broader task mix, or more exploration (see the entropy "
    "findings) change what the run can reach.",
)
REFERENCES = (
    "Prechelt, Early Stopping — But When? (Neural Networks: Tricks of the Trade, 1998)",
    "Mann, Nonparametric tests against trend (Econometrica, 1945)",
)


def detect(benchmark: Curve | None, *, name: str, scale: float | None = None) -> Finding:
    if benchmark is None or len(benchmark.finite()) < 4:
        return skipped(NAME, "at least 4 evaluations", "too few evaluations to find a best", benchmark=name)
    b = benchmark.finite()
    if np.ptp(b.values) <= 1e-12 * max(1.0, float(np.abs(b.values).max())):
        return skipped(NAME, "a held-out score that moves", f"{name} is constant at {b.values[0]:.3f} over "
                       f"{len(b)} evaluations (degenerate): there is no best to measure a plateau from",
                       benchmark=name)
    prog = progress_of(b, scale)
    last, first = int(b.steps[-1]), int(b.steps[0])
    since = last - prog.best_step
    share = since / (last - first) if last > first else 0.0
    after = int((b.steps > prog.best_step).sum())
    hours = _hours(b, since)
    if prog.state == "falling" and share >= 0.25 and after >= 3:
        severity = "warn"
    elif prog.state in ("flat", "slow") and share >= 0.4 and after >= 4:
        severity = "info"
    else:
        severity = "ok"
    when = f"{since} steps ({share:.0%} of the run" + (f", about {hours:.1f} h at its median pace" if hours else "") + ")"
    if severity == "ok":
        sentence = (f"no plateau: {name} is {prog.state}, best level {prog.best:.3f} at step {prog.best_step}, "
                    f"{prog.recent:.3f} over the last 3 evaluations.")
    else:
        sentence = (f"{name} has been {'rising only slowly' if prog.state == 'slow' else prog.state} for {when} since its best, {prog.best_value:.3f} at step "
                    f"{prog.best_step} ({prog.best:.3f} over 3 evaluations); the last 3 evaluations average {prog.recent:.3f}.")
    evidence = {**prog.evidence("benchmark"), "steps_since_best": since, "share_since_best": share,
                "evaluations_since_best": after, "hours_since_best": hours,
                "cohort_metric": "share of the run since the best evaluation", "cohort_value": share}
    return Finding(NAME, severity, sentence, evidence, (b.key,), (prog.best_step, last),
                   ADVICE if severity != "ok" else (), REFERENCES, benchmark=name)


def _hours(b: Curve, steps: int) -> float | None:
    if b.wall is None or len(b) < 3 or not np.isfinite(b.wall).all():
        return None
    per = np.diff(b.wall) / np.maximum(np.diff(b.steps), 1)
    per = per[per > 0]
    return float(np.median(per) * steps / 3600) if per.size else None
