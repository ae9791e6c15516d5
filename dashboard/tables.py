"""Tables the pages show, built from stored analysis results (pure: no Streamlit, no store)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd


def _arrow(first: float | None, last: float | None) -> str:
    if first is None or last is None:
        return "–"
    return f"{first:.3f} → {last:.3f}"


def runs_table(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: steps, H first→last, R first→last, a, b, ceiling ± CI, R², status."""
    rows = []
    for r in results:
        law = r.get("law") or {}
        rows.append({
            "run": r["run"],
            "id": r["run_id"],
            "steps": r.get("last_step"),
            "H first→last": _arrow(r.get("entropy_first"), r.get("entropy_last")),
            "R first→last": _arrow(r.get("performance_first"), r.get("last_performance")),
            "a": law.get("a"),
            "b": law.get("b"),
            "ceiling": law.get("ceiling"),
            "± (95% CI)": (law["ceiling_hi"] - law["ceiling_lo"]) / 2 if law else None,
            "R²": law.get("r2"),
            "n pairs": law.get("n"),
            "status": "ok" if r["status"] == "ok" else f"{r['status']}: {r['reason']}",
        })
    return pd.DataFrame(rows)
