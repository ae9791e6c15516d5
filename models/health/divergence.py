"""Reward/eval divergence, one finding per benchmark: the training reward keeps rising while the held-out score
falls (or stops) — the gains no longer carry over (over-fitting the training prompts, or gaming the reward).

* the benchmark's progress (``models.health.progress``): its best level and step, the recent level, the drop
  and its noise;
* the training reward over the same steps (from the benchmark's best step to its last evaluation): Theil–Sen
  gain and Mann–Kendall; Spearman's ρ between the reward (mean over each evaluation's interval) and the score;
* a benchmark that never moves (constant, such as a game never won) is **degenerate**: it is named so, with a
  ``warn`` (the evaluation gives no signal), and never called reward hacking;
* ``critical``: the score falls (drop > 3 standard errors and ≥ 2 points of a bounded score) while the reward
  rises significantly; ``warn``: a significant fall while the reward rises; ``info``: the score flat since its
  best while the reward rises, or falling while the reward is flat; ``ok`` otherwise.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from models.health.finding import Finding, skipped
from models.health.progress import ALPHA, progress_of
from models.health.series import Curve, trend_of

NAME = "reward_eval_divergence"
MIN_CRITICAL_DROP_BOUNDED = 0.02
ADVICE = (
    "Keep the checkpoint at the benchmark's best step: later ones trade held-out accuracy for training reward.",
    "Read high-reward training rollouts from the last steps: a reward that can be earned without solving the task "
    "shows there first.",
    "Check the training data's overlap with this benchmark's distribution; mix in data like it if it matters.",
)
DEGENERATE_ADVICE = (
    "Check the evaluation: a held-out score that never moves gives no signal (a reward function that always "
    "returns the same value, a game the policy never wins, a broken parser).",
    "Until it moves, judge the run by its training reward and other benchmarks.",
)
REFERENCES = (
    "Gao et al., Scaling Laws for Reward Model Overoptimization (arXiv:2210.10760)",
    "Spearman, The proof and measurement of association between two things (1904)",
)


def detect(reward: Curve | None, benchmark: Curve | None, *, name: str, scale: float | None = None) -> Finding:
    if benchmark is None or len(benchmark.finite()) < 4:
        n = 0 if benchmark is None else len(benchmark.finite())
        return skipped(NAME, "at least 4 evaluations of a held-out benchmark", f"{name} has {n}", benchmark=name)
    b = benchmark.finite()
    if np.ptp(b.values) <= 1e-12 * max(1.0, float(np.abs(b.values).max())):
        return Finding(NAME, "warn", f"{name} is constant at {b.values[0]:.3f} over {len(b)} evaluations "
                       f"(steps {b.span[0]}–{b.span[1]}): a degenerate held-out score, so nothing can be said about "
                       "whether the training reward carries over — this is not evidence of reward hacking.",
                       {"degenerate": "constant", "value": float(b.values[0]), "n_evaluations": len(b)},
                       (b.key,), b.span, DEGENERATE_ADVICE, REFERENCES[:1], benchmark=name)
    if reward is None or len(reward.finite()) < 4:
        return skipped(NAME, "a training reward (critic/score/mean, reward)",
                       "nothing to compare the held-out score with", benchmark=name)
    r = reward.finite()
    prog = progress_of(b, scale)
    since = r.after(prog.best_step - 1)
    if len(since) < 4:
        since = Curve(r.key, r.steps[-4:], r.values[-4:])
    tr = trend_of(since)
    r_gain = tr.slope * (tr.step_to - tr.step_from)
    r_rising = tr.tau > 0 and tr.p < ALPHA and r_gain > 0
    rho, rho_p = _spearman(r, b)
    sig = prog.drop / prog.drop_se if prog.drop_se > 0 else float("inf")
    bounded = scale is not None
    pts = (lambda x: f"{100 * x:+.1f} pt") if bounded else (lambda x: f"{x:+.3g}")
    falling = prog.state == "falling"
    if falling and r_rising and sig > 3 and (not bounded or prog.drop >= MIN_CRITICAL_DROP_BOUNDED * scale):
        severity = "critical"
    elif falling and r_rising:
        severity = "warn"
    elif (prog.state in ("flat", "slow") and r_rising) or falling:
        severity = "info"
    else:
        severity = "ok"
    rew = (f"the training reward rose {r_gain:+.3g} over the same steps (Mann–Kendall p = {tr.p:.2g})" if r_rising
           else f"the training reward moved {r_gain:+.3g} over the same steps (not a significant rise)")
    if falling:
        head = (f"{name} fell from {prog.best_value:.3f} at step {prog.best_step} ({prog.best:.3f} over 3 evaluations) "
                f"to {prog.recent:.3f} over the last 3 evaluations ({pts(-prog.drop)}, {sig:.1f}× its noise) while {rew}")
    elif prog.state == "slow":
        head = (f"{name} gains little ({prog.gain:+.3g} over steps {prog.window[0]}–{prog.window[1]}, now "
                f"{prog.recent:.3f}) while {rew}")
    elif prog.state == "flat":
        head = f"{name} has not improved since step {prog.best_step} (best level {prog.best:.3f}, now {prog.recent:.3f}) while {rew}"
    else:
        head = f"{name} is still rising ({prog.recent:.3f} over the last 3 evaluations) and {rew}"
    tail = {"critical": ": the gains on the training data no longer carry over to it.",
            "warn": ": the gains may no longer carry over to it.",
            "info": ".", "ok": ": no divergence."}[severity]
    evidence = {**prog.evidence("benchmark"), "reward_gain_since_best": r_gain, "reward_mann_kendall_p": tr.p,
                "reward_mann_kendall_tau": tr.tau, "drop_in_noise_units": sig if np.isfinite(sig) else None,
                "spearman_rho": rho, "spearman_p": rho_p, "cohort_metric": f"drop of {name} from its best",
                "cohort_value": prog.drop}
    return Finding(NAME, severity, head + tail, evidence, (r.key, b.key), (prog.best_step, int(b.steps[-1])),
                   ADVICE if severity in ("warn", "critical") else (), REFERENCES, benchmark=name)


def _spearman(r: Curve, b: Curve) -> tuple[float | None, float | None]:
    """Spearman's ρ between the reward's mean over each evaluation's interval and the score."""
    edges = np.concatenate([[b.steps[0] - (b.steps[1] - b.steps[0])], b.steps])
    i = np.searchsorted(edges, r.steps, side="left") - 1  # r.steps[j] lies in (edges[i], edges[i + 1]]
    inside = (i >= 0) & (i < len(b))
    n = np.bincount(i[inside], minlength=len(b))
    total = np.bincount(i[inside], weights=r.values[inside], minlength=len(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(n > 0, total / n, np.nan)
    ok = np.isfinite(m)
    if ok.sum() < 4 or np.ptp(m[ok]) == 0:
        return None, None
    res = stats.spearmanr(m[ok], b.values[ok])
    return float(res.statistic), float(res.pvalue)
