"""Clip saturation: the share of tokens whose probability ratio the PPO/GRPO objective clips. When it is large,
most of the batch gives no gradient and updates are too big for the trust region.

Every clip-fraction key a run logs (verl ``actor/pg_clipfrac``, ``actor/pg_clipfrac_lower``, TRL
``clip_ratio/*``) is read; the worst one's mean over the last quarter decides: ``critical`` ≥ 35%, ``warn`` ≥ 20%,
``info`` ≥ 10%, ``ok`` below.
"""

from __future__ import annotations

import numpy as np

from models.health.finding import Finding, skipped
from models.health.series import Curve, recent

NAME = "clip_saturation"
CRITICAL, WARN, INFO = 0.35, 0.2, 0.1
ADVICE = (
    "Lower the learning rate or the number of PPO epochs / mini-batches per rollout: the policy moves further "
    "than the clip range allows on each update.",
    "If only the upper bound clips, a higher upper clip (clip-higher, clip_ratio_high) lets low-probability "
    "tokens rise and keeps exploration.",
)
REFERENCES = (
    "Schulman et al., Proximal Policy Optimization Algorithms (arXiv:1707.06347)",
    "Yu et al., DAPO: An Open-Source LLM Reinforcement Learning System at Scale (arXiv:2503.14476)",
)


def detect(clipfracs: list[Curve]) -> Finding:
    curves = [c.finite() for c in clipfracs if len(c.finite()) >= 3]
    if not curves:
        return skipped(NAME, "actor/pg_clipfrac or clip_ratio/region_mean", "no clip fraction logged")
    recents = {c.key: recent(c, 0.25, 5) for c in curves}
    means = {k: float(np.mean(r.values)) for k, r in recents.items()}
    key = max(means, key=means.__getitem__)
    frac = means[key]
    severity = "critical" if frac >= CRITICAL else "warn" if frac >= WARN else "info" if frac >= INFO else "ok"
    span = recents[key].span
    others = "; ".join(f"{k} {v:.2%}" for k, v in means.items() if k != key)
    sentence = (f"{frac:.2%} of tokens clipped ({key}, mean over steps {span[0]}–{span[1]})"
                + (f"; {others}" if others else "") + ("." if severity != "ok" else ": the updates stay inside the "
                                                       "trust region."))
    evidence = {f"recent_{k}": v for k, v in means.items()} | {
        "worst_key": key, "worst_recent": frac, "worst_max": float(np.max(recents[key].values)),
        "cohort_metric": "clip fraction", "cohort_value": frac}
    return Finding(NAME, severity, sentence, evidence, tuple(c.key for c in curves), span,
                   ADVICE if severity != "ok" else (), REFERENCES)
