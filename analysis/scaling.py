"""Law coefficients across runs against model size: one row per fitted run (a, b, the ceiling, the model size
read from its model, name, params or tags, its algorithm and intervention) and the log-linear fit of each
coefficient against size (``models.scaling``), per group when asked. What `scaling --json` prints and the
Compare page draws."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.errors import AnalysisError
from analysis.results import RunAnalysis
from models.scaling import ScalingFit, fit_scaling_table, model_size_from

GROUPS = (None, "algorithm", "intervention")
COEFFICIENTS = ("a", "b", "ceiling")


@dataclass(frozen=True)
class Scaling:
    rows: tuple[dict[str, Any], ...]  # one per fitted run, in the order of the results
    group: str | None
    fits: dict[tuple[Any, str], ScalingFit | str]  # (group value, coefficient) → the fit, or why there is none

    def sizes(self) -> dict[int, float | None]:
        """Model size in billions per run id (None: none could be read)."""
        return {int(r["run_id"]): r["size"] for r in self.rows}

    def fit(self, coefficient: str, group: Any = None) -> ScalingFit | str:
        return self.fits[(group, coefficient)]


def scaling_of(runs: pd.DataFrame, results: Sequence[RunAnalysis], group: str | None = None,
               coefficients: Sequence[str] = COEFFICIENTS) -> Scaling:
    """The rows and fits over the fitted runs among ``results`` (``runs``: the store's runs frame)."""
    if group not in GROUPS:
        raise AnalysisError(f"--group must be 'algorithm' or 'intervention', got {group!r}")
    info = runs.set_index("id")
    rows = []
    for res in results:
        law = res.law
        if law is None:
            continue
        run = info.loc[res.run_id]
        params, tags = run["params"] or {}, run["tags"] or {}
        rows.append({
            "run": res.run, "run_id": res.run_id, "model": run["model"],
            "size": model_size_from(run["model"], res.run, params, tags),
            "algorithm": run["algorithm"] or tags.get("algorithm"),
            "intervention": tags.get("intervention") or "none",
            "a": law.a, "b": law.b, "ceiling": law.ceiling,
            "ceiling_ci": list(law.ceiling_ci), "r2": law.r2,
        })
    return Scaling(tuple(rows), group, fit_scaling_table(rows, coefficients, group=group))
