"""Forecasts across runs: the headline each run shows, its calibrated interval and its track record.

Every run's own analysis (``analysis.run``) holds each method's forecast from its replay (finished runs: cut
at every fraction of ``models.backtest.GRID`` and sent down the live path) or to its planned end (runs in
progress). Which method to trust, and how wide its interval must be, can only be learned from runs that
already finished:

* ``backtest_at(results, f)`` — the replay at fraction f: the table of finished runs, with the cross-run
  model's leave-one-run-out forecasts added as one more method (``models.crossrun``), the headline of every
  run chosen without it (``models.selection``), every method's own leave-one-run-out interval, the summary;
* ``live_forecasts(results, replays)`` — for each run in progress with a known planned length, at its own
  fraction φ done: the cross-run model trained on the finished runs replayed at the grid fractions around φ
  (so its features span φ), the headline and its interval chosen on each of those two replays and
  interpolated at φ, and the track record quoted beside it — the replay's headline MAE and coverage,
  interpolated at φ (``track_at``);
* ``cross_run(results)`` — all of it at once, as stored at write time (``analysis.pipeline``): per run its
  rows (replay rows or live forecast) and, per grid fraction, the replay's summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import Backtest, Failure, Forecast, RunAnalysis
from models import crossrun, selection
from models.backtest import GRID, bracket
from models.errors import FitError
from models.forecast import METHODS, forecast
from models.metric_range import MetricRange

CROSS_RUN = "cross_run"
#: degenerate runs that teach nothing about forecasts (every method is right about a constant)
NOTHING_TO_FORECAST = ("constant", "too_few_evaluations")
ALL_METHODS = (*METHODS, CROSS_RUN)


@dataclass(frozen=True)
class Replayed:
    """A finished run usable at one cutoff: its analysis and its replay (backtest) at that cutoff."""

    result: RunAnalysis
    backtest: Backtest


@dataclass(frozen=True)
class CutoffBacktest:
    cutoff: float
    table: selection.Table | None
    headlines: tuple[selection.Headline, ...]
    intervals: np.ndarray  # N × M × 2, every method's own interval
    summary: selection.Summary | None
    skipped: tuple[dict[str, Any], ...]
    replayed: tuple[Replayed, ...]  # the runs of the table, in its order

    def row(self, i: int) -> dict[str, Any]:
        """Run i's backtest as the --json documents show it."""
        h, t = self.headlines[i], self.table
        res, bt = self.replayed[i].result, self.replayed[i].backtest
        obs = float(t.observed[i])
        methods = {}
        for k, m in enumerate(t.methods):
            p = t.predicted[i, k]
            if np.isfinite(p):
                lo, hi = self.intervals[i, k]
                methods[m] = {"predicted": float(p), "error": float(p - obs), "interval": [float(lo), float(hi)],
                              "covered": bool(lo <= obs <= hi)}
        return {"run": res.run, "run_id": res.run_id, "cutoff": self.cutoff, "method": h.method,
                "label": h.label, "weights": dict(h.weights),
                "predicted_final": h.predicted, "interval": list(h.interval), "observed_final": obs,
                "error": h.predicted - obs, "covered": bool(h.interval[0] <= obs <= h.interval[1]),
                "rule": h.rule, "pool": h.pool, "calibrated": h.calibrated, "excluded": dict(h.excluded or {}),
                "cutoff_step": int(np.floor(bt.cutoff_step)), "final_steps": list(bt.final_steps),
                "planned_end_step": bt.horizon_step, "fraction_done": bt.fraction_done,
                "n_evaluations_before_cutoff": bt.n_evaluations, "n_pairs_before_cutoff": bt.n_evaluations,
                "warmup_steps": list(bt.warmup_steps), "baselines": methods,
                "ceiling": None if res.law is None else res.law.ceiling,
                "ceiling_interval": None if res.law is None else list(res.law.ceiling_ci)}


