"""Forecasts across runs: the headline each run shows, its calibrated interval and its track record.

Every run's own analysis (``analysis.run``) holds each method's forecast at the backtest cutoffs (finished
runs) or to its planned end (runs in progress). Which method to trust, and how wide its interval must be, can
only be learned from runs that already finished; this module does that on read, from the stored results, so
the headline always reflects the store as it is now (and nothing is written):

* ``backtest_at(results, cutoff)`` — the table of finished runs at one cutoff, with the cross-run model's
  leave-one-run-out forecasts added as one more method (``models.crossrun``), the headline of every run chosen
  without it (``models.selection``), every method's own leave-one-run-out interval, and the summary;
* ``live_forecasts(results)`` — for each run in progress with a known planned length: the headline at the
  planned end, chosen and calibrated on the finished runs at the backtest cutoff nearest to how far the run
  is, with that method's track record there (MAE, how many runs, coverage of its interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models import crossrun, selection
from models.backtest import CUTOFFS
from models.errors import FitError
from models.forecast import METHODS, forecast
from models.metric_range import MetricRange

CROSS_RUN = "cross_run"
#: degenerate runs that teach nothing about forecasts (every method is right about a constant)
NOTHING_TO_FORECAST = ("constant", "too_few_evaluations")
ALL_METHODS = (*METHODS, CROSS_RUN)


@dataclass(frozen=True)
class CutoffBacktest:
    cutoff: float
    table: selection.Table | None
    headlines: tuple[selection.Headline, ...]
    intervals: np.ndarray  # N × M × 2, every method's own interval
    summary: selection.Summary | None
    skipped: tuple[dict[str, Any], ...]
    results: tuple[Mapping[str, Any], ...]  # the runs of the table, in its order

    def row(self, i: int) -> dict[str, Any]:
        """Run i's backtest as the --json documents show it."""
        h, t, res = self.headlines[i], self.table, self.results[i]
        bt = res["_bt"]
        obs = float(t.observed[i])
        methods = {}
        for k, m in enumerate(t.methods):
            p = t.predicted[i, k]
            if np.isfinite(p):
                lo, hi = self.intervals[i, k]
                methods[m] = {"predicted": float(p), "error": float(p - obs), "interval": [float(lo), float(hi)],
                              "covered": bool(lo <= obs <= hi)}
        return {"run": res["run"], "run_id": res["run_id"], "cutoff": self.cutoff, "method": h.method,
                "label": h.label, "weights": dict(h.weights),
                "predicted_final": h.predicted, "interval": list(h.interval), "observed_final": obs,
                "error": h.predicted - obs, "covered": bool(h.interval[0] <= obs <= h.interval[1]),
                "rule": h.rule, "pool": h.pool, "calibrated": h.calibrated,
                "cutoff_step": int(np.floor(bt["cutoff_step"])), "final_steps": bt["final_steps"],
                "n_evaluations_before_cutoff": bt["n_evaluations"], "n_pairs_before_cutoff": bt["n_evaluations"],
                "warmup_steps": bt["warmup_steps"], "baselines": methods,
                "ceiling": (res.get("law") or {}).get("ceiling"),
                "ceiling_interval": (res.get("law") or {}).get("ceiling_ci")}


