"""KL drift: the policy moving away from the reference model (the KL a penalty or loss holds back: verl
``actor/kl_loss``, TRL ``kl``) or moving too far in one update (verl ``actor/ppo_kl``, old vs new policy).

* reference KL, mean over the last quarter: ``critical`` ≥ 2 nats or non-finite, ``warn`` ≥ 0.5, ``info`` ≥ 0.1
  while still rising there (Mann–Kendall p < 0.05);
* per-update KL, |mean| over the last quarter: ``critical`` ≥ 0.2, ``warn`` ≥ 0.05, ``info`` ≥ 0.02;
* the worst key decides.
"""

from __future__ import annotations

import numpy as np

from models.health.finding import RANK, Finding, skipped
from models.health.series import Curve, recent, trend_of

NAME = "kl_drift"
REF = {"critical": 2.0, "warn": 0.5, "info": 0.1}
UPDATE = {"critical": 0.2, "warn": 0.05, "info": 0.02}
ADVICE = (
    "Raise the KL coefficient (actor_rollout_ref.actor.kl_loss_coef, beta) or lower the learning rate: the "
    "policy is leaving the region where the reference model's behaviour still holds.",
    "A large per-update KL means each rollout batch is over-used: fewer PPO epochs or smaller steps.",
    "Read rollouts from the last steps for style drift (language mixing, repetition) before the score moves.",
)
REFERENCES = (
    "Schulman et al., Proximal Policy Optimization Algorithms (arXiv:1707.06347)",
    "Ouyang et al., Training language models to follow instructions with human feedback (arXiv:2203.02155)",
)


def is_update_kl(key: str) -> bool:
    low = key.lower()
    return "ppo_kl" in low or "approxkl" in low or "approx_kl" in low


def detect(kls: list[Curve]) -> Finding:
    curves = [c for c in kls if len(c.finite()) >= 3]
    if not curves:
        return skipped(NAME, "actor/kl_loss, actor/ppo_kl or kl", "no KL logged (or the KL loss is off)")
    severity, parts, evidence, span = "ok", [], {}, None
    for c in curves:
        n_bad = int((~np.isfinite(c.values)).sum())
        r = recent(c.finite(), 0.25, 5)
        mean = float(np.mean(r.values))
        update = is_update_kl(c.key)
        th = UPDATE if update else REF
        tr = trend_of(r) if len(r) >= 4 else None
        rising = bool(tr and tr.tau > 0 and tr.p < 0.05)
        size = abs(mean) if update else mean
        if n_bad or size >= th["critical"]:
            sev = "critical"
        elif size >= th["warn"]:
            sev = "warn"
        elif size >= th["info"] and (update or rising):
            sev = "info"
        else:
            sev = "ok"
        kind = "per-update KL" if update else "KL to the reference"
        parts.append(f"{kind} {c.key} {mean:.3g} over steps {r.span[0]}–{r.span[1]}"
                     + (" and rising" if rising else "") + (f", {n_bad} non-finite values" if n_bad else ""))
        evidence |= {f"recent_{c.key}": mean, f"nonfinite_{c.key}": n_bad}
        if RANK[sev] > RANK[severity] or span is None:
            span = r.span
            evidence |= {"cohort_metric": kind, "cohort_value": size}
        severity = sev if RANK[sev] > RANK[severity] else severity
    lead = "no KL drift" if severity == "ok" else "KL drift"
    return Finding(NAME, severity, f"{lead}: {'; '.join(parts)}.", evidence, tuple(c.key for c in curves), span,
                   ADVICE if severity != "ok" else (), REFERENCES)
