"""Resolving framework metric names onto canonical roles, at ingest (every key a source saw gets one).

Names are kept verbatim in the store; a role says what a key measures. Resolution, in order:
exact alias → suffix alias → normalised-token match. Roles: entropy, performance (validation score),
train_reward, response_length, kl, pg_clipfrac, and the health detectors' inputs (``models.health``):
grad_norm, clip_ratio (responses cut at the length limit), zero_std_frac (groups with one reward for every
rollout), reward_std; other. Which of a run's keys feed the law is the analysis'
choice (``analysis.keys``), made from these stored roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

ROLES = ("entropy", "performance", "train_reward", "response_length", "kl", "pg_clipfrac", "grad_norm",
         "clip_ratio", "zero_std_frac", "reward_std", "other")

EXACT: dict[str, str] = {
    # verl (newer, then older: actor/entropy_loss holds the entropy value there)
    "actor/entropy": "entropy",
    "actor/entropy_loss": "entropy",
    "critic/score/mean": "train_reward",
    "critic/rewards/mean": "train_reward",
    "response_length/mean": "response_length",
    "actor/ppo_kl": "kl",
    "actor/kl_loss": "kl",
    "critic/kl": "kl",
    "actor/pg_clipfrac": "pg_clipfrac",
    "actor/grad_norm": "grad_norm",
    "response_length/clip_ratio": "clip_ratio",
    # TRL GRPOTrainer (trainer_state.json and W&B with its train/ prefix)
    "entropy": "entropy",
    "train/entropy": "entropy",
    "reward": "train_reward",
    "train/reward": "train_reward",
    "completions/mean_length": "response_length",
    "train/completions/mean_length": "response_length",
    "kl": "kl",
    "train/kl": "kl",
    "clip_ratio/region_mean": "pg_clipfrac",
    "clip_ratio": "pg_clipfrac",  # older TRL GRPO
    "grad_norm": "grad_norm",
    "train/grad_norm": "grad_norm",
    "reward_std": "reward_std",
    "train/reward_std": "reward_std",
    "frac_reward_zero_std": "zero_std_frac",
    "train/frac_reward_zero_std": "zero_std_frac",
    "completions/clipped_ratio": "clip_ratio",
    "train/completions/clipped_ratio": "clip_ratio",
    # OpenRLHF
    "policy_entropy": "entropy",
    "train/policy_entropy": "entropy",
    "response_length": "response_length",
    "train/response_length": "response_length",
    # TRL PPO/RLOO: objective/entropy is a negative per-sequence sum, policy/entropy_avg the mean token entropy
    "objective/entropy": "other",
    "train/objective/entropy": "other",
    "policy/entropy_avg": "entropy",
    "train/policy/entropy_avg": "entropy",
}

SUFFIX: tuple[tuple[str, str], ...] = (
    ("/entropy", "entropy"),
    ("/policy_entropy", "entropy"),
    ("/score/mean", "train_reward"),
    ("/reward_mean", "train_reward"),
    ("/response_length/mean", "response_length"),
)

#: name prefixes (after an optional W&B ``train/``) of families a health detector reads
PREFIX: tuple[tuple[str, str], ...] = (
    ("actor/pg_clipfrac", "pg_clipfrac"),  # verl: pg_clipfrac_lower, pg_clipfrac_higher
    ("clip_ratio/", "pg_clipfrac"),  # TRL GRPO/RLOO: clip_ratio/low_mean, high_max, region_mean…
)

_VAL_CORE = re.compile(r"^val-(core|aux)/(?P<src>.+)/(?P<metric>[^/]+)/mean(@|_at_)(?P<n>\d+)$")
_VAL_OLD = re.compile(r"^val/test_score/(?P<src>.+)$")
_EVAL = re.compile(r"^(eval[_/]|eval$|validation[_/]|val[_/])")
_NOT_PERF = ("loss", "runtime", "samples_per_second", "steps_per_second", "entropy", "length", "kl",
             "epoch", "time", "std")


def _tokens(key: str) -> list[str]:
    return [t for t in re.split(r"[/_\-.\s@]+", key.lower()) if t]


def resolve_role(key: str, overrides: Mapping[str, str] | None = None) -> str:
    """Role of one metric name (overrides: {key: role} win)."""
    if overrides and key in overrides:
        return overrides[key]
    if key in EXACT:
        return EXACT[key]
    if _VAL_CORE.match(key) or _VAL_OLD.match(key):
        return "performance"
    low = key.lower()
    bare = low[len("train/"):] if low.startswith("train/") else low
    for prefix, role in PREFIX:
        if bare.startswith(prefix):
            return role
    for suffix, role in SUFFIX:
        if low.endswith(suffix):
            return role
    toks = _tokens(key)
    if _EVAL.match(low) and not any(t in _NOT_PERF for t in toks):
        return "performance"
    if "entropy" in toks and not {"coef", "coeff", "bonus", "loss", "std", "min", "max"} & set(toks):
        return "entropy"
    return "other"


def resolve_roles(keys: Iterable[str], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    return {k: resolve_role(k, overrides) for k in keys}
