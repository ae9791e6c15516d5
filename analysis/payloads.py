"""The documents `runs --json`, `fit --json` and `backtest --json` print, and reports embed.

One function per document, so the CLI and the reports can never disagree on a number.
"""

from __future__ import annotations

from typing import Any

from analysis.errors import AnalysisError
from analysis.pipeline import load_results, refresh_analyses, run_backtest, run_series
from db import Store
from models.align import align
from models.backtest import DEFAULT_CUTOFF, RunBacktest, summarise
from models.law import fit_law_robust
from models.scaling import fit_scaling_table, model_size_from


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


def fit_payload(store: Store, run: str | None = None, robust: str | None = None) -> list[dict[str, Any]]:
    """Per run: the law, its ceiling with the 95% interval, stage, collapse and the backtest error.

    ``robust`` ("soft_l1" or "huber") refits the law from the stored points with that loss, setting aside
    outlier evaluations (``loss`` and ``n_excluded`` say so); the stored analysis is left as it is.
    """
    refresh_analyses(store)
    results = load_results(store)
    if run is not None:
        results = [r for r in results if str(r["run_id"]) == run or r["run"] == run]
        if not results:
            raise AnalysisError(f"no run {run!r} in the store: see `entropy-dash runs`")
    out = []
    for res in results:
        law = res.get("law") or {}
        if robust and law:
            law = robust_law(store, res, robust)
        out.append({
            "run": res["run"], "run_id": res["run_id"], "status": res["status"], "reason": res["reason"],
            "entropy_key": res["entropy_key"], "performance_key": res["performance_key"],
            "a": law.get("a"), "b": law.get("b"), "a_se": law.get("a_se"), "b_se": law.get("b_se"),
            "cov_ab": law.get("cov_ab"), "ceiling": law.get("ceiling"), "ceiling_se": law.get("ceiling_se"),
            "ceiling_ci": law.get("ceiling_ci"), "r2": law.get("r2"), "rmse": law.get("rmse"), "n": law.get("n"),
            "h_range": [law.get("h_min"), law.get("h_max")] if law else None,
            "flags": law.get("flags", []), "loss": law.get("loss"), "n_excluded": law.get("n_excluded"),
            "best_performance": res.get("best_performance"),
            "headroom": res.get("headroom"),
            **_stage_collapse_backtest(res),
        })
    return out


def robust_law(store: Store, res: dict[str, Any], loss: str) -> dict[str, Any]:
    h, r = run_series(store, res)
    pairs = align(h, r)
    return fit_law_robust(pairs.entropy, pairs.performance, loss=loss).to_dict()


def _stage_collapse_backtest(res: dict[str, Any]) -> dict[str, Any]:
    stage = res.get("stage") or {}
    collapse = res.get("collapse") or {}
    bt = res.get("backtest") or {}
    return {
        "plateau_step": stage.get("step"), "plateau_range": stage.get("range"),
        "stage_reason": stage.get("reason") or stage.get("error"),
        "collapse": {"verdict": collapse.get("verdict"), "projected_floor_step": collapse.get("projected_floor_step"),
                     "message": collapse.get("message") or collapse.get("error")},
        "backtest": {"cutoff": DEFAULT_CUTOFF, "method": bt.get("method"),
                     "predicted_final": bt.get("predicted_final"), "interval": bt.get("interval"),
                     "observed_final": bt.get("observed_final"), "error": bt.get("error"), "reason": None}
        if bt and "cause" not in bt else
        {"cutoff": DEFAULT_CUTOFF, "error": None, "reason": bt.get("error", "run not analysed")},
    }


def backtest_payload(store: Store, cutoff: float = DEFAULT_CUTOFF) -> dict[str, Any]:
    """Per run: the forecast of the final score from the first ``cutoff`` of the run vs what happened,
    with every baseline; then MAE/RMSE per method over all runs and which one won."""
    if not 0.05 <= cutoff <= 0.95:
        raise AnalysisError(f"--cutoff must be a fraction between 0.05 and 0.95, got {cutoff}")
    refresh_analyses(store)
    rows, skipped, scored = [], [], []
    for res in load_results(store):
        if res["status"] == "skipped":
            skipped.append({"run": res["run"], "run_id": res["run_id"], "reason": res["reason"]})
            continue
        if cutoff == DEFAULT_CUTOFF:
            bt = res.get("backtest") or {"error": "not computed", "cause": "missing"}
        else:
            h, r = run_series(store, res)
            bt = run_backtest(h, r, cutoff, res["run"])
        if "cause" in bt:
            skipped.append({"run": res["run"], "run_id": res["run_id"], "reason": bt["error"]})
            continue
        rows.append({"run": res["run"], "run_id": res["run_id"], "predicted_final": bt["predicted_final"],
                     "interval": bt["interval"], "observed_final": bt["observed_final"], "error": bt["error"],
                     "method": bt["method"], "cutoff_step": bt["cutoff_step"], "final_steps": bt["final_steps"],
                     "n_pairs_before_cutoff": bt["n_pairs_before_cutoff"], "covered": bt["covered"],
                     "ceiling": bt["ceiling"], "ceiling_interval": bt["ceiling_interval"],
                     "baselines": bt["baselines"]})
        scored.append(bt)
    summary = summarise([RunBacktest.from_dict(b) for b in scored]).to_dict() if scored else None
    return {"cutoff": cutoff, "runs": rows, "skipped": skipped, "summary": summary}


def scaling_payload(store: Store, group: str | None = None) -> dict[str, Any]:
    """a, b and ceiling against run attributes (model size, algorithm, intervention), and the log-linear fit
    of each coefficient against model size (per ``group`` value when given: algorithm or intervention)."""
    if group not in (None, "algorithm", "intervention"):
        raise AnalysisError(f"--group must be 'algorithm' or 'intervention', got {group!r}")
    refresh_analyses(store)
    runs = store.runs_frame().set_index("id")
    rows = []
    for res in load_results(store):
        law = res.get("law")
        if not law:
            continue
        run = runs.loc[res["run_id"]]
        params, tags = run["params"] or {}, run["tags"] or {}
        rows.append({
            "run": res["run"], "run_id": res["run_id"], "model": run["model"],
            "size": model_size_from(run["model"], res["run"], params, tags),
            "algorithm": run["algorithm"] or tags.get("algorithm"),
            "intervention": tags.get("intervention") or "none",
            "a": law["a"], "b": law["b"], "ceiling": law["ceiling"],
            "ceiling_ci": law["ceiling_ci"], "r2": law["r2"],
        })
    fits = []
    for (grp, coef), fit in fit_scaling_table(rows, group=group).items():
        entry = {"group": grp, "coefficient": coef}
        entry.update(fit.to_dict() if not isinstance(fit, str) else {"reason": fit})
        fits.append(entry)
    return {"runs": rows, "group_by": group, "fits": fits,
            "note": "coefficient = k·ln(model size in B) + c, fitted over runs whose model size could be read "
                    "from the model name, params, tags or run name"}
