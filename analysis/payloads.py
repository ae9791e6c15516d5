"""The documents `runs --json`, `fit --json`, `backtest --json` and `scaling --json` print, and reports embed.

One function per document, so the CLI, the reports and the dashboard can never disagree on a number. Each takes
the run results of ``analysis.pipeline.current_results`` (read once per command; nothing here writes).
Fields are added over versions, never renamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from analysis.errors import AnalysisError
from analysis.forecasting import CutoffBacktest, backtest_at, live_forecasts
from analysis.pipeline import run_series
from db import Store
from models.align import align
from models.backtest import CUTOFFS, DEFAULT_CUTOFF
from models.metric_range import MetricRange


def runs_payload(store: Store, results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    runs = store.runs_frame().set_index("id")
    out = []
    for res in results:
        run = runs.loc[res["run_id"]]
        out.append({
            "run": res["run"], "run_id": res["run_id"], "source": f"{run['source_kind']} {run['source_uri']}",
            "source_kind": run["source_kind"],  # a kind of the source registry (ingest.registry)
            "project": run["project"], "external_id": run["external_id"],
            "entropy_key": res["entropy_key"], "performance_key": res["performance_key"],
            "performance_kind": res["performance_kind"], "key_reason": res["key_reason"],
            "n_entropy": res["n_entropy"], "n_performance": res["n_performance"],
            "n_nonfinite": res["n_entropy_nonfinite"] + res["n_performance_nonfinite"],
            "last_step": res["last_step"], "status": res["status"], "reason": res["reason"],
            "unrecognised_keys": res["unrecognised_keys"], "notes": list(run["notes"] or []),
            "state": res.get("state"), "planned_steps": res.get("planned_steps"),
            "planned_from": res.get("planned_from"), "finished": res.get("finished"), "progress": res.get("progress"),
            "benchmarks": [b["key"] for b in res.get("benchmarks") or []],
        })
    return out


def select_runs(results: Sequence[Mapping[str, Any]], run: str | None) -> list[Mapping[str, Any]]:
    """The results of run ``run`` (id or name), all when None; an unknown run is an error naming it."""
    if run is None:
        return list(results)
    chosen = [r for r in results if str(r["run_id"]) == run or r["run"] == run]
    if not chosen:
        raise AnalysisError(f"no run {run!r} in the store: see `entropy-dash runs`")
    return chosen


def fit_payload(store: Store, results: Sequence[Mapping[str, Any]], run: str | None = None,
                robust: str | None = None) -> list[dict[str, Any]]:
    """Per run: the headline law with its bounded ceiling and 95% interval, every benchmark's law, the warm-up
    excluded, stage, collapse, the backtest of the headline at 30%, and the live forecast of a run in progress.

    ``robust`` ("soft_l1" or "huber") refits the headline law from the stored points with that loss, setting
    aside outlier evaluations (``loss`` and ``n_excluded`` say so)."""
    chosen = select_runs(results, run)
    live = live_forecasts(results)
    bt = backtest_at(results, DEFAULT_CUTOFF)
    bt_rows = {res["run_id"]: bt.row(i) for i, res in enumerate(bt.results)}
    out = []
    for res in chosen:
        law = res.get("law") or {}
        if robust and law:
            law = robust_law(store, res, robust)
        out.append({
            "run": res["run"], "run_id": res["run_id"], "status": res["status"], "reason": res["reason"],
            "entropy_key": res["entropy_key"], "performance_key": res["performance_key"],
            "a": law.get("a"), "b": law.get("b"), "a_se": law.get("a_se"), "b_se": law.get("b_se"),
            "cov_ab": law.get("cov_ab"), "ceiling": law.get("ceiling"), "ceiling_se": law.get("ceiling_se"),
            "ceiling_ci": law.get("ceiling_ci"), "ceiling_raw": law.get("ceiling_raw"),
            "ceiling_ci_raw": [law.get("ceiling_lo_raw"), law.get("ceiling_hi_raw")] if law else None,
            "r2": law.get("r2"), "rmse": law.get("rmse"), "n": law.get("n"),
            "h_range": [law.get("h_min"), law.get("h_max")] if law else None,
            "flags": law.get("flags", []), "loss": law.get("loss"), "n_excluded": law.get("n_excluded"),
            "range": res.get("range"), "excluded_steps": res.get("excluded_steps", []),
            "warmup": res.get("warmup"), "headline_rule": res.get("headline_rule"),
            "benchmarks": [_benchmark(b) for b in res.get("benchmarks") or []],
            "best_performance": res.get("best_performance"), "headroom": res.get("headroom"),
            "state": res.get("state"), "planned_steps": res.get("planned_steps"), "last_step": res.get("last_step"),
            "finished": res.get("finished"), "progress": res.get("progress"),
            **_stage_collapse(res),
            "backtest": _fit_backtest(res, bt_rows.get(res["run_id"]), bt),
            "forecast": live.get(int(res["run_id"])),
            "forecast_reason": None if int(res["run_id"]) in live else _why_no_forecast(res),
        })
    return out


def _benchmark(b: Mapping[str, Any]) -> dict[str, Any]:
    law = b.get("law") or {}
    return {"key": b["key"], "benchmark": b.get("benchmark"), "status": b["status"], "reason": b.get("reason"),
            "a": law.get("a"), "b": law.get("b"), "a_se": law.get("a_se"), "b_se": law.get("b_se"),
            "ceiling": law.get("ceiling"), "ceiling_ci": law.get("ceiling_ci"), "ceiling_raw": law.get("ceiling_raw"),
            "r2": law.get("r2"), "n": law.get("n", b.get("n")), "excluded_steps": b.get("excluded_steps", []),
            "best": b.get("best"), "last": b.get("last"), "range": b.get("range"), "flags": law.get("flags", [])}


def _why_no_forecast(res: Mapping[str, Any]) -> str:
    if res.get("finished"):
        return "finished: no forecast, see its backtest"
    live = res.get("live")
    if isinstance(live, Mapping) and "cause" in live:
        return f"no forecast: {live.get('error')}"
    if not res.get("planned_steps"):
        return ("planned length unknown: set it with `entropy-dash ingest … --planned-steps N` or planned_steps in "
                "sources.toml")
    return "no forecast: the run is not analysed" if res.get("entropy_key") else "no forecast: no entropy metric"


def robust_law(store: Store, res: Mapping[str, Any], loss: str) -> dict[str, Any]:
    from analysis.run import bounded_law
    from models.law import fit_law_robust

    h, r = run_series(store, res)
    pairs = align(h, r)
    keep = [s not in set(res.get("excluded_steps") or []) for s in pairs.steps]
    fit = fit_law_robust(pairs.entropy[keep], pairs.performance[keep], loss=loss)
    return bounded_law(fit.to_dict(), MetricRange.from_dict(res.get("range")), res.get("best_performance"))


def _stage_collapse(res: Mapping[str, Any]) -> dict[str, Any]:
    stage = res.get("stage") or {}
    collapse = res.get("collapse") or {}
    return {"plateau_step": stage.get("step"), "plateau_range": stage.get("range"),
            "stage_reason": stage.get("reason") or stage.get("error"),
            "collapse": {"verdict": collapse.get("verdict"), "projected_floor_step": collapse.get("projected_floor_step"),
                         "message": collapse.get("message") or collapse.get("error")}}


def _fit_backtest(res: Mapping[str, Any], row: Mapping[str, Any] | None, bt: CutoffBacktest) -> dict[str, Any]:
    if row is not None:
        return {"cutoff": DEFAULT_CUTOFF, "method": row["method"], "predicted_final": row["predicted_final"],
                "interval": row["interval"], "observed_final": row["observed_final"], "error": row["error"],
                "covered": row["covered"], "reason": None}
    why = next((s["reason"] for s in bt.skipped if s["run_id"] == res["run_id"]), "run not analysed")
    return {"cutoff": DEFAULT_CUTOFF, "error": None, "reason": why}


def backtest_payload(store: Store, results: Sequence[Mapping[str, Any]],
                     cutoffs: Sequence[float] | None = None) -> dict[str, Any]:
    """Per cutoff (10, 20, 30, 50% by default) and finished run: the headline's forecast of the final score
    vs what happened, with every method's; then MAE/RMSE/coverage per method and for the headline. The top
    level holds the 30% cutoff (or the first one asked for) as before; ``cutoffs`` holds them all."""
    cutoffs = list(cutoffs or CUTOFFS)
    for c in cutoffs:
        if not 0.05 <= c <= 0.95:
            raise AnalysisError(f"--cutoff must be a fraction between 0.05 and 0.95, got {c}")
    docs = [_cutoff_doc(backtest_at(results, c, _computed(store, results, c))) for c in cutoffs]
    top = next((d for d in docs if abs(d["cutoff"] - DEFAULT_CUTOFF) < 1e-9), docs[0])
    return {**top, "cutoffs": docs}


def _computed(store: Store, results: Sequence[Mapping[str, Any]], cutoff: float) -> dict[int, dict] | None:
    """Backtests at a cutoff that is not stored, computed in memory (None: the stored ones serve)."""
    if any(abs(cutoff - c) < 1e-9 for c in CUTOFFS):
        return None
    from analysis.run import backtest_of, warmup_mode

    out = {}
    for res in results:
        if not res.get("finished") or res.get("entropy_key") is None or not res.get("range"):
            continue
        h, r = run_series(store, res)
        out[int(res["run_id"])] = backtest_of(h, r, cutoff, MetricRange.from_dict(res["range"]), warmup_mode(res))
    return out


def _cutoff_doc(bt: CutoffBacktest) -> dict[str, Any]:
    rows = [bt.row(i) for i in range(len(bt.headlines))]
    return {"cutoff": bt.cutoff, "runs": rows, "skipped": list(bt.skipped),
            "summary": None if bt.summary is None else _summary(bt)}


def _summary(bt: CutoffBacktest) -> dict[str, Any]:
    s = bt.summary.to_dict()
    # fields of the first release, kept: the "winner" is the best entry by MAE, headline included
    winner = min(s["scores"], key=lambda k: s["scores"][k]["mae"])
    return {**s, "winner": winner, "primary": "headline", "baseline_won": winner != "headline"
            and s["scores"][winner]["mae"] < s["scores"]["headline"]["mae"]}


def scaling_payload(store: Store, results: Sequence[Mapping[str, Any]], group: str | None = None) -> dict[str, Any]:
    """a, b and the ceiling per fitted run against model size, algorithm and intervention, and the log-linear fit
    of each coefficient against model size (per ``group`` value when given: algorithm or intervention)."""
    if group not in (None, "algorithm", "intervention"):
        raise AnalysisError(f"--group must be 'algorithm' or 'intervention', got {group!r}")
    from models.scaling import fit_scaling_table, model_size_from

    runs = store.runs_frame().set_index("id")
    rows = []
    for res in results:
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
