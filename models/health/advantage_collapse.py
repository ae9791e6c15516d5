"""Advantage collapse: groups whose rollouts all get the same reward have zero advantage, so they teach the
policy nothing and the effective batch shrinks (GRPO, RLOO, DAPO's dynamic sampling exists for this).

* measured: the share of such groups (TRL ``frac_reward_zero_std``, kin keys), mean over the last quarter;
* estimated, when only a bounded score's batch mean p and the group size n are known (verl
  ``actor_rollout_ref.rollout.n``): with a 0/1 reward, a group is uniform with probability pⁿ + (1 − p)ⁿ; that
  is a lower bound when prompts differ in difficulty (the function is convex), and the sentence says so;
* the within-group reward spread (TRL ``reward_std``), when logged, is quoted beside it (first tenth → last
  quarter): a spread shrinking towards 0 is the same collapse seen from the other side;
* ``critical`` ≥ 80% of groups uniform, ``warn`` ≥ 50%, ``info`` ≥ 25%, ``ok`` below.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.health.finding import Finding, skipped
from models.health.series import Curve, recent

NAME = "advantage_collapse"
CRITICAL, WARN, INFO = 0.8, 0.5, 0.25
ADVICE = (
    "Filter uniform groups out of the batch and resample (DAPO's dynamic sampling), so every update has signal.",
    "Re-balance the prompt set: drop prompts the policy always solves and those it never solves.",
    "A larger group size (actor_rollout_ref.rollout.n, num_generations) makes a uniform group rarer.",
)
REFERENCES = (
    "Yu et al., DAPO: An Open-Source LLM Reinforcement Learning System at Scale (arXiv:2503.14476)",
    "Shao et al., DeepSeekMath: Pushing the Limits of Mathematical Reasoning (GRPO; arXiv:2402.03300)",
)


def detect(zero_std: Curve | None, score: Curve | None = None, *, group_size: int | None = None,
           score_range: tuple[float, float] | None = None, reward_std: Curve | None = None) -> Finding:
    f = _detect(zero_std, score, group_size, score_range)
    if f.severity == "skipped" or reward_std is None or len(reward_std.finite()) < 8:
        return f
    r = reward_std.finite()
    first = float(np.median(r.values[: max(3, len(r) // 10)]))
    last = float(np.median(recent(r, 0.25, 5).values))
    return replace(f, sentence=f"{f.sentence[:-1]}; the within-group reward spread ({r.key}) went {first:.3g} → "
                   f"{last:.3g}.", keys=(*f.keys, r.key),
                   evidence={**f.evidence, "reward_std_first": first, "reward_std_recent": last})


def _detect(zero_std: Curve | None, score: Curve | None, group_size: int | None,
            score_range: tuple[float, float] | None) -> Finding:
    if zero_std is not None and len(zero_std.finite()) >= 3:
        z = recent(zero_std.finite(), 0.25, 5)
        frac = float(np.clip(np.mean(z.values), 0.0, 1.0))
        how = f"{frac:.0%} of the groups got one reward for every rollout over steps {z.span[0]}–{z.span[1]}"
        return _finding(frac, how, (zero_std.key,), z.span, {"measured": "yes"})
    if score is None or len(score.finite()) < 3:
        return skipped(NAME, "frac_reward_zero_std (or a bounded score and the group size)",
                       "no share of zero-variance groups and no training score to estimate it from")
    if not group_size:
        return skipped(NAME, "frac_reward_zero_std or the group size (actor_rollout_ref.rollout.n)",
                       f"{score.key} is logged but the run's config does not give the group size")
    s = recent(score.finite(), 0.25, 5)
    lo, hi = score_range if score_range else (float(np.min(score.values)), float(np.max(score.values)))
    if not (lo < hi) or np.min(s.values) < lo - 1e-9 or np.max(s.values) > hi + 1e-9:
        return skipped(NAME, "frac_reward_zero_std", f"{score.key} is not a bounded score to estimate it from")
    p = np.clip((s.values - lo) / (hi - lo), 0.0, 1.0)
    frac = float(np.mean(p ** group_size + (1 - p) ** group_size))
    how = (f"at least {frac:.0%} of the groups of {group_size} rollouts get one reward for all (estimated from "
           f"{score.key} = {float(np.mean(s.values)):.3f} over steps {s.span[0]}–{s.span[1]}, assuming a 0/1 "
           "reward; prompts of mixed difficulty make it higher)")
    return _finding(frac, how, (score.key,), s.span, {"measured": "no", "group_size": group_size,
                                                      "score_mean": float(np.mean(s.values))})


def _finding(frac: float, how: str, keys: tuple[str, ...], steps: tuple[int, int], extra: dict) -> Finding:
    severity = "critical" if frac >= CRITICAL else "warn" if frac >= WARN else "info" if frac >= INFO else "ok"
    effect = (f": only {1 - frac:.0%} of the batch carries a learning signal" if severity != "ok"
              else ": most groups still carry a learning signal")
    return Finding(NAME, severity, how + effect + ".",
                   {"zero_std_fraction": frac, "effective_batch_share": 1 - frac, **extra,
                    "cohort_metric": "share of uniform groups", "cohort_value": frac},
                   keys, steps, ADVICE if severity != "ok" else (), REFERENCES)
