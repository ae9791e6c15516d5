"""A health finding: what one detector concluded about one run (or one benchmark of it), with its evidence.

Every detector in ``models.health`` returns one (the divergence detector one per benchmark). Fields are shared
by the store, ``doctor --json``, reports, the Health page and the webhook, so they are fixed:

* ``severity`` — ``ok``, ``info``, ``warn``, ``critical``, or ``skipped`` when an input is missing (``needs``
  names the key it needed);
* ``sentence`` — one true sentence quoting the numbers;
* ``evidence`` — the numbers it fired on (flat: numbers, strings or None);
* ``keys`` and ``steps`` — the metric keys read and the step range the verdict rests on (shaded on the page);
* ``advice`` and ``references`` — what to do, and where the reasoning comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

SEVERITIES = ("ok", "info", "warn", "critical", "skipped")
#: order of severities for --fail-on and the worst finding of a run (skipped is below ok: it says nothing)
RANK = {"skipped": -1, "ok": 0, "info": 1, "warn": 2, "critical": 3}

Evidence = Mapping[str, float | int | str | None]


@dataclass(frozen=True)
class Finding:
    detector: str
    severity: str
    sentence: str
    evidence: Evidence = field(default_factory=dict)
    keys: tuple[str, ...] = ()
    steps: tuple[int, int] | None = None
    advice: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    benchmark: str | None = None
    needs: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        object.__setattr__(self, "evidence", MappingProxyType({k: _flat(v) for k, v in self.evidence.items()}))
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "advice", tuple(self.advice))
        object.__setattr__(self, "references", tuple(self.references))
        if self.steps is not None:
            object.__setattr__(self, "steps", (int(self.steps[0]), int(self.steps[1])))

    @property
    def rank(self) -> int:
        return RANK[self.severity]

    def with_context(self, sentence: str, **evidence: float | int | str | None) -> Finding:
        """The same finding with a sentence appended and evidence added (the forecast, the other runs)."""
        return replace(self, sentence=f"{self.sentence} {sentence}".strip(), evidence={**self.evidence, **evidence})

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "severity": self.severity, "sentence": self.sentence,
                "evidence": dict(self.evidence), "keys": list(self.keys),
                "steps": list(self.steps) if self.steps is not None else None, "advice": list(self.advice),
                "references": list(self.references), "benchmark": self.benchmark, "needs": self.needs}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        steps = d.get("steps")
        return cls(detector=d["detector"], severity=d["severity"], sentence=d["sentence"],
                   evidence=dict(d.get("evidence") or {}), keys=tuple(d.get("keys") or ()),
                   steps=(int(steps[0]), int(steps[1])) if steps else None, advice=tuple(d.get("advice") or ()),
                   references=tuple(d.get("references") or ()), benchmark=d.get("benchmark"), needs=d.get("needs"))


def skipped(detector: str, needs: str, why: str, *, benchmark: str | None = None) -> Finding:
    """A detector that could not run: ``why`` says what was missing, ``needs`` the key that would let it."""
    return Finding(detector, "skipped", f"skipped — needs {needs}: {why}", {}, (), None, (), (),
                   benchmark=benchmark, needs=needs)


def worst(findings: list[Finding] | tuple[Finding, ...]) -> str:
    """The highest severity among findings (``skipped`` when every one was skipped or there are none)."""
    return max((f.severity for f in findings), key=RANK.__getitem__, default="skipped")


def _flat(v: Any) -> float | int | str | None:
    if v is None or isinstance(v, str | int | float):
        return v.item() if hasattr(v, "item") else v
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)
