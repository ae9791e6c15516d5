"""Gradient spikes and non-finite gradients (verl ``actor/grad_norm``, TRL ``grad_norm``).

* non-finite norms (NaN, inf) at any step: ``critical``;
* spikes: a norm at least 3× the median of its 10 neighbours and above it by more than 6 robust standard
  deviations (MAD of the log-norm around the rolling median); the first 5 steps are left out (a fresh policy's
  first updates are large by nature). 3 or more spikes, or one ≥ 10×: ``warn``; 1–2: ``info``;
* vanishing: the last quarter's median below 5% of the median of steps 5 to the first quarter: ``info`` (in
  GRPO it usually means uniform groups, no advantage; see ``advantage_collapse``).
"""

from __future__ import annotations

import numpy as np

from models.health.finding import Finding, skipped
from models.health.series import Curve, window_median

NAME = "gradient_pathology"
SKIP_FIRST = 5
SPIKE_RATIO, SPIKE_SIGMA, BIG_SPIKE = 3.0, 6.0, 10.0
VANISH = 0.05
ADVICE = (
    "Non-finite gradients: lower the learning rate, check for bf16/fp16 overflow and for empty or all-padding "
    "responses; resume from the last checkpoint before the first one.",
    "Recurring spikes: tighten gradient clipping (actor.grad_clip, max_grad_norm) and read the rollouts of the "
    "spiking steps — a few pathological prompts or an extreme reward usually cause them.",
    "A vanishing norm in GRPO is usually an advantage problem (every rollout of a group rewarded alike), not an "
    "optimiser one.",
)
REFERENCES = ("Pascanu et al., On the difficulty of training recurrent neural networks (arXiv:1211.5063)",)


def detect(grad_norm: Curve | None) -> Finding:
    if grad_norm is None or len(grad_norm) < 8:
        return skipped(NAME, "actor/grad_norm or grad_norm", "no gradient norm logged (or fewer than 8 points)")
    g = grad_norm
    bad = ~np.isfinite(g.values)
    n_bad = int(bad.sum())
    f = g.finite()
    spikes: list[tuple[int, float]] = []
    if len(f) > SKIP_FIRST + 5:
        logv = np.log(np.maximum(f.values, 1e-12))
        n = logv.size
        med = window_median(logv, 5, 5, without_centre=True)  # each point's 10 neighbours
        resid = logv - med
        sd = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) or 1e-12
        for i in range(SKIP_FIRST, n):
            ratio = float(np.exp(resid[i]))
            if ratio >= SPIKE_RATIO and resid[i] > SPIKE_SIGMA * sd:
                spikes.append((int(f.steps[i]), ratio))
    q = max(3, len(f) // 4)
    early = f.values[SKIP_FIRST: max(SKIP_FIRST + 3, q)] if len(f) > SKIP_FIRST + 3 else f.values[:q]
    early_med = float(np.median(early)) if early.size else float("nan")
    late_med = float(np.median(f.values[-q:])) if len(f) else float("nan")
    vanish = bool(early_med > 0 and late_med < VANISH * early_med)
    worst = max(spikes, key=lambda s: s[1]) if spikes else None
    if n_bad:
        severity = "critical"
    elif len(spikes) >= 3 or (worst and worst[1] >= BIG_SPIKE):
        severity = "warn"
    elif spikes or vanish:
        severity = "info"
    else:
        severity = "ok"
    parts = []
    if n_bad:
        first_bad = int(g.steps[bad][0])
        parts.append(f"{n_bad} non-finite gradient norm{'s' if n_bad > 1 else ''} (first at step {first_bad})")
    if spikes:
        parts.append(f"{len(spikes)} spike{'s' if len(spikes) > 1 else ''} after step {int(f.steps[min(SKIP_FIRST, len(f) - 1)])}"
                     f" (the worst {worst[1]:.1f}× its neighbours at step {worst[0]})")
    if vanish:
        parts.append(f"the norm fell to {late_med / early_med:.1%} of its early level ({early_med:.3g} → {late_med:.3g})")
    if not parts:
        parts.append(f"no spike, no non-finite value over {len(g)} steps (median {late_med:.3g} recently, "
                     f"{early_med:.3g} early)")
    evidence = {"nonfinite": n_bad, "spikes": len(spikes), "worst_spike_ratio": worst[1] if worst else None,
                "worst_spike_step": worst[0] if worst else None, "early_median": early_med,
                "recent_median": late_med, "skipped_first_steps": SKIP_FIRST,
                "cohort_metric": "gradient spikes", "cohort_value": len(spikes)}
    sentence = ("; ".join(parts) + ".")
    return Finding(NAME, severity, sentence[0].upper() + sentence[1:], evidence, (g.key,), g.span,
                   ADVICE if severity != "ok" else (), REFERENCES)
