"""Entropy blow-up: entropy rising well above where it started or bottomed out, while the training reward is
flat or falling — the policy is drifting towards noise (an entropy bonus or a clip range too loose, or a
learning rate too high).

* rise = H_now / H_min − 1, with H_min the lowest moving median (5 points) before the last quarter; the rise
  is real when the last quarter's Mann–Kendall τ > 0 with p < 0.05 or H_now exceeds H_start;
* ``critical``: H_now ≥ 2 × H_start and the reward falling; ``warn``: rise ≥ 50% (a real one) with the reward
  not rising; ``info``: rise ≥ 25% with the reward not rising; ``ok`` otherwise.
"""

from __future__ import annotations

import numpy as np

from models.health.finding import Finding, skipped
from models.health.progress import ALPHA, progress_of
from models.health.series import Curve, recent, trend_of, window_median

NAME = "entropy_blowup"
STATE_WORDS = {"slow": "rising only slowly", "unknown": "of unknown trend"}
ADVICE = (
    "Lower the entropy bonus (actor_rollout_ref.actor.entropy_coeff) or remove it: rising entropy with no reward "
    "gain means the bonus outweighs the task.",
    "Tighten the clip range or lower the learning rate; check the rollout temperature did not change.",
    "Read rollouts from the last steps: blow-up shows as repetitive or garbled text before the metrics move.",
)
REFERENCES = (
    "Cui et al., The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models (arXiv:2505.22617)",
    "Schulman et al., Proximal Policy Optimization Algorithms (arXiv:1707.06347)",
)


def detect(entropy: Curve | None, reward: Curve | None) -> Finding:
    if entropy is None or len(entropy.finite()) < 12:
        return skipped(NAME, "an entropy metric (actor/entropy, entropy)", "no entropy curve with 12 finite points")
    if reward is None or len(reward.finite()) < 4:
        return skipped(NAME, "a training reward (critic/score/mean, reward)",
                       "without the reward a rising entropy cannot be told from useful exploration")
    h = entropy.finite()
    h_start = float(np.median(h.values[:5]))
    h_now = float(np.median(h.values[-5:]))
    last = recent(h, 0.25, 8)
    before = h.values[: max(5, len(h) - len(last))]
    med = window_median(before, 2, 2)
    h_min = float(med.min())
    tr = trend_of(last)
    real = (tr.tau > 0 and tr.p < ALPHA) or h_now > h_start
    rise = h_now / h_min - 1 if h_min > 0 else 0.0
    prog = progress_of(reward)
    state = prog.state if prog else "unknown"
    not_rising = state != "rising"
    if h_now >= 2 * h_start and state == "falling":
        severity = "critical"
    elif real and rise >= 0.5 and not_rising:
        severity = "warn"
    elif real and rise >= 0.25 and not_rising:
        severity = "info"
    else:
        severity = "ok"
    sentence = (f"entropy {h_min:.3g} at its lowest → {h_now:.3g} now ({rise:+.0%}; it started at {h_start:.3g}), "
                f"last-quarter Mann–Kendall τ = {tr.tau:.2f} (p = {tr.p:.2g}); the training reward is {STATE_WORDS.get(state, state)}.")
    if severity == "ok":
        sentence = "no blow-up: " + sentence
    evidence = {"entropy_start": h_start, "entropy_min": h_min, "entropy_now": h_now, "entropy_rise": rise,
                "entropy_recent_tau": tr.tau, "entropy_recent_p": tr.p, "cohort_metric": "entropy rise from its low",
                "cohort_value": rise}
    if prog:
        evidence |= prog.evidence("reward")
    return Finding(NAME, severity, sentence, evidence, (h.key, reward.key), (int(tr.step_from), int(tr.step_to)),
                   ADVICE if severity != "ok" else (), REFERENCES)
