"""Which of a run's metrics feed the law: its entropy key, its validation benchmarks, and the headline.

Roles come from the store (``metric_keys.role``, resolved at ingest by ``ingest.keys``); this module only
chooses among the keys a run has.

* Entropy: verl's ``actor/entropy`` beats the older ``actor/entropy_loss`` (which holds the entropy value in
  that version); otherwise the shortest entropy-role name.
* Benchmarks: the performance keys of the best class — validation accuracy beats validation reward beats other
  validation metrics, verl's ``val-core/…`` beats ``val-aux/…`` — one per data set (every
  ``val-core/<data source>/acc/mean@1``, every ``val/test_score/<data source>``, every TRL/OpenRLHF
  ``eval_*`` accuracy). Without a validation metric, the training reward is the one "benchmark".
* Headline, in order: the user's key (``performance_key``) › the benchmark of the training data when the
  run's params name it (verl ``data/train_files``) › the first benchmark by name. The analysis then takes the
  first benchmark in that order whose law can be fitted: a benchmark that gives the law nothing (constant,
  no learning) heads the run only when none does, or when the user chose it.
* Health inputs (``health_keys``): the keys each run-health detector reads, by their stored role (an override
  of a key's role counts), or by their framework name for keys stored before the role existed. The report of
  unrecognised keys leaves them out: it lists only keys no detector reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_VAL_CORE = re.compile(r"^val-(core|aux)/(?P<src>.+)/(?P<metric>[^/]+)/mean(@|_at_)(?P<n>\d+)$")
_VAL_OLD = re.compile(r"^val/test_score/(?P<src>.+)$")
_TOKENS = re.compile(r"[/_\-.\s@]+")
_ACC_TOKENS = {"acc", "accuracy", "pass1", "pass@1", "exact_match", "em", "correct", "score", "test_score"}
_TRAIN_FILES = ("train_files", "train_file", "dataset_name", "train_dataset", "dataset")
KINDS = {0: "val_acc", 1: "val_reward", 2: "val_other"}

#: role → framework names the health detectors read (verl, TRL GRPO/RLOO, OpenRLHF), for stores that
#: resolved them as "other" before the role existed; ``pg_clipfrac`` also matches by prefix
HEALTH_NAMES: dict[str, tuple[str, ...]] = {
    "grad_norm": ("actor/grad_norm", "grad_norm", "train/grad_norm"),
    "clip_ratio": ("response_length/clip_ratio", "completions/clipped_ratio", "train/completions/clipped_ratio"),
    "pg_clipfrac": ("actor/pg_clipfrac", "clip_ratio", "train/clip_ratio"),
    "kl": ("actor/ppo_kl", "actor/kl_loss", "critic/kl", "kl", "train/kl"),
    "zero_std_frac": ("frac_reward_zero_std", "train/frac_reward_zero_std"),
    "reward_std": ("reward_std", "train/reward_std"),
    "response_length": ("response_length/mean", "completions/mean_length", "train/completions/mean_length",
                        "response_length", "train/response_length"),
}
_CLIPFRAC_PREFIXES = ("actor/pg_clipfrac", "clip_ratio/", "train/clip_ratio/")


@dataclass(frozen=True)
class KeyChoice:
    """A run's entropy key, its benchmarks in headline order, and why."""

    entropy: str | None
    benchmarks: tuple[str, ...]  # performance keys, in the order the headline rule tries them
    performance_kind: str | None  # val_acc | val_reward | val_other | train_reward | override
    reason: str
    unrecognised: tuple[str, ...]
    rule: str  # which rule ordered the benchmarks: "user" | "training data" | "name" | "only one"

    @property
    def performance(self) -> str | None:
        """The first candidate (the headline unless its law cannot be fitted)."""
        return self.benchmarks[0] if self.benchmarks else None


def benchmark_name(key: str) -> str:
    """The data set a validation key is about (``openai/gsm8k`` for ``val-core/openai/gsm8k/acc/mean@1``)."""
    m = _VAL_CORE.match(key) or _VAL_OLD.match(key)
    if m:
        return m["src"]
    low = key.lower()
    for prefix in ("eval_", "eval/", "validation_", "validation/", "val_", "val/"):
        if low.startswith(prefix):
            return key[len(prefix):]
    return key


def _rank(key: str) -> tuple[int, int, int]:
    """(kind, family, N of mean@N): lower is better."""
    m = _VAL_CORE.match(key)
    if m:
        kind = 0 if m["metric"] in ("acc", "accuracy") else (1 if m["metric"] == "reward" else 2)
        return (kind, 0 if m[1] == "core" else 1, int(m["n"]))
    if _VAL_OLD.match(key):
        return (0, 0, 1)
    toks = set(_TOKENS.split(key.lower()))
    if toks & _ACC_TOKENS:
        return (0, 2, 1)
    if toks & {"reward", "rewards"}:
        return (1, 2, 1)
    return (2, 2, 1)


