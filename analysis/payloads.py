"""The documents `runs --json`, `fit --json`, `backtest --json` and `scaling --json` print, and reports embed.

One function per document, so the CLI, the reports and the dashboard can never disagree on a number. Each takes
the run results of ``analysis.pipeline.current_results`` (read once per command; nothing here writes).
Fields are added over versions, never renamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from analysis.errors import AnalysisError
from analysis.forecasting import CrossRun, backtest_at, summary_of_rows
from analysis.pipeline import current_cross_run, current_health, run_series
from analysis.results import Backtest, Benchmark, Failure, Law, RunAnalysis, part
from analysis.scaling import scaling_of
from db import Store
from models.align import align
from models.backtest import CUTOFFS, DEFAULT_CUTOFF, GRID
from models.metric_range import MetricRange


def runs_payload(store: Store, results: Sequence[RunAnalysis]) -> list[dict[str, Any]]:
    runs = store.runs_frame().set_index("id")
    out = []
    for res in results:
        run = runs.loc[res.run_id]
        out.append({
            "run": res.run, "run_id": res.run_id, "source": f"{run['source_kind']} {run['source_uri']}",
            "source_kind": run["source_kind"],  # a kind of the source registry (ingest.registry)
            "project": run["project"], "external_id": run["external_id"],
            "entropy_key": res.entropy_key, "performance_key": res.performance_key,
            "performance_kind": res.performance_kind, "key_reason": res.key_reason,
            "n_entropy": res.n_entropy, "n_performance": res.n_performance,
            "n_nonfinite": res.n_entropy_nonfinite + res.n_performance_nonfinite,
            "last_step": res.last_step, "status": res.status, "reason": res.reason,
            "unrecognised_keys": list(res.unrecognised_keys), "notes": list(run["notes"] or []),
            "state": res.state, "planned_steps": res.planned_steps,
            "planned_from": res.planned_from, "finished": res.finished, "progress": res.progress,
            "benchmarks": [b.key for b in res.benchmarks],
        })
    return out


def select_runs(results: Sequence[RunAnalysis], run: str | None) -> list[RunAnalysis]:
    """The results of run ``run`` (id or name), all when None; an unknown run is an error naming it."""
    if run is None:
        return list(results)
    chosen = [r for r in results if str(r.run_id) == run or r.run == run]
    if not chosen:
        raise AnalysisError(f"no run {run!r} in the store: see `entropy-dash runs`")
    return chosen


def fit_payload(store: Store, results: Sequence[RunAnalysis], run: str | None = None,
                robust: str | None = None, cross: CrossRun | None = None,
                with_health: bool = True) -> list[dict[str, Any]]:
    """Per run: the headline law with its bounded ceiling and 95% interval, every benchmark's law, the warm-up
    excluded, stage, collapse, the replay of the headline at 30% (finished runs), and the live forecast of a run
    in progress with the replay's track record at its own fraction. ``cross``: the results across runs as
    stored (``analysis.pipeline.current_cross_run``; read when not given).

    ``robust`` ("soft_l1" or "huber") refits the headline law from the stored points with that loss, setting
    aside outlier evaluations (``loss`` and ``n_excluded`` say so). ``with_health=False`` leaves out ``health``
    and ``health_worst`` (and does not read them)."""
    chosen = select_runs(results, run)
    if cross is None:
        cross = current_cross_run(store, [int(r.run_id) for r in chosen], results)
    key = f"{DEFAULT_CUTOFF:g}"
    health = {h["run_id"]: h for h in current_health(store, chosen, results, cross)} if with_health else {}
    out = []
    for res in chosen:
        row = cross.rows.get(int(res.run_id)) or {}
        live = row.get("live")
        law = res.law
        if robust and law is not None:
            law = robust_law(store, res, robust)
        out.append({
            "run": res.run, "run_id": res.run_id, "status": res.status, "reason": res.reason,
            "entropy_key": res.entropy_key, "performance_key": res.performance_key,
            **_law(law),
            "range": res.range, "excluded_steps": list(res.excluded_steps or ()),
            "warmup": res.warmup, "headline_rule": res.headline_rule,
            "benchmarks": [_benchmark(b) for b in res.benchmarks],
            "best_performance": res.best_performance, "headroom": res.headroom,
            "state": res.state, "planned_steps": res.planned_steps, "last_step": res.last_step,
            "finished": res.finished, "progress": res.progress,
            **_stage_collapse(res),
            "weak": None if law is None else law.weak,
            "backtest": _fit_backtest((row.get("replay") or {}).get(key), (row.get("skipped") or {}).get(key)),
            "forecast": live,
            "forecast_reason": None if live else _why_no_forecast(res),
            **({"health": health[res.run_id]["findings"], "health_worst": health[res.run_id]["worst"]}
               if with_health else {}),
        })
    return out


def _law(law: Law | None) -> dict[str, Any]:
    """The headline law's fields of ``fit --json`` (None each when there is no law)."""
    if law is None:
        return {"a": None, "b": None, "a_se": None, "b_se": None, "cov_ab": None, "ceiling": None, "ceiling_se": None,
                "ceiling_ci": None, "ceiling_raw": None, "ceiling_ci_raw": None, "r2": None, "rmse": None, "n": None,
                "h_range": None, "flags": [], "loss": None, "n_excluded": None}
    return {"a": law.a, "b": law.b, "a_se": law.a_se, "b_se": law.b_se, "cov_ab": law.cov_ab, "ceiling": law.ceiling,
            "ceiling_se": law.ceiling_se, "ceiling_ci": list(law.ceiling_ci), "ceiling_raw": law.ceiling_raw,
            "ceiling_ci_raw": [law.ceiling_lo_raw, law.ceiling_hi_raw], "r2": law.r2, "rmse": law.rmse, "n": law.n,
            "h_range": [law.h_min, law.h_max], "flags": list(law.flags), "loss": law.loss,
            "n_excluded": law.n_excluded}


