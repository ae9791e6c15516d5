"""The user's choices for a run: from its source's options (``ingest … --performance-key``, sources.toml),
per run where the source's ``runs`` table names it, and from flags of the command being run.

Keys a source or a run may set (sources.toml, ``[[source]]`` or ``[source.runs."name"]``):

* ``entropy_key`` / ``performance_key`` — the metric to use;
* ``keep_warmup = true`` — fit every evaluation (no warm-up detection); ``warmup_steps = N`` — the
  evaluations at or before step N are the warm-up;
* ``performance_range = [lo, hi]`` — the metric's range (a reward's, typically; accuracies are [0, 1]);
* ``planned_steps = N`` — the run's planned length, where the source does not say it;
* ``finished = true`` — the run(s) finished (for sources that do not say, e.g. a CSV): only finished runs
  teach the replay, the cross-run model and the backtests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SETTINGS = ("entropy_key", "performance_key", "keep_warmup", "warmup_steps", "performance_range", "planned_steps",
            "finished")


@dataclass(frozen=True)
class RunSettings:
    entropy_key: str | None = None
    performance_key: str | None = None
    warmup: str | int = "auto"  # "auto" | "keep" | a step (evaluations at or before it are the warm-up)
    performance_range: tuple[float | None, float | None] | None = None
    planned_steps: int | None = None
    finished: bool = False  # the user marked the run finished


def run_settings(source_options: Mapping[str, Any] | None, run_name: str, *, keep_warmup: bool = False) -> RunSettings:
    """The settings of run ``run_name``: the source's, then its own entry in the source's ``runs`` table,
    then the command's ``--keep-warmup``."""
    opts = dict(source_options or {})
    merged = {k: opts[k] for k in SETTINGS if opts.get(k) is not None}
    merged.update({k: v for k, v in ((opts.get("runs") or {}).get(run_name) or {}).items() if v is not None})
    warmup: str | int = "auto"
    if merged.get("warmup_steps") is not None:
        warmup = int(merged["warmup_steps"])
    if merged.get("keep_warmup") or keep_warmup:
        warmup = "keep"
    rng = merged.get("performance_range")
    return RunSettings(
        entropy_key=merged.get("entropy_key"),
        performance_key=merged.get("performance_key"),
        warmup=warmup,
        performance_range=None if rng is None else (rng[0], rng[1]),
        planned_steps=None if merged.get("planned_steps") is None else int(merged["planned_steps"]),
        finished=bool(merged.get("finished")),
    )