def finished_with_backtest(results: Sequence[RunAnalysis], cutoff: float,
                           backtests: Mapping[int, Backtest | Failure] | None = None
                           ) -> tuple[list[Replayed], list[dict[str, Any]]]:
    """(runs usable at ``cutoff``, each with its backtest there; skipped runs with the reason).
    ``backtests`` (run id → backtest) replaces the stored ones (another cutoff, computed on request)."""
    usable, skipped = [], []
    key = f"{cutoff:g}"
    for r in results:
        if r.status == "skipped" or r.entropy_key is None:
            skipped.append({"run": r.run, "run_id": r.run_id, "reason": r.reason or "not analysed"})
            continue
        if (r.degenerate or {}).get("status") in NOTHING_TO_FORECAST:
            skipped.append({"run": r.run, "run_id": r.run_id, "reason": f"{r.reason}: nothing to forecast"})
            continue
        if not r.finished:
            skipped.append({"run": r.run, "run_id": r.run_id,
                            "reason": f"not finished ({r.progress}): no final score to backtest against"})
            continue
        bt = backtests.get(r.run_id) if backtests is not None else r.backtests.get(key)
        if not isinstance(bt, Backtest):
            skipped.append({"run": r.run, "run_id": r.run_id,
                            "reason": bt.error if isinstance(bt, Failure) else f"no backtest at {cutoff:g}"})
            continue
        usable.append(Replayed(r, bt))
    return usable, skipped


def _point(r: RunAnalysis, bt: Forecast, observed: float = float("nan")) -> crossrun.RunPoint:
    lo, hi = _range(r)
    f = bt.features
    unit = max(float(f.get("spread") or 0.0), float(bt.noise_sd or 0.0), 1e-9)
    return crossrun.RunPoint(features=f, level=float(bt.level), lo=lo, hi=hi, unit=unit, observed=observed)


def _range(r: RunAnalysis) -> tuple[float, float]:
    rng = r.range or {}
    lo, hi = rng.get("lo"), rng.get("hi")
    return (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))


def _rows(bt: Forecast) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per method (``METHODS`` order): prediction, scale, rolling-origin MAE; NaN where missing (stored
    results hold None for a number that was not finite)."""
    m = bt.methods

    def col(field: str) -> np.ndarray:
        return np.array([np.nan if m.get(k, {}).get(field) is None else m[k][field] for k in METHODS], dtype=float)

    return col("predicted"), col("scale"), col("rolling_mae")


def build_table(usable: Sequence[Replayed]) -> selection.Table:
    """Finished runs × (methods + cross_run) at one cutoff; cross_run leave-one-run-out."""
    rows = [_rows(u.backtest) for u in usable]
    obs = np.array([u.backtest.observed_final for u in usable], dtype=float)
    groups = tuple(u.result.project for u in usable)
    points = [_point(u.result, u.backtest, o) for u, o in zip(usable, obs, strict=True)]
    cr_pred, cr_scale = crossrun.loro(points, groups)
    bounds = np.array([_range(u.result) for u in usable]).reshape(-1, 2)
    cr_pred = np.clip(cr_pred, bounds[:, 0], bounds[:, 1])
    pred = np.column_stack([np.array([p for p, _, _ in rows]).reshape(len(rows), -1), cr_pred])
    scale = np.column_stack([np.array([s for _, s, _ in rows]).reshape(len(rows), -1), cr_scale])
    roll = np.column_stack([np.array([x for _, _, x in rows]).reshape(len(rows), -1), np.full(len(rows), np.nan)])
    weak = np.array([bool(u.backtest.weak_law) for u in usable], dtype=bool)
    return selection.Table(tuple(int(u.result.run_id) for u in usable), groups, ALL_METHODS, pred, scale, roll, obs,
                           bounds[:, 0], bounds[:, 1], weak)


def backtest_at(results: Sequence[RunAnalysis], cutoff: float,
                backtests: Mapping[int, Backtest | Failure] | None = None) -> CutoffBacktest:
    usable, skipped = finished_with_backtest(results, cutoff, backtests)
    if not usable:
        return CutoffBacktest(cutoff, None, (), np.empty((0, len(ALL_METHODS), 2)), None, tuple(skipped), ())
    table = build_table(usable)
    heads = selection.loro_headlines(table)
    summary = selection.summarise(table, heads, cutoff)
    return CutoffBacktest(cutoff, table, tuple(heads), selection.method_intervals(table), summary, tuple(skipped),
                          tuple(usable))


def replays(results: Sequence[RunAnalysis], fractions: Sequence[float] = GRID) -> dict[float, CutoffBacktest]:
    """The replay at every grid fraction."""
    return {f: backtest_at(results, f) for f in fractions}


def summary_of_rows(rows: Sequence[Mapping[str, Any]], cutoff: float) -> selection.Summary | None:
    """The replay's summary at one fraction from its rows (``CutoffBacktest.row``): the same numbers over
    any subset of runs (one experiment), without refitting anything."""
    if not rows:
        return None
    errors = {"headline": np.array([r["error"] for r in rows], dtype=float)}
    covered = {"headline": [bool(r["covered"]) for r in rows]}
    for m in ALL_METHODS:
        mine = [r["baselines"][m] for r in rows if m in r["baselines"]]
        if mine:
            errors[m] = np.array([b["error"] for b in mine], dtype=float)
            covered[m] = [bool(b["covered"]) for b in mine]
    tops = [max(r["weights"], key=r["weights"].get) for r in rows]
    return selection.summary_from(errors, covered, ALL_METHODS, tops, len(rows), cutoff)


def track_at(track: Mapping[str, Mapping[str, Any]], fraction: float) -> dict[str, Any] | None:
    """The replay's track record at ``fraction`` (interpolated between the grid fractions around it; the
    nearest end of the grid outside it): headline and per-method MAE and coverage, how many finished runs."""
    lo, hi, t = bracket(fraction)
    a, b = track.get(f"{lo:g}"), track.get(f"{hi:g}")
    if not a or not b:
        return None

    def mix(x: float | None, y: float | None) -> float | None:
        if x is None or y is None:
            return x if y is None else y
        return float((1 - t) * x + t * y)

    methods = {}
    for m in a["scores"]:
        if m in b["scores"]:
            sa, sb = a["scores"][m], b["scores"][m]
            methods[m] = {"mae": mix(sa["mae"], sb["mae"]), "coverage": mix(sa["coverage"], sb["coverage"])}
    head = methods.get("headline") or {}
    n = int(round((1 - t) * a["n_runs"] + t * b["n_runs"]))
    clamped = not (GRID[0] - 1e-9 <= fraction <= GRID[-1] + 1e-9)
    at = min(max(fraction, GRID[0]), GRID[-1])
    where = f"{at:.0%}" + (f" (the replayed fraction nearest {fraction:.0%})" if clamped else "")
    cov = "–" if head.get("coverage") is None else f"{head['coverage']:.0%}"
    sentence = (f"replayed on {n} finished run{'s' if n != 1 else ''} at {where}: MAE {100 * head['mae']:.2f} pt, "
                f"coverage {cov}") if head.get("mae") is not None else None
    return {"fraction": float(fraction), "grid": [lo, hi], "n": n, "mae": head.get("mae"),
            "coverage": head.get("coverage"), "methods": methods, "sentence": sentence}


def track_record(reps: Mapping[float, CutoffBacktest]) -> dict[str, dict[str, Any]]:
    """Per grid fraction, the replay's summary (as stored)."""
    return {f"{f:g}": bt.summary.to_dict() for f, bt in reps.items() if bt.summary is not None}