def _benchmark(b: Benchmark) -> dict[str, Any]:
    law = b.law
    return {"key": b.key, "benchmark": b.benchmark, "status": b.status, "reason": b.reason,
            "a": law and law.a, "b": law and law.b, "a_se": law and law.a_se, "b_se": law and law.b_se,
            "ceiling": law and law.ceiling, "ceiling_ci": law and list(law.ceiling_ci),
            "ceiling_raw": law and law.ceiling_raw, "r2": law and law.r2, "n": b.n if law is None else law.n,
            "excluded_steps": list(b.excluded_steps), "best": b.best, "last": b.last, "range": b.range,
            "flags": [] if law is None else list(law.flags)}


def _why_no_forecast(res: RunAnalysis) -> str:
    if res.finished:
        return "finished: no forecast, see its backtest"
    if isinstance(res.forecast, Failure):
        return f"no forecast: {res.forecast.error}"
    if not res.planned_steps:
        return ("planned length unknown: set it with `entropy-dash ingest … --planned-steps N` or planned_steps in "
                "sources.toml")
    return "no forecast: the run is not analysed" if res.entropy_key else "no forecast: no entropy metric"


def robust_law(store: Store, res: RunAnalysis, loss: str) -> Law:
    from analysis.run import bounded_law
    from models.law import fit_law_robust

    h, r = run_series(store, res)
    pairs = align(h, r)
    excluded = set(res.excluded_steps or ())
    keep = [s not in excluded for s in pairs.steps]
    fit = fit_law_robust(pairs.entropy[keep], pairs.performance[keep], loss=loss)
    return Law.from_dict(bounded_law(fit.to_dict(), MetricRange.from_dict(res.range), res.best_performance))


def _stage_collapse(res: RunAnalysis) -> dict[str, Any]:
    stage, collapse = res.stage, res.collapse
    stage_failed, collapse_failed = isinstance(stage, Failure), isinstance(collapse, Failure)
    return {"plateau_step": None if stage is None or stage_failed else stage.step,
            "plateau_range": None if stage is None or stage_failed else _list(stage.range),
            "stage_reason": None if stage is None else (stage.error if stage_failed else stage.reason) or None,
            "collapse": {"verdict": None if collapse is None or collapse_failed else collapse.verdict,
                         "projected_floor_step": None if collapse is None or collapse_failed
                         else collapse.projected_floor_step,
                         "message": None if collapse is None
                         else (collapse.error if collapse_failed else collapse.message) or None}}


