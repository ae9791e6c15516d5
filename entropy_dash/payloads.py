"""The documents `runs --json`, `fit --json` and `backtest --json` print, and reports embed.

One function per document, so the CLI and the reports can never disagree on a number.
"""

from __future__ import annotations

from typing import Any

from db import Store
from entropy_dash.analysis import load_results, refresh_analyses
from entropy_dash.errors import ConfigError


def runs_payload(store: Store) -> list[dict[str, Any]]:
    refresh_analyses(store)
    runs = store.runs_frame().set_index("id")
    out = []
    for res in load_results(store):
        run = runs.loc[res["run_id"]]
        out.append({
            "run": res["run"], "run_id": res["run_id"], "source": f"{run['source_kind']} {run['source_uri']}",
            "project": run["project"], "external_id": run["external_id"],
            "entropy_key": res["entropy_key"], "performance_key": res["performance_key"],
            "performance_kind": res["performance_kind"], "key_reason": res["key_reason"],
            "n_entropy": res["n_entropy"], "n_performance": res["n_performance"],
            "n_nonfinite": res["n_entropy_nonfinite"] + res["n_performance_nonfinite"],
            "last_step": res["last_step"], "status": res["status"], "reason": res["reason"],
            "unrecognised_keys": res["unrecognised_keys"], "notes": list(run["notes"] or []),
        })
    return out


def fit_payload(store: Store, run: str | None = None) -> list[dict[str, Any]]:
    refresh_analyses(store)
    results = load_results(store)
    if run is not None:
        results = [r for r in results if str(r["run_id"]) == run or r["run"] == run]
        if not results:
            raise ConfigError(f"no run {run!r} in the store: see `entropy-dash runs`")
    out = []
    for res in results:
        law = res.get("law") or {}
        out.append({
            "run": res["run"], "run_id": res["run_id"], "status": res["status"], "reason": res["reason"],
            "entropy_key": res["entropy_key"], "performance_key": res["performance_key"],
            "a": law.get("a"), "b": law.get("b"), "a_se": law.get("a_se"), "b_se": law.get("b_se"),
            "cov_ab": law.get("cov_ab"), "ceiling": law.get("ceiling"), "ceiling_se": law.get("ceiling_se"),
            "ceiling_ci": law.get("ceiling_ci"), "r2": law.get("r2"), "rmse": law.get("rmse"), "n": law.get("n"),
            "h_range": [law.get("h_min"), law.get("h_max")] if law else None,
            "flags": law.get("flags", []), "best_performance": res.get("best_performance"),
            "headroom": res.get("headroom"),
        })
    return out
