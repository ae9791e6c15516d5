"""The range a performance metric lives in, by its kind, and keeping numbers inside it.

* Accuracy-like metrics — accuracy, pass rate, ``mean@k`` of a correctness score (``acc/mean@1``,
  ``mean_at_1``), verl's older ``val/test_score/<data source>``, exact match, win/solve/success rate — live
  in [0, 1].
* Rewards (``reward``, ``score/mean`` of a reward model…) and anything unrecognised are unbounded, unless
  the user configures a range (``performance_range = [lo, hi]`` in sources.toml).
* A key that says "accuracy" but whose values leave [0, 1] (a game that scores −1 for a loss under an
  ``acc`` name) gets no range: the data wins over the name, and the reason says so.

Ceilings, intervals and forecasts are clipped into the range everywhere (``MetricRange.clip``); the raw
value is kept next to the bounded one where it tells something (``ceiling_raw``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNIT = (0.0, 1.0)
_TOKENS = re.compile(r"[/_\-.\s@]+")
_ACCURACY_TOKENS = {"acc", "accuracy", "pass", "pass1", "passk", "exact", "em", "correct", "correctness",
                    "solve", "solved", "success", "win", "winrate", "test_score", "testscore"}
_REWARD_TOKENS = {"reward", "rewards", "return", "returns", "rm", "logp", "loss", "kl"}
_MEAN_AT = re.compile(r"(mean|maj|best|worst|pass)(@|_at_)\d+")


@dataclass(frozen=True)
class MetricRange:
    """``lo``/``hi`` (None: unbounded on that side), the kind it was judged to be, and why."""

    lo: float | None
    hi: float | None
    kind: str  # accuracy | reward | configured | unbounded
    reason: str

    @property
    def bounded(self) -> bool:
        return self.lo is not None or self.hi is not None

    @property
    def bounds(self) -> tuple[float, float] | None:
        """(lo, hi) with ±inf for an open side; None when unbounded on both sides."""
        if not self.bounded:
            return None
        return (-np.inf if self.lo is None else self.lo, np.inf if self.hi is None else self.hi)

    def clip(self, x: float | np.ndarray) -> float | np.ndarray:
        if not self.bounded:
            return x
        lo, hi = self.bounds  # type: ignore[misc]
        out = np.clip(x, lo, hi)
        return float(out) if np.ndim(out) == 0 else out

    def above(self, x: float) -> bool:
        return self.hi is not None and x > self.hi

    def below(self, x: float) -> bool:
        return self.lo is not None and x < self.lo

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "kind": self.kind, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict | None) -> MetricRange:
        d = d or {}
        return cls(d.get("lo"), d.get("hi"), d.get("kind", "unbounded"), d.get("reason", ""))


def metric_kind(key: str) -> str:
    """``accuracy`` or ``reward`` from the key's name (``unbounded`` when it says neither)."""
    low = key.lower()
    toks = set(_TOKENS.split(low))
    if "test_score" in low:
        toks.add("test_score")
    if toks & _REWARD_TOKENS or "score/mean" in low:
        return "reward"
    if toks & _ACCURACY_TOKENS or _MEAN_AT.search(low):
        return "accuracy"
    return "unbounded"


def metric_range(key: str, values: Sequence[float] | np.ndarray,
                 configured: Sequence[float | None] | None = None) -> MetricRange:
    """The range of performance metric ``key`` given its observed ``values`` (rule in the module docstring)."""
    if configured is not None:
        lo, hi = configured
        return MetricRange(None if lo is None else float(lo), None if hi is None else float(hi), "configured",
                           f"range [{_txt(lo)}, {_txt(hi)}] configured for this metric")
    kind = metric_kind(key)
    if kind == "accuracy":
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size and (v.min() < UNIT[0] or v.max() > UNIT[1]):
            return MetricRange(None, None, "unbounded",
                               f"values from {v.min():.3g} to {v.max():.3g} leave [0, 1] although the name "
                               "says accuracy: no range assumed")
        return MetricRange(*UNIT, "accuracy", "an accuracy-like metric lives in [0, 1]")
    if kind == "reward":
        return MetricRange(None, None, "reward", "a reward is unbounded unless a range is configured")
    return MetricRange(None, None, "unbounded", "not recognised as an accuracy: no range assumed")


def _txt(v: float | None) -> str:
    return "−∞" if v is None else f"{v:g}"
