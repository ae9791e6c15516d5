"""Per-run analyses: choose keys, align, fit the law (then stage, collapse, backtest) and store the result.

This is the wiring between the store and the pure math in ``models``. One ``analyses`` row per run
(kind ``summary``) holds the whole result as JSON plus its key numbers as columns; it is recomputed when
the run's ``data_version`` moved past the one it was computed on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from db import Store
from ingest.keys import KeyChoice, choose_keys
from models.align import align
from models.backtest import DEFAULT_CUTOFF, backtest_run
from models.collapse import detect_collapse
from models.errors import FitError
from models.law import fit_law
from models.resample import bin_means
from models.stages import find_stage_boundary

KIND = "summary"


def run_overrides(source_options: Mapping[str, Any], run_name: str) -> dict[str, str]:
    """entropy_key / performance_key chosen by the user for a source, or for one run of it."""
    out = {k: source_options[k] for k in ("entropy_key", "performance_key") if source_options.get(k)}
    out.update((source_options.get("runs") or {}).get(run_name, {}))
    return out


def choose_run_keys(run: Mapping[str, Any], keys: pd.DataFrame, source_options: Mapping[str, Any]) -> KeyChoice:
    """The run's entropy and performance keys: stored roles, then the user's overrides."""
    roles = dict(zip(keys["key"], keys["role"], strict=True)) if not keys.empty else {}
    seen = list(run.get("keys_seen") or roles)
    return choose_keys(seen, roles, **run_overrides(source_options, run["name"]))


def analyse_run(run: Mapping[str, Any], keys: pd.DataFrame, series: pd.DataFrame, choice: KeyChoice) -> dict[str, Any]:
    """Everything the CLI, dashboard and reports show about one run, as a JSON-able dict.

    ``keys`` are the run's rows of ``Store.run_keys``; ``series`` holds at least the chosen keys' points.
    """
    seen = list(run.get("keys_seen") or keys["key"])
    out: dict[str, Any] = {
        "run_id": int(run["id"]),
        "run": run["name"],
        "entropy_key": choice.entropy,
        "performance_key": choice.performance,
        "performance_kind": choice.performance_kind,
        "key_reason": choice.reason,
        "unrecognised_keys": list(choice.unrecognised),
        "status": "ok",
        "reason": None,
        "law": None,
    }
    stats = keys.set_index("key") if not keys.empty else pd.DataFrame()
    for role, key in (("entropy", choice.entropy), ("performance", choice.performance)):
        has = key is not None and key in stats.index
        out[f"n_{role}"] = int(stats.loc[key, "n"]) if has else 0
        out[f"n_{role}_nonfinite"] = int(stats.loc[key, "n_nonfinite"]) if has else 0
    out["last_step"] = int(stats["last_step"].max()) if not stats.empty else None

    missing = [r for r, k in (("entropy", choice.entropy), ("performance", choice.performance))
               if k is None or k not in stats.index]
    if missing:
        out.update(status="skipped",
                   reason=f"no {' and no '.join(missing)} metric (keys seen: {', '.join(seen[:12]) or 'none'}"
                          f"{'…' if len(seen) > 12 else ''})")
        return out

    h = _one(series, choice.entropy)
    r = _one(series, choice.performance)
    pairs = align(h, r)
    out["alignment"] = {
        "n_pairs": len(pairs),
        "fallback_steps": list(pairs.fallback_steps),
        "unpaired_steps": list(pairs.unpaired_steps),
        "n_nonfinite": pairs.n_nonfinite,
        "max_gap": pairs.max_gap,
        "rule": "R(s) pairs with the entropy logged at the first step >= s+1 (the same policy's rollouts); "
                "the last evaluation falls back to the latest entropy at or before s",
    }
    hf, rf = model_curves(h, r)
    out["stage"] = _guarded(lambda: find_stage_boundary(hf.index, hf.to_numpy(), rf.index, rf.to_numpy()).to_dict())
    out["collapse"] = _guarded(lambda: detect_collapse(hf.index, hf.to_numpy(), rf.index, rf.to_numpy()).to_dict())
    out["backtest"] = run_backtest(hf, rf, DEFAULT_CUTOFF, run["name"])
    try:
        fit = fit_law(pairs.entropy, pairs.performance)
    except FitError as exc:
        out.update(status="failed", reason=f"{exc} [{exc.cause}]")
        return out
    out["law"] = fit.to_dict()
    out["best_performance"] = float(r.max(skipna=True))
    out["last_performance"] = float(r.dropna().iloc[-1]) if r.notna().any() else None
    out["headroom"] = fit.ceiling - out["best_performance"]
    out["entropy_first"] = float(h.dropna().iloc[0]) if h.notna().any() else None
    out["entropy_last"] = float(h.dropna().iloc[-1]) if h.notna().any() else None
    out["performance_first"] = float(r.dropna().iloc[0]) if r.notna().any() else None
    return out


def metric_bounds(r: pd.Series) -> tuple[float, float] | None:
    """An accuracy-like metric (all values in [0, 1]) is bounded to [0, 1]; rewards are unbounded."""
    return (0.0, 1.0) if len(r) and r.min() >= 0.0 and r.max() <= 1.0 else None


def model_curves(h: pd.Series, r: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The finite entropy and performance curves as the trend models see them: at most
    ``MAX_MODEL_POINTS`` points each (bucket means of longer curves, see models.resample)."""
    out = []
    for s in (h.dropna(), r.dropna()):
        steps, values = bin_means(s.index.to_numpy(), s.to_numpy())
        out.append(pd.Series(values, index=steps, name=s.name))
    return out[0], out[1]