def _list(v: tuple | None) -> list | None:
    return None if v is None else list(v)


def _fit_backtest(row: Mapping[str, Any] | None, why: str | None) -> dict[str, Any]:
    if row is not None:
        return {"cutoff": DEFAULT_CUTOFF, "method": row["method"], "predicted_final": row["predicted_final"],
                "interval": row["interval"], "observed_final": row["observed_final"], "error": row["error"],
                "covered": row["covered"], "reason": None}
    return {"cutoff": DEFAULT_CUTOFF, "error": None, "reason": why or "run not analysed"}


def backtest_payload(store: Store, results: Sequence[RunAnalysis] | Sequence[NamedRun],
                     cutoffs: Sequence[float] | None = None, cross: CrossRun | None = None) -> dict[str, Any]:
    """A view of the replay. Per cutoff (10, 20, 30, 50% by default; any fraction on request) and finished
    run: the headline's forecast of the final score from the run cut there vs what happened, with every
    method's; then MAE/RMSE/coverage per method and for the headline. The top level holds the 30% cutoff (or
    the first one asked for) as before; ``cutoffs`` holds them all. Grid fractions are read as stored
    (``cross``, and of each run only its id and name are read: ``NamedRun``); another fraction is replayed
    on request, in memory, from the runs' analyses."""
    cutoffs = list(cutoffs or CUTOFFS)
    for c in cutoffs:
        if not 0.05 <= c <= 0.95:
            raise AnalysisError(f"--cutoff must be a fraction between 0.05 and 0.95, got {c}")
    if any(_on_grid(c) for c in cutoffs) and cross is None:
        cross = current_cross_run(store, [int(r.run_id) for r in results], results)
    docs = [_stored_doc(results, c, cross) if _on_grid(c)
            else _cutoff_doc(backtest_at(results, c, _computed(store, results, c))) for c in cutoffs]
    top = next((d for d in docs if abs(d["cutoff"] - DEFAULT_CUTOFF) < 1e-9), docs[0])
    return {**top, "cutoffs": docs}


def _on_grid(c: float) -> bool:
    return any(abs(c - g) < 1e-9 for g in GRID)


class NamedRun(Protocol):
    """What the stored replay's view reads of a run: its id and name (a ``RunAnalysis``, or a page's
    ``dashboard.data.RunRef`` read from the runs table)."""

    run_id: int
    run: str


def _stored_doc(results: Sequence[NamedRun], cutoff: float, cross: CrossRun) -> dict[str, Any]:
    """The replay at a grid fraction, for ``results``' runs, from the stored rows (nothing refitted)."""
    key = f"{cutoff:g}"
    rows, skipped = [], []
    for res in results:
        mine = cross.rows.get(int(res.run_id)) or {}
        if key in (mine.get("replay") or {}):
            rows.append(mine["replay"][key])
        else:
            skipped.append({"run": res.run, "run_id": res.run_id,
                            "reason": (mine.get("skipped") or {}).get(key) or "not analysed"})
    summary = summary_of_rows(rows, cutoff)
    return {"cutoff": cutoff, "runs": rows, "skipped": skipped,
            "summary": None if summary is None else _summary(summary.to_dict())}


def _computed(store: Store, results: Sequence[RunAnalysis], cutoff: float) -> dict[int, Backtest | Failure]:
    """Replays at a fraction that is not on the grid, computed in memory (on request)."""
    from analysis.run import backtest_of, replay_end, warmup_mode

    out = {}
    for res in results:
        if not res.finished or res.entropy_key is None or not res.range:
            continue
        h, r = run_series(store, res)
        out[int(res.run_id)] = part(Backtest, backtest_of(h, r, cutoff, MetricRange.from_dict(res.range),
                                                          warmup_mode(res), replay_end(res.planned_steps, res.last_step)))
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


def scaling_payload(store: Store, results: Sequence[RunAnalysis], group: str | None = None) -> dict[str, Any]:
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
