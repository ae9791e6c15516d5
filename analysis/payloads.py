"""The documents `runs --json`, `fit --json`, `backtest --json` and `scaling --json` print, and reports embed.

One function per document, so the CLI, the reports and the dashboard can never disagree on a number. Each takes
the run results of ``analysis.pipeline.current_results`` (read once per command; nothing here writes).
Fields are added over versions, never renamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from analysis.errors import AnalysisError
from analysis.forecasting import CrossRun, backtest_at, summary_of_rows
from analysis.health import health_payload
from analysis.pipeline import current_cross_run, run_series
from analysis.results import is_failure
from analysis.scaling import scaling_of
from db import Store
from models.align import align
from models.backtest import CUTOFFS, DEFAULT_CUTOFF, GRID
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
                robust: str | None = None, cross: CrossRun | None = None) -> list[dict[str, Any]]:
    """Per run: the headline law with its bounded ceiling and 95% interval, every benchmark's law, the warm-up
    excluded, stage, collapse, the replay of the headline at 30% (finished runs), and the live forecast of a run
    in progress with the replay's track record at its own fraction. ``cross``: the results across runs as
    stored (``analysis.pipeline.current_cross_run``; read when not given).

    ``robust`` ("soft_l1" or "huber") refits the headline law from the stored points with that loss, setting
    aside outlier evaluations (``loss`` and ``n_excluded`` say so)."""
    chosen = select_runs(results, run)
    if cross is None:
        cross = current_cross_run(store, [int(r["run_id"]) for r in chosen], results)
    key = f"{DEFAULT_CUTOFF:g}"
    health = {h["run_id"]: h for h in health_payload(results, chosen, cross.live())}
    out = []
    for res in chosen:
        row = cross.rows.get(int(res["run_id"])) or {}
        live = row.get("live")
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
            "weak": law.get("weak"),
            "backtest": _fit_backtest((row.get("replay") or {}).get(key), (row.get("skipped") or {}).get(key)),
            "forecast": live,
            "forecast_reason": None if live else _why_no_forecast(res),
            "health": health[res["run_id"]]["findings"], "health_worst": health[res["run_id"]]["worst"],
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
    if is_failure(live):
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


def _fit_backtest(row: Mapping[str, Any] | None, why: str | None) -> dict[str, Any]:
    if row is not None:
        return {"cutoff": DEFAULT_CUTOFF, "method": row["method"], "predicted_final": row["predicted_final"],
                "interval": row["interval"], "observed_final": row["observed_final"], "error": row["error"],
                "covered": row["covered"], "reason": None}
    return {"cutoff": DEFAULT_CUTOFF, "error": None, "reason": why or "run not analysed"}


def backtest_payload(store: Store, results: Sequence[Mapping[str, Any]],
                     cutoffs: Sequence[float] | None = None, cross: CrossRun | None = None) -> dict[str, Any]:
    """A view of the replay. Per cutoff (10, 20, 30, 50% by default; any fraction on request) and finished
    run: the headline's forecast of the final score from the run cut there vs what happened, with every
    method's; then MAE/RMSE/coverage per method and for the headline. The top level holds the 30% cutoff (or
    the first one asked for) as before; ``cutoffs`` holds them all. Grid fractions are read as stored
    (``cross``); another fraction is replayed on request, in memory."""
    cutoffs = list(cutoffs or CUTOFFS)
    for c in cutoffs:
        if not 0.05 <= c <= 0.95:
            raise AnalysisError(f"--cutoff must be a fraction between 0.05 and 0.95, got {c}")
    if any(_on_grid(c) for c in cutoffs) and cross is None:
        cross = current_cross_run(store, [int(r["run_id"]) for r in results], results)
    docs = [_stored_doc(results, c, cross) if _on_grid(c)
            else _cutoff_doc(backtest_at(results, c, _computed(store, results, c))) for c in cutoffs]
    top = next((d for d in docs if abs(d["cutoff"] - DEFAULT_CUTOFF) < 1e-9), docs[0])
    return {**top, "cutoffs": docs}


def _on_grid(c: float) -> bool:
    return any(abs(c - g) < 1e-9 for g in GRID)


def _stored_doc(results: Sequence[Mapping[str, Any]], cutoff: float, cross: CrossRun) -> dict[str, Any]:
    """The replay at a grid fraction, for ``results``' runs, from the stored rows (nothing refitted)."""
    key = f"{cutoff:g}"
    rows, skipped = [], []
    for res in results:
        mine = cross.rows.get(int(res["run_id"])) or {}
        if key in (mine.get("replay") or {}):
            rows.append(mine["replay"][key])
        else:
            skipped.append({"run": res["run"], "run_id": res["run_id"],
                            "reason": (mine.get("skipped") or {}).get(key) or "not analysed"})
    summary = summary_of_rows(rows, cutoff)
    return {"cutoff": cutoff, "runs": rows, "skipped": skipped,
            "summary": None if summary is None else _summary(summary.to_dict())}


def _computed(store: Store, results: Sequence[Mapping[str, Any]], cutoff: float) -> dict[int, dict]:
    """Replays at a fraction that is not on the grid, computed in memory (on request)."""
    from analysis.run import backtest_of, replay_end, warmup_mode

    out = {}
    for res in results:
        if not res.get("finished") or res.get("entropy_key") is None or not res.get("range"):
            continue
        h, r = run_series(store, res)
        out[int(res["run_id"])] = backtest_of(h, r, cutoff, MetricRange.from_dict(res["range"]), warmup_mode(res),
                                              replay_end(res.get("planned_steps"), res.get("last_step")))
    return out


def _cutoff_doc(bt) -> dict[str, Any]:  # noqa: ANN001 - analysis.forecasting.CutoffBacktest
    rows = [bt.row(i) for i in range(len(bt.headlines))]
    return {"cutoff": bt.cutoff, "runs": rows, "skipped": list(bt.skipped),
            "summary": None if bt.summary is None else _summary(bt.summary.to_dict())}


def _summary(s: dict[str, Any]) -> dict[str, Any]:
    # fields of the first release, kept: the "winner" is the best entry by MAE, headline included
    winner = min(s["scores"], key=lambda k: s["scores"][k]["mae"])
    return {**s, "winner": winner, "primary": "headline", "baseline_won": winner != "headline"
            and s["scores"][winner]["mae"] < s["scores"]["headline"]["mae"]}


def scaling_payload(store: Store, results: Sequence[Mapping[str, Any]], group: str | None = None) -> dict[str, Any]:
    """a, b and the ceiling per fitted run against model size, algorithm and intervention, and the log-linear fit
    of each coefficient against model size (per ``group`` value when given: algorithm or intervention)."""
    scaling = scaling_of(store.runs_frame(), results, group)
    fits = []
    for (grp, coef), fit in scaling.fits.items():
        entry = {"group": grp, "coefficient": coef}
        entry.update(fit.to_dict() if not isinstance(fit, str) else {"reason": fit})
        fits.append(entry)
    rows = list(scaling.rows)
    return {"runs": rows, "group_by": group, "fits": fits,
            "note": "coefficient = k·ln(model size in B) + c, fitted over runs whose model size could be read "
                    "from the model name, params, tags or run name"}