def run_backtest(h: pd.Series, r: pd.Series, cutoff: float, run: str | None = None) -> dict[str, Any]:
    """Forecast from the first ``cutoff`` of the run, scored against what happened (see models.backtest)."""
    h, r = model_curves(h, r)
    return _guarded(lambda: backtest_run(h.index.to_numpy(), h.to_numpy(), r.index.to_numpy(), r.to_numpy(),
                                         cutoff=cutoff, run=run, bounds=metric_bounds(r)).to_dict())


def _guarded(compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A sub-analysis that cannot be made says why instead of failing the whole run."""
    try:
        return compute()
    except FitError as exc:
        return {"error": str(exc), "cause": exc.cause}


def _one(series: pd.DataFrame, key: str) -> pd.Series:
    part = series[series["key"] == key]
    return pd.Series(part["value"].to_numpy(dtype=float), index=part["step"].to_numpy(), name=key)


def _columns(result: Mapping[str, Any]) -> dict[str, float | int | None]:
    law = result.get("law") or {}
    return {
        "a": law.get("a"), "b": law.get("b"), "ceiling": law.get("ceiling"),
        "ceiling_lo": law.get("ceiling_lo"), "ceiling_hi": law.get("ceiling_hi"),
        "r2": law.get("r2"), "n": law.get("n"),
        "plateau_step": (result.get("stage") or {}).get("step"),
        "collapse_step": (result.get("collapse") or {}).get("projected_floor_step"),
    }


def refresh_analyses(store: Store, run_ids: Sequence[int] | None = None, *, force: bool = False) -> int:
    """Recompute the analyses of stale runs (or of ``run_ids``, or all when ``force``); returns how many."""
    runs = store.runs_frame()
    if runs.empty:
        return 0
    if force:
        todo = list(runs["id"]) if run_ids is None else list(run_ids)
    else:
        stale = set(store.stale_runs(KIND))
        todo = [i for i in (run_ids if run_ids is not None else runs["id"]) if int(i) in stale]
    if not todo:
        return 0
    sources = store.sources_frame().set_index("id")
    keys = store.run_keys(todo)
    runs = runs.set_index("id", drop=False)
    for run_id in todo:
        run = runs.loc[run_id]
        rk = keys[keys["run_id"] == run_id]
        choice = choose_run_keys(run, rk, sources.loc[run["source_id"], "options"] or {})
        wanted = [k for k in (choice.entropy, choice.performance) if k]
        series = store.series([run_id], wanted) if wanted else pd.DataFrame(columns=["key", "step", "value"])
        result = analyse_run(run.to_dict(), rk, series, choice)
        store.save_analysis(int(run_id), KIND, int(run["data_version"]), result, _columns(result))
    return len(todo)


def run_series(store: Store, result: Mapping[str, Any]) -> tuple[pd.Series, pd.Series]:
    """The chosen entropy and performance series of an analysed run (finite points only)."""
    s = store.series([result["run_id"]], [result["entropy_key"], result["performance_key"]])
    return _one(s, result["entropy_key"]).dropna(), _one(s, result["performance_key"]).dropna()


def load_results(store: Store, run_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Stored analysis results, one dict per run, in run order."""
    df = store.analyses_frame(KIND, run_ids)
    return [dict(r) for r in df["result"]] if not df.empty else []
