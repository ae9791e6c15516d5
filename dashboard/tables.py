"""Tables the pages show, built from stored analysis results and store frames (pure: no Streamlit, no store).

Strings from runs (names, tags) stay plain text: the pages show these frames with ``st.dataframe``,
which never interprets markup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.results import Collapse, Failure, RunAnalysis, Stage
from db.values import finite_number
from models.intervals import Z95

HIDDEN_TAG_PREFIXES = ("mlflow.",)


def _arrow(first: float | None, last: float | None) -> str:
    if first is None or last is None:
        return "–"
    return f"{first:.3f} → {last:.3f}"


def tag_list(tags: Mapping[str, Any] | None) -> list[str]:
    """``key=value`` strings of a run's tags, MLflow's own ``mlflow.*`` tags left out."""
    return [f"{k}={v}" for k, v in sorted((tags or {}).items()) if not str(k).startswith(HIDDEN_TAG_PREFIXES)]


def stage_text(stage: Stage | Failure | None) -> str:
    """``plateau from step S [lo–hi]`` for a clear switch, else why there is none."""
    if stage is None:
        return "–"
    if isinstance(stage, Failure):
        return f"n/a ({stage.cause})"
    if stage.clear and stage.step is not None:
        lo, hi = stage.range or (stage.step, stage.step)
        return f"plateau from step {stage.step} [{lo}–{hi}]"
    return "rising / no clear switch"


def collapse_text(collapse: Collapse | Failure | None) -> str:
    if collapse is None:
        return "–"
    if isinstance(collapse, Failure):
        return f"n/a ({collapse.cause})"
    verdict = str(collapse.verdict)
    proj = finite_number(collapse.projected_floor_step)
    return f"{verdict} (floor at step {proj:.0f})" if proj is not None and collapse.alarm else verdict


def backtest_of(fit: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The backtest at ``DEFAULT_CUTOFF`` (30%) of a run's ``fit --json`` row when it could be made, else None."""
    bt = (fit or {}).get("backtest")
    return bt if isinstance(bt, Mapping) and bt.get("error") is not None else None


def backtest_text(fit: Mapping[str, Any] | None) -> str:
    """The run's track record in words: the headline's backtest error at ``DEFAULT_CUTOFF``, or why there is none."""
    bt = (fit or {}).get("backtest")
    if not bt:
        return "no backtest yet"
    if bt.get("error") is None:
        return f"no backtest: {bt.get('reason')}"
    return (f"{bt['error']:+.4f} (headline from the first {bt['cutoff']:.0%}: predicted {bt['predicted_final']:.4f}, "
            f"observed {bt['observed_final']:.4f})")