def finished_with_backtest(results: Sequence[Mapping[str, Any]], cutoff: float,
                           backtests: Mapping[int, Mapping[str, Any]] | None = None
                           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs usable at ``cutoff`` with their backtest under ``_bt``, skipped runs with the reason).
    ``backtests`` (run id → backtest dict) replaces the stored ones (another cutoff, computed on request)."""
    usable, skipped = [], []
    key = f"{cutoff:g}"
    for r in results:
        if r.get("status") in ("skipped",) or r.get("entropy_key") is None:
            skipped.append({"run": r["run"], "run_id": r["run_id"], "reason": r.get("reason") or "not analysed"})
            continue
        if (r.get("degenerate") or {}).get("status") in NOTHING_TO_FORECAST:
            skipped.append({"run": r["run"], "run_id": r["run_id"], "reason": f"{r.get('reason')}: nothing to forecast"})
            continue
        if not r.get("finished"):
            skipped.append({"run": r["run"], "run_id": r["run_id"],
                            "reason": f"not finished ({r.get('progress')}): no final score to backtest against"})
            continue
        bt = (backtests or {}).get(r["run_id"]) if backtests is not None else (r.get("backtests") or {}).get(key)
        if not bt or "cause" in bt:
            skipped.append({"run": r["run"], "run_id": r["run_id"],
                            "reason": (bt or {}).get("error", f"no backtest at {cutoff:g}")})
            continue
        usable.append({**r, "_bt": bt})
    return usable, skipped


def _point(r: Mapping[str, Any], bt: Mapping[str, Any], observed: float = float("nan")) -> crossrun.RunPoint:
    lo, hi = _range(r)
    f = bt["features"]
    unit = max(float(f.get("spread") or 0.0), float(bt.get("noise_sd") or 0.0), 1e-9)
    return crossrun.RunPoint(features=f, level=float(bt["level"]), lo=lo, hi=hi, unit=unit, observed=observed)


def _range(r: Mapping[str, Any]) -> tuple[float, float]:
    rng = r.get("range") or {}
    lo, hi = rng.get("lo"), rng.get("hi")
    return (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))


def _rows(bt: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per method (``METHODS`` order): prediction, scale, rolling-origin MAE; NaN where missing (stored
    results hold None for a number that was not finite)."""
    m = bt["methods"]

    def col(field: str) -> np.ndarray:
        return np.array([np.nan if m.get(k, {}).get(field) is None else m[k][field] for k in METHODS], dtype=float)

    return col("predicted"), col("scale"), col("rolling_mae")


def build_table(usable: Sequence[Mapping[str, Any]]) -> selection.Table:
    """Finished runs × (methods + cross_run) at one cutoff; cross_run leave-one-run-out."""
    rows = [_rows(r["_bt"]) for r in usable]
    obs = np.array([r["_bt"]["observed_final"] for r in usable], dtype=float)
    groups = tuple(r.get("project") for r in usable)
    points = [_point(r, r["_bt"], o) for r, o in zip(usable, obs, strict=True)]
    cr_pred, cr_scale = crossrun.loro(points, groups)
    bounds = np.array([_range(r) for r in usable]).reshape(-1, 2)
    cr_pred = np.clip(cr_pred, bounds[:, 0], bounds[:, 1])
    pred = np.column_stack([np.array([p for p, _, _ in rows]).reshape(len(rows), -1), cr_pred])
    scale = np.column_stack([np.array([s for _, s, _ in rows]).reshape(len(rows), -1), cr_scale])
    roll = np.column_stack([np.array([x for _, _, x in rows]).reshape(len(rows), -1), np.full(len(rows), np.nan)])
    return selection.Table(tuple(int(r["run_id"]) for r in usable), groups, ALL_METHODS, pred, scale, roll, obs,
                           bounds[:, 0], bounds[:, 1])


def backtest_at(results: Sequence[Mapping[str, Any]], cutoff: float,
                backtests: Mapping[int, Mapping[str, Any]] | None = None) -> CutoffBacktest:
    usable, skipped = finished_with_backtest(results, cutoff, backtests)
    if not usable:
        return CutoffBacktest(cutoff, None, (), np.empty((0, len(ALL_METHODS), 2)), None, tuple(skipped), ())
    table = build_table(usable)
    heads = selection.loro_headlines(table)
    summary = selection.summarise(table, heads, cutoff)
    return CutoffBacktest(cutoff, table, tuple(heads), selection.method_intervals(table), summary, tuple(skipped),
                          tuple(usable))


def nearest_cutoff(fraction: float, cutoffs: Sequence[float] = CUTOFFS) -> float:
    return min(cutoffs, key=lambda c: (abs(c - fraction), -c))


