"""Resolving framework metric names onto canonical roles, and choosing a run's entropy/performance keys.

Names are kept verbatim in the store; a role says what a key measures. Resolution, in order:
exact alias → suffix alias → normalised-token match. Roles: entropy, performance (validation score),
train_reward, response_length, kl, pg_clipfrac, other.

When a run has several candidates for performance, validation accuracy beats validation reward beats
training reward, and verl's headline ``val-core/…`` beats its ``val-aux/…``. ``choose_keys`` says which key
won and why; overrides (per source or per run) win over everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ROLES = ("entropy", "performance", "train_reward", "response_length", "kl", "pg_clipfrac", "other")

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

_VAL_CORE = re.compile(r"^val-(core|aux)/(?P<src>.+)/(?P<metric>[^/]+)/mean(@|_at_)(?P<n>\d+)$")
_VAL_OLD = re.compile(r"^val/test_score/(?P<src>.+)$")
_EVAL = re.compile(r"^(eval[_/]|eval$|validation[_/]|val[_/])")
_NOT_PERF = ("loss", "runtime", "samples_per_second", "steps_per_second", "entropy", "length", "kl",
             "epoch", "time", "std")
_ACC_TOKENS = {"acc", "accuracy", "pass1", "pass@1", "exact_match", "em", "correct", "score", "test_score"}


@dataclass(frozen=True)
class KeyChoice:
    """Which keys of a run feed the law, and why."""

    entropy: str | None
    performance: str | None
    performance_kind: str | None  # val_acc | val_reward | val_other | train_reward | override
    reason: str
    unrecognised: tuple[str, ...]


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


def _performance_rank(key: str) -> tuple[int, int, int, str]:
    """Lower is better: (kind, family, N of mean@N, name)."""
    m = _VAL_CORE.match(key)
    if m:
        kind = 0 if m["metric"] in ("acc", "accuracy") else (1 if m["metric"] == "reward" else 2)
        return (kind, 0 if m[1] == "core" else 1, int(m["n"]), key)
    if _VAL_OLD.match(key):
        return (0, 0, 1, key)
    toks = set(_tokens(key))
    if toks & _ACC_TOKENS:
        return (0, 2, 1, key)
    if toks & {"reward", "rewards"}:
        return (1, 2, 1, key)
    return (2, 2, 1, key)


_KIND = {0: "val_acc", 1: "val_reward", 2: "val_other"}


def choose_keys(
    keys: Iterable[str],
    roles: Mapping[str, str] | None = None,
    *,
    entropy_key: str | None = None,
    performance_key: str | None = None,
) -> KeyChoice:
    """Pick the entropy and performance keys of a run from its metric names.

    ``roles`` are the stored roles ({key: role}; resolved here when missing); ``entropy_key`` and
    ``performance_key`` are user overrides and win when the run has them.
    """
    keys = list(keys)
    roles = dict(roles) if roles is not None else resolve_roles(keys)
    for k in keys:
        roles.setdefault(k, resolve_role(k))
    unrecognised = tuple(sorted(k for k in keys if roles[k] == "other"))

    ent = [k for k in keys if roles[k] == "entropy"]
    if entropy_key and entropy_key in keys:
        entropy = entropy_key
    else:
        # verl's newer actor/entropy beats the older actor/entropy_loss; otherwise the shortest name
        entropy = min(ent, key=lambda k: (k != "actor/entropy", k == "actor/entropy_loss", len(k), k), default=None)

    why: list[str] = []
    if performance_key and performance_key in keys:
        return KeyChoice(entropy, performance_key, "override", f"performance key set by user: {performance_key}",
                         unrecognised)
    if performance_key:
        why.append(f"override {performance_key!r} not in this run")
    perf = sorted((k for k in keys if roles[k] == "performance"), key=_performance_rank)
    if perf:
        best = perf[0]
        kind = _KIND[_performance_rank(best)[0]]
        why.append(f"{best} ({kind.replace('_', ' ')}"
                   + (f"; also had {', '.join(perf[1:4])}{'…' if len(perf) > 4 else ''})" if len(perf) > 1 else ")"))
        return KeyChoice(entropy, best, kind, "; ".join(why), unrecognised)
    train = sorted((k for k in keys if roles[k] == "train_reward"),
                   key=lambda k: (k != "critic/score/mean", len(k), k))
    if train:
        why.append(f"{train[0]} (training reward: the run has no validation metric)")
        return KeyChoice(entropy, train[0], "train_reward", "; ".join(why), unrecognised)
    why.append("no performance metric")
    return KeyChoice(entropy, None, None, "; ".join(why), unrecognised)