def live_forecasts(results: Sequence[RunAnalysis], reps: Mapping[float, CutoffBacktest] | None = None,
                   track: Mapping[str, Mapping[str, Any]] | None = None) -> dict[int, dict[str, Any]]:
    """The headline forecast of every run in progress with a known planned length (module docstring)."""
    live = [r for r in results if isinstance(r.forecast, Forecast)]
    if not live:
        return {}
    reps = dict(reps or {})
    out = {}
    for r in live:
        lv = r.forecast
        frac = float(lv.fraction_done)
        f_lo, f_hi, t = bracket(frac)
        for f in (f_lo, f_hi):
            if f not in reps:
                reps[f] = backtest_at(results, f)
        tr = track if track is not None else track_record({f: reps[f] for f in (f_lo, f_hi)})
        pred, scale, roll = _rows(lv)
        cr, cs, dropped = _cross_run_live([reps[f_lo], reps[f_hi]], r, lv)
        pred, scale, roll = np.append(pred, cr), np.append(scale, cs), np.append(roll, np.nan)
        heads = [_live_headline(reps[f], r, pred, scale, roll) for f in (f_lo, f_hi)]
        h0, h1 = heads
        weights = {m: (1 - t) * h0.weights.get(m, 0.0) + t * h1.weights.get(m, 0.0)
                   for m in dict.fromkeys([*h0.weights, *h1.weights])}
        weights = {m: w for m, w in weights.items() if w > 0}
        value = (1 - t) * h0.predicted + t * h1.predicted
        interval = [(1 - t) * h0.interval[0] + t * h1.interval[0], (1 - t) * h0.interval[1] + t * h1.interval[1]]
        rec = track_at(tr, frac) if tr else None
        rule = h0.rule if h0.rule == h1.rule else f"{h0.rule} / {h1.rule}"
        finished_rule = h0.rule == "finished runs" and h1.rule == "finished runs"
        out[int(r.run_id)] = {
            "horizon_step": int(lv.horizon_step), "from_step": int(lv.from_step),
            "fraction_done": frac, "predicted_final": float(value), "interval": interval, "method": "stacked",
            "label": label_of(weights), "weights": weights, "rule": rule,
            "backtest_cutoff": frac, "backtest_mae": rec["mae"] if rec and finished_rule else None,
            "backtest_n": rec["n"] if rec else 0,
            "coverage": rec["coverage"] if rec and finished_rule else None,
            "calibrated": h0.calibrated and h1.calibrated, "track_record": rec if finished_rule else None,
            "trained_at": [f_lo, f_hi], "excluded": {**(h0.excluded or {}), **(h1.excluded or {})},
            "cross_run_dropped": list(dropped),
            "methods": {m: float(p) for m, p in zip(ALL_METHODS, pred, strict=True) if np.isfinite(p)},
        }
    return out