def live_forecasts(results: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The headline forecast of every run in progress with a known planned length (module docstring)."""
    live = [r for r in results if isinstance(r.get("live"), Mapping) and "cause" not in r["live"]]
    if not live:
        return {}
    tables: dict[float, CutoffBacktest] = {}
    out = {}
    for r in live:
        lv = r["live"]
        c = nearest_cutoff(float(lv["fraction_done"]))
        if c not in tables:
            tables[c] = backtest_at(results, c)
        bt = tables[c]
        pred, scale, roll = _rows(lv)
        lo, hi = _range(r)
        if bt.table is None:  # no finished run at all: the within-run choice, uncalibrated
            table = selection.Table((), (), ALL_METHODS, np.empty((0, len(ALL_METHODS))),
                                    np.empty((0, len(ALL_METHODS))), np.empty((0, len(ALL_METHODS))), np.empty(0),
                                    np.empty(0), np.empty(0))
            pool: list[int] = []
            pred, scale, roll = np.append(pred, np.nan), np.append(scale, np.nan), np.append(roll, np.nan)
        else:
            table = bt.table
            pool = selection.pool_of(None, table, r.get("project"))
            cr, cs = _cross_run_live(bt, r, lv, pool)
            pred, scale, roll = np.append(pred, cr), np.append(scale, cs), np.append(roll, np.nan)
        head = selection.headline_of(table, pred, scale, roll, lo, hi, pool)
        score = bt.summary.scores.get(head.method) if bt.summary else None
        out[int(r["run_id"])] = {
            "horizon_step": int(lv["horizon_step"]), "from_step": int(lv["from_step"]),
            "fraction_done": float(lv["fraction_done"]), "predicted_final": head.predicted,
            "interval": list(head.interval), "method": head.method, "label": head.label,
            "weights": dict(head.weights), "rule": head.rule,
            "backtest_cutoff": c, "backtest_mae": head.pool_mae if head.rule == "finished runs" else None,
            "backtest_n": head.pool, "coverage": score.coverage if score and head.rule == "finished runs" else None,
            "calibrated": head.calibrated,
            "methods": {m: float(p) for m, p in zip(ALL_METHODS, pred, strict=True) if np.isfinite(p)},
        }
    return out


def _cross_run_live(bt: CutoffBacktest, r: Mapping[str, Any], lv: Mapping[str, Any],
                    pool: list[int]) -> tuple[float, float]:
    if len(pool) < crossrun.MIN_TRAIN_RUNS:
        return float("nan"), float("nan")
    model = crossrun.fit([_point(bt.results[j], bt.results[j]["_bt"], float(bt.table.observed[j])) for j in pool])
    lo, hi = _range(r)
    return float(np.clip(model.predict(_point(r, lv)), lo, hi)), model.rmse


def headline_path(h: pd.Series, r: pd.Series, *, cutoff_step: float, end_step: float, rng: MetricRange,
                  warmup: str | int, weights: Mapping[str, float], final: float,
                  interval: Sequence[float], n: int = 60) -> dict[str, np.ndarray] | None:
    """The headline forecast as a path from the cutoff to ``end_step``, for figures: the weighted mean of the
    methods' paths (the cross-run model forecasts only the final score, so the path is shifted to end at the
    headline ``final``), with a band that is the calibrated interval at the end and narrows toward the cutoff
    as the square root of the steps ahead. None when the forecast cannot be made."""
    steps = np.linspace(cutoff_step, end_step, n)
    try:
        fc = forecast(h.index.to_numpy(), h.to_numpy(), r.index.to_numpy(), r.to_numpy(), cutoff_step=cutoff_step,
                      target_steps=steps, rng=rng, warmup=warmup)
    except FitError:
        return None
    w = {m: x for m, x in weights.items() if m in fc.methods}
    if not w:
        return None
    total = sum(w.values())
    path = sum(x / total * fc.methods[m].path for m, x in w.items())
    span = max(end_step - cutoff_step, 1e-9)
    ramp = (steps - cutoff_step) / span
    path = np.asarray(rng.clip(path + (final - path[-1]) * ramp))
    lo, hi = interval
    grow = np.sqrt(ramp)
    return {"steps": steps, "path": path, "lo": np.asarray(rng.clip(path - (final - lo) * grow)),
            "hi": np.asarray(rng.clip(path + (hi - final) * grow))}