def runs_table(results: Sequence[RunAnalysis], runs: pd.DataFrame | None = None,
               fits: Mapping[int, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per analysed run: metadata, state, H first→last, R best/last, a, b, ceiling ± CI (bounded to the
    metric's range), headroom, warm-up excluded, stage, collapse, the live forecast at the planned end with
    its interval and track record, and the backtest error (the ceiling's track record)."""
    meta = runs.set_index("id") if runs is not None and not runs.empty else None
    fits = fits or {}
    rows = []
    for r in results:
        law = r.law
        info = meta.loc[r.run_id] if meta is not None and r.run_id in meta.index else None
        fit = fits.get(int(r.run_id))
        bt = backtest_of(fit)
        fc = (fit or {}).get("forecast") or {}
        ci = (law.ceiling_hi - law.ceiling_lo) / 2 if law and finite_number(law.ceiling_hi) is not None \
            and finite_number(law.ceiling_lo) is not None else None
        rows.append({
            "id": int(r.run_id),
            "run": str(r.run),
            "state": r.progress or "–",
            "project": None if info is None else info.get("project"),
            "model": None if info is None else info.get("model"),
            "algorithm": None if info is None else info.get("algorithm"),
            "tags": "" if info is None else ", ".join(tag_list(info.get("tags"))),
            "steps": r.last_step,
            "H first→last": _arrow(r.entropy_first, r.entropy_last),
            "R best": finite_number(r.best_performance),
            "R last": finite_number(r.last_performance),
            "a": None if law is None else finite_number(law.a),
            "b": None if law is None else finite_number(law.b),
            "ceiling": None if law is None else finite_number(law.ceiling),
            "± (95% CI)": ci,
            "fit": "" if law is None else law.weak or "ok",
            "headroom": finite_number(r.headroom),
            "R²": None if law is None else finite_number(law.r2),
            "n pairs": None if law is None else law.n,
            "warm-up excluded": len(r.excluded_steps or ()),
            "benchmarks": len(r.benchmarks),
            "forecast": finite_number(fc.get("predicted_final")),
            "forecast interval": (f"{fc['interval'][0]:.3f}–{fc['interval'][1]:.3f}" if fc else ""),
            "forecast method": fc.get("label", ""),
            "forecast backtest MAE": finite_number(fc.get("backtest_mae")),
            "forecast track record": ((fc.get("track_record") or {}).get("sentence")
                                      or ("no finished run replayed yet" if fc else "")),
            "stage": stage_text(r.stage),
            "collapse": collapse_text(r.collapse),
            "backtest error": finite_number(bt["error"]) if bt else None,
            "backtest": backtest_text(fit),
            "status": "ok" if r.status == "ok" else f"{r.status}: {r.reason}",
        })
    return pd.DataFrame(rows)


def ceiling_lift_table(results: Sequence[RunAnalysis], baseline_id: int,
                       fits: Mapping[int, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Ceiling of each fitted run minus the baseline run's, with a 95% interval for the difference.

    The two fits are independent, so se(lift) = √(se_run² + se_base²); the interval uses the normal quantile
    (each ceiling's own t interval is wider for very small n — the table shows n)."""
    fitted = {int(r.run_id): r for r in results if r.law is not None}
    if baseline_id not in fitted:
        raise KeyError(f"run {baseline_id} has no fitted law to compare against")
    base = fitted[baseline_id].law
    rows = []
    for run_id, r in fitted.items():
        law = r.law
        lift = law.ceiling - base.ceiling
        se = math.hypot(law.ceiling_se or 0.0, base.ceiling_se or 0.0)
        fit = (fits or {}).get(run_id)
        bt = backtest_of(fit)
        rows.append({"id": run_id, "run": str(r.run), "state": r.progress or "–",
                     "baseline": run_id == baseline_id,
                     "ceiling": law.ceiling, "ceiling_lo": law.ceiling_lo, "ceiling_hi": law.ceiling_hi,
                     "lift": lift, "lift_lo": lift - Z95 * se, "lift_hi": lift + Z95 * se,
                     "lift clear of 0": bool(run_id != baseline_id and (lift - Z95 * se > 0 or lift + Z95 * se < 0)),
                     "n pairs": law.n, "backtest error": finite_number(bt["error"]) if bt else None,
                     "backtest": backtest_text(fit)})
    return pd.DataFrame(rows)


def coefficients_table(results: Sequence[RunAnalysis], runs: pd.DataFrame | None,
                       sizes: Mapping[int, float | None],
                       fits: Mapping[int, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """a, b, ceiling (with standard errors and interval), model size and backtest error per fitted run."""
    meta = runs.set_index("id") if runs is not None and not runs.empty else None
    rows = []
    for r in results:
        law = r.law
        if law is None:
            continue
        info = meta.loc[r.run_id] if meta is not None and r.run_id in meta.index else None
        fit = (fits or {}).get(int(r.run_id))
        bt = backtest_of(fit)
        rows.append({"id": int(r.run_id), "run": str(r.run), "state": r.progress or "–",
                     "model": None if info is None else info.get("model"),
                     "algorithm": None if info is None else info.get("algorithm"),
                     "size (B)": sizes.get(int(r.run_id)),
                     "a": law.a, "a se": law.a_se, "b": law.b, "b se": law.b_se,
                     "ceiling": law.ceiling, "ceiling_lo": law.ceiling_lo, "ceiling_hi": law.ceiling_hi,
                     "R²": law.r2, "n pairs": law.n,
                     "backtest error": finite_number(bt["error"]) if bt else None, "backtest": backtest_text(fit)})
    return pd.DataFrame(rows)


def baselines_table(row: Mapping[str, Any]) -> pd.DataFrame:
    """The headline and every method of one run's backtest row: predicted final, interval, error, covered, and
    the headline's weight on each method."""
    obs = row["observed_final"]
    rows = [{"method": "headline (" + str(row.get("label", "stacked")) + ")", "weight": None,
             "predicted": row["predicted_final"], "interval lo": row["interval"][0], "interval hi": row["interval"][1],
             "observed": obs, "error": row["error"], "covered": bool(row["covered"])}]
    for name, m in (row.get("baselines") or {}).items():
        lo, hi = (m.get("interval") or [None, None])[:2]
        rows.append({"method": name, "weight": (row.get("weights") or {}).get(name, 0.0),
                     "predicted": m.get("predicted"), "interval lo": lo, "interval hi": hi, "observed": obs,
                     "error": m.get("error"), "covered": bool(m.get("covered"))})
    return pd.DataFrame(rows)


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, Mapping | list):
        return json.dumps(v, default=str, sort_keys=True)
    return str(v)


SOURCE_COLUMNS = ["id", "kind", "uri", "options", "runs", "syncs", "points written by syncs", "last sync",
                  "status", "points last sync", "error"]


def sources_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per configured source (``Store.source_summary``: the runs table and the sync log, never the points):
    kind, uri, options, runs, syncs, the points its syncs wrote (new or changed points, so a rewrite of a
    point counts again), and its last sync (time, status, points, error)."""
    rows = []
    for s in summary.itertuples(index=False):
        synced = isinstance(s.last_status, str)
        rows.append({"id": int(s.id), "kind": s.kind, "uri": s.uri, "options": _text(s.options),
                     "runs": int(s.runs), "syncs": int(s.syncs), "points written by syncs": int(s.points_written),
                     "last sync": _text(s.last_ended_at) or _text(s.last_started_at) if synced else None,
                     "status": s.last_status if synced else "never synced",
                     "points last sync": int(s.last_points or 0) if synced else None,
                     "error": _text(s.last_error) if synced else ""})
    return pd.DataFrame(rows, columns=SOURCE_COLUMNS)


def sync_log_table(log: pd.DataFrame) -> pd.DataFrame:
    if log.empty:
        return pd.DataFrame(columns=["id", "source", "started", "ended", "status", "runs", "points", "error"])
    return pd.DataFrame({
        "id": log["id"].astype(int), "source": [f"{k} {u}" if k else "–" for k, u in zip(log["kind"], log["uri"], strict=True)],
        "started": log["started_at"].map(_text), "ended": log["ended_at"].map(_text), "status": log["status"],
        "runs": log["runs"], "points": log["points"], "error": log["error"].map(_text)})