def label_of(weights: Mapping[str, float]) -> str:
    """"stacked: law 52%, saturating 30%, …" (the largest weights first)."""
    top = sorted(weights.items(), key=lambda kv: -kv[1])
    return "stacked: " + ", ".join(f"{m} {w:.0%}" for m, w in top if w >= 0.005)


def _empty_table() -> selection.Table:
    e = np.empty((0, len(ALL_METHODS)))
    return selection.Table((), (), ALL_METHODS, e, e, e, np.empty(0), np.empty(0), np.empty(0))


def _live_headline(bt: CutoffBacktest, r: RunAnalysis, pred: np.ndarray, scale: np.ndarray,
                   roll: np.ndarray) -> selection.Headline:
    lo, hi = _range(r)
    weak = bool(r.forecast.weak_law)
    if bt.table is None:  # no finished run at all: the within-run choice, uncalibrated
        return selection.headline_of(_empty_table(), pred, scale, roll, lo, hi, [], weak)
    pool = selection.pool_of(None, bt.table, r.project)
    return selection.headline_of(bt.table, pred, scale, roll, lo, hi, pool, weak)


def _cross_run_live(bts: Sequence[CutoffBacktest], r: RunAnalysis,
                    lv: Forecast) -> tuple[float, float, tuple[str, ...]]:
    """The cross-run model of a live run, trained on the finished runs replayed at the grid fractions around
    its own (the pool of its experiment when it has enough runs)."""
    points, runs = [], set()
    for bt in bts:
        if bt.table is None:
            continue
        pool = selection.pool_of(None, bt.table, r.project)
        points += [_point(bt.replayed[j].result, bt.replayed[j].backtest, float(bt.table.observed[j])) for j in pool]
        runs |= {bt.table.runs[j] for j in pool}
    if len(runs) < crossrun.MIN_TRAIN_RUNS:
        return float("nan"), float("nan"), ()
    model = crossrun.fit(points)
    lo, hi = _range(r)
    return float(np.clip(model.predict(_point(r, lv)), lo, hi)), model.rmse, model.dropped


@dataclass(frozen=True)
class CrossRun:
    """The cross-run results as stored: per run its forecast document, per grid fraction the replay summary."""

    rows: dict[int, dict[str, Any]]  # run id → {"live": …, "replay": {f: row}, "skipped": {f: reason}}
    track: dict[str, dict[str, Any]]  # grid fraction ("0.3") → summary dict
    stored: bool = False  # read from the store (else computed in memory)

    def live(self) -> dict[int, dict[str, Any]]:
        """Run id → its live forecast document, for the runs that have one."""
        return {rid: row["live"] for rid, row in self.rows.items() if row.get("live")}


def cross_run(results: Sequence[RunAnalysis]) -> CrossRun:
    """Everything across runs (module docstring), for every run of ``results``."""
    reps = replays(results)
    track = track_record(reps)
    live = live_forecasts(results, reps, track)
    rows: dict[int, dict[str, Any]] = {int(r.run_id): {"live": live.get(int(r.run_id)), "replay": {},
                                                       "skipped": {}} for r in results}
    for f, bt in reps.items():
        for i in range(len(bt.headlines)):
            row = bt.row(i)
            rows[int(row["run_id"])]["replay"][f"{f:g}"] = row
        for sk in bt.skipped:
            rows[int(sk["run_id"])]["skipped"][f"{f:g}"] = sk["reason"]
    return CrossRun(rows, track)


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