def training_data(params: Mapping[str, object] | None) -> str | None:
    """The run's training data as its params name it (verl ``data/train_files``), lower-cased, or None."""
    for k, v in (params or {}).items():
        last = re.split(r"[/.]", str(k))[-1].lower()
        if last in _TRAIN_FILES and v not in (None, "", "None", "null"):
            return str(v).lower()
    return None


def _trained_on(benchmark: str, train: str) -> bool:
    toks = [t for t in _TOKENS.split(benchmark.lower().split("/")[-1]) if len(t) >= 3]
    return bool(toks) and all(t in train for t in toks[:1])


def choose_keys(
    keys: Iterable[str],
    roles: Mapping[str, str],
    *,
    params: Mapping[str, object] | None = None,
    entropy_key: str | None = None,
    performance_key: str | None = None,
) -> KeyChoice:
    """Choose a run's keys (module docstring). ``roles`` maps its keys to their stored roles (keys without
    a stored role count as unrecognised only when their role is "other")."""
    keys = list(dict.fromkeys(keys))
    role = {k: roles.get(k) for k in keys}
    health = {k for ks in health_keys(keys, role).values() for k in ks}
    unrecognised = tuple(sorted(k for k in keys if role[k] == "other" and k not in health))

    ent = [k for k in keys if role[k] == "entropy"]
    entropy = entropy_key if entropy_key and entropy_key in keys else min(
        ent, key=lambda k: (k != "actor/entropy", k == "actor/entropy_loss", len(k), k), default=None)

    why: list[str] = []
    if performance_key and performance_key in keys:
        others = tuple(k for k in _benchmarks(keys, role) if k != performance_key)
        return KeyChoice(entropy, (performance_key, *others), "override",
                         f"performance key set by user: {performance_key}", unrecognised, "user")
    if performance_key:
        why.append(f"override {performance_key!r} not in this run")
    bench = _benchmarks(keys, role)
    if bench:
        kind = KINDS[_rank(bench[0])[0]]
        train = training_data(params)
        trained = [b for b in bench if train and _trained_on(benchmark_name(b), train)]
        if len(bench) == 1:
            rule = "only one"
        elif len(trained) == 1:
            bench = [trained[0], *[b for b in bench if b != trained[0]]]
            rule = "training data"
        else:
            rule = "name"
        why.append(_why(bench, kind, rule))
        return KeyChoice(entropy, tuple(bench), kind, "; ".join(why), unrecognised, rule)
    train_keys = sorted((k for k in keys if role[k] == "train_reward"),
                        key=lambda k: (k != "critic/score/mean", len(k), k))
    if train_keys:
        why.append(f"{train_keys[0]} (training reward: the run has no validation metric)")
        return KeyChoice(entropy, (train_keys[0],), "train_reward", "; ".join(why), unrecognised, "only one")
    why.append("no performance metric")
    return KeyChoice(entropy, (), None, "; ".join(why), unrecognised, "only one")


def _benchmarks(keys: list[str], role: Mapping[str, str | None]) -> list[str]:
    """Performance keys of the best (kind, family, N) class, one per data set, sorted by name."""
    perf = [k for k in keys if role[k] == "performance"]
    if not perf:
        return []
    best = min(_rank(k) for k in perf)
    return sorted(k for k in perf if _rank(k) == best)


def _why(bench: list[str], kind: str, rule: str) -> str:
    head = f"{bench[0]} ({kind.replace('_', ' ')}"
    if rule == "training data":
        head += "; the benchmark of the run's training data"
    elif rule == "name":
        head += "; first benchmark by name"
    if len(bench) > 1:
        head += f"; {len(bench) - 1} more benchmark{'s' if len(bench) > 2 else ''}: {', '.join(bench[1:4])}"
        head += "…" if len(bench) > 4 else ""
    return head + ")"


def health_keys(keys: Iterable[str], roles: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Role → the run's keys a health detector reads for it (stored role first, else the framework name)."""
    out: dict[str, list[str]] = {r: [] for r in HEALTH_NAMES}
    for k in keys:
        r = roles.get(k)
        if r in out:
            out[r].append(k)
        elif r in (None, "other"):
            by_name = next((h for h, names in HEALTH_NAMES.items() if k in names), None)
            if by_name is None and k.startswith(_CLIPFRAC_PREFIXES):
                by_name = "pg_clipfrac"
            if by_name:
                out[by_name].append(k)
    return out
