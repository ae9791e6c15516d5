"""Everything computed for one run, from its stored points: a JSON-able dict (kind ``summary`` in ``analyses``).

Per run:

* state and planned length: ``finished`` (usable as a finished run in backtests) or not, and the words every
  page shows ("in progress: step 373 of 600");
* per benchmark (``analysis.keys``): the metric's range (``models.metric_range``), the warm-up excluded
  (``models.warmup``), a degenerate status (``models.degenerate``) or the law with its ceiling bounded to the
  range (the raw b − a kept as ``ceiling_raw``, and a flag in words when it leaves the range);
* the headline benchmark: the first in the key choice's order whose law could be fitted;
* stage boundary and collapse verdict on the entropy and headline curves;
* the replay (finished runs): the run cut at every fraction of ``models.backtest.GRID`` (10% to 90% of its
  planned length, every 5%) and sent down the live path, beside what happened (kept under ``backtests``,
  keyed by fraction); and the live forecast to the planned end (runs in progress with a known planned
  length): every method's prediction, expected error and features. Which method is shown and its calibrated
  interval are decided across runs (``analysis.forecasting``).

Any failure of one part is contained: the part says why (``{"error", "cause"}``) and the rest is kept; a
failure of the whole run becomes its status ``failed`` with the reason (``analyse_run_safely``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.keys import KeyChoice, benchmark_name
from analysis.results import RunAnalysis
from analysis.settings import RunSettings
from analysis.version import ANALYSIS_VERSION, SCHEMA_VERSION
from db.records import planned_length
from db.values import finite_number
from models.align import Aligned, align
from models.backtest import FINAL_WINDOW, GRID, replay_cut_step
from models.collapse import detect_collapse
from models.degenerate import check_law, check_series
from models.errors import FitError
from models.forecast import Forecast, forecast, forecast_many
from models.law import fit_law
from models.metric_range import MetricRange, metric_range
from models.resample import bin_means
from models.stages import find_stage_boundary
from models.warmup import KEEP, Warmup, detect_warmup, pinned_warmup
from models.weak_fit import weak_fit_reason

#: a run is finished when it reached its planned length (within this share of it)
FINISHED_SHARE = 0.98
#: the trend models (stage, collapse) see at most this many points per curve (bucket means of longer ones)
TREND_POINTS = 200

PAIRING_RULE = ("R(s) pairs with the entropy logged at the first step >= s+1 (the same policy's rollouts); "
                "the last evaluation falls back to the latest entropy at or before s")


def progress(state: str | None, last_step: int | None, planned: int | None,
             marked_finished: bool = False) -> tuple[bool, str]:
    """Whether a run counts as finished, and how every page says where it is. Only a source that says so
    (state ``finished``, having reached the planned length when there is one) or the user (``finished = true``,
    ``--finished``) makes a run finished: a run whose state is unknown is never assumed finished."""
    state = state or "unknown"
    if last_step is None:
        return False, "no points"
    of = f" of {planned}" if planned else ""
    reached = planned is None or (last_step is not None and last_step >= FINISHED_SHARE * planned)
    if marked_finished:
        return True, f"finished at step {last_step}{of} (marked finished by the user)"
    if state == "running":
        return False, f"in progress: step {last_step}{of}" + ("" if planned else " (planned length unknown)")
    if state == "failed":
        return (reached and planned is not None), f"{'failed' if not reached else 'ended (failed)'} at step {last_step}{of}"
    if state == "finished":
        if reached:
            return True, f"finished at step {last_step}{of}"
        return False, f"stopped early: step {last_step}{of}"
    if planned is not None and not reached:
        return False, f"in progress: step {last_step}{of} (state unknown)"
    return False, (f"state unknown at step {last_step}{of}: not used as a finished run (the source does not say "
                   "it finished; mark it with `--finished` or finished = true in sources.toml)")


def analyse_run(run: Mapping[str, Any], stats: Sequence[Mapping[str, Any]] | pd.DataFrame, choice: KeyChoice,
                series: Mapping[str, pd.Series], settings: RunSettings) -> dict[str, Any]:
    """The analysis of one run (module docstring). ``stats`` are the run's rows of ``Store.run_keys`` (as
    records, or that frame); ``series`` holds the finite points of the chosen entropy key and of every
    benchmark key."""
    rows = stats.to_dict("records") if isinstance(stats, pd.DataFrame) else stats
    counts = {str(s["key"]): (int(s["n"]), int(s["n_nonfinite"])) for s in rows}  # one row per key
    planned, planned_from = _planned(run, settings)
    last_step = int(max(s["last_step"] for s in rows)) if rows else None
    finished, progress_text = progress(run.get("state"), last_step, planned, settings.finished)
    out: dict[str, Any] = {
        "run_id": int(run["id"]), "run": run["name"], "project": run.get("project"),
        "analysis_version": ANALYSIS_VERSION, "schema_version": SCHEMA_VERSION,
        "entropy_key": choice.entropy, "performance_key": choice.performance,
        "performance_kind": choice.performance_kind, "key_reason": choice.reason, "headline_rule": choice.rule,
        "unrecognised_keys": list(choice.unrecognised), "status": "ok", "reason": None, "law": None,
        "state": run.get("state") or "unknown", "planned_steps": planned, "planned_from": planned_from,
        "last_step": last_step, "finished": finished, "progress": progress_text,
        "benchmarks": [], "backtests": {}, "live": None,
    }
    for role, key in (("entropy", choice.entropy), ("performance", choice.performance)):
        out[f"n_{role}"], out[f"n_{role}_nonfinite"] = counts.get(key, (0, 0)) if key is not None else (0, 0)
    missing = [r for r, k in (("entropy", choice.entropy), ("performance", choice.performance))
               if k is None or k not in counts]
    if missing:
        seen = list(run.get("keys_seen") or counts)
        out.update(status="skipped", reason=f"no {' and no '.join(missing)} metric (keys seen: "
                   f"{', '.join(seen[:12]) or 'none'}{'…' if len(seen) > 12 else ''})")
        return out

    h = series[choice.entropy]
    benches = [_benchmark(h, series[k], k, settings) for k in choice.benchmarks if k in series]
    out["benchmarks"] = [b["summary"] for b in benches]
    head = benches[0] if choice.rule == "user" else next((b for b in benches if b["summary"]["status"] == "ok"),
                                                          benches[0])
    key, r, rng, warm = head["key"], head["r"], head["range"], head["warmup"]
    bsum = head["summary"]
    out.update(performance_key=key, status=bsum["status"], reason=bsum["reason"], law=bsum["law"],
               range=rng.to_dict(), warmup=warm.to_dict(), excluded_steps=list(warm.steps),
               alignment=head["alignment"], degenerate=bsum.get("degenerate"), law_rejected=bsum.get("law_rejected"))
    if key != choice.performance:
        first = benches[0]["summary"]
        out["key_reason"] = (f"{key}: the first benchmark whose law could be fitted ({first['benchmark']}: "
                             f"{first['reason']}); " + choice.reason)
    out["n_performance"], out["n_performance_nonfinite"] = counts.get(key, (0, 0))
    out.update(_levels(h, r, out["law"]))

    hf, rf = _trend_curves(h, r.drop(index=list(warm.steps), errors="ignore") if warm.steps else r)
    out["stage"] = _guarded(lambda: find_stage_boundary(hf.index, hf.to_numpy(), rf.index, rf.to_numpy()).to_dict())
    out["collapse"] = _guarded(lambda: detect_collapse(hf.index, hf.to_numpy(), rf.index, rf.to_numpy()).to_dict())

    warm_mode = settings.warmup
    if finished:
        end = replay_end(planned, last_step)
        out["backtests"] = replay_of(h, r, GRID, rng, warm_mode, end)
    elif planned and last_step is not None and planned > last_step:
        out["live"] = live_of(h, r, planned, rng, warm_mode)
    return out


def replay_end(planned: int | None, last_step: int | None) -> int:
    """The planned end a finished run is replayed toward: its planned length, else its last step."""
    return int(planned) if planned else int(last_step or 0)


def backtest_of(h: pd.Series, r: pd.Series, cutoff: float, rng: MetricRange, warmup: str | int,
                end_step: int | None = None) -> dict[str, Any]:
    """The replay of a finished run at fraction ``cutoff`` of its planned length (``end_step``; its last step
    when None): the run cut there and sent down exactly the live path (``live_of``: planned length known,
    nothing after the cut visible), with what happened — the mean of its last ``FINAL_WINDOW`` evaluations."""
    return replay_of(h, r, [cutoff], rng, warmup, end_step)[f"{cutoff:g}"]


def replay_of(h: pd.Series, r: pd.Series, cutoffs: Sequence[float], rng: MetricRange, warmup: str | int,
              end_step: int | None = None) -> dict[str, dict[str, Any]]:
    """``backtest_of`` at every fraction of ``cutoffs`` (keyed as ``f"{cutoff:g}"``), the forecasts of all the
    cuts made in one batch (``models.forecast.forecast_many``: the same numbers as one forecast per cut)."""
    first = float(min(h.index.min(), r.index.min()))
    end = float(end_step if end_step is not None else max(h.index.max(), r.index.max()))
    planned = int(round(end))
    out: dict[str, dict[str, Any]] = {}
    facts: dict[str, tuple[float, dict[str, Any]]] = {}  # the cuts that can be forecast: last step seen, what happened
    for cutoff in cutoffs:
        try:
            facts[f"{cutoff:g}"] = _replay_cut(h, r, cutoff, first, end)
        except FitError as exc:
            out[f"{cutoff:g}"] = {"error": str(exc), "cause": exc.cause}
    fcs = forecast_many(h.index.to_numpy(), h.to_numpy(), r.index.to_numpy(), r.to_numpy(),
                        [(last, [planned]) for last, _ in facts.values()], rng=rng, warmup=warmup)
    for (key, (last, happened)), fc in zip(facts.items(), fcs, strict=True):
        out[key] = (_live(fc, first, last, planned, rng) | happened if isinstance(fc, Forecast)
                    else {"error": str(fc), "cause": fc.cause})
    return {f"{c:g}": out[f"{c:g}"] for c in cutoffs}


def _replay_cut(h: pd.Series, r: pd.Series, cutoff: float, first: float, end: float) -> tuple[float, dict[str, Any]]:
    """The last step seen at fraction ``cutoff`` of ``first``..``end``, and what the run did after it."""
    if not 0 < cutoff < 1:
        raise FitError(f"cutoff must be a fraction of the run strictly between 0 and 1, got {cutoff}", "bad_option")
    cut = replay_cut_step(first, end, cutoff)
    after = r[r.index > cut]
    if after.empty:
        raise FitError(f"no evaluation after the cutoff step {cut:.0f}: nothing to score the forecast on",
                       "nothing_after_cutoff")
    seen_h, seen_r = h.index[h.index <= cut], r.index[r.index <= cut]
    if seen_r.empty or seen_h.empty:
        raise FitError(f"nothing logged at or before the cutoff step {cut:.0f}", "too_few_points_before_cutoff")
    final = after.iloc[-FINAL_WINDOW:]
    return float(max(seen_h.max(), seen_r.max())), {"cutoff": cutoff, "cutoff_step": cut,
                                                    "observed_final": float(final.mean()),
                                                    "final_steps": [int(s) for s in final.index]}


def live_of(h: pd.Series, r: pd.Series, planned: int, rng: MetricRange, warmup: str | int) -> dict[str, Any]:
    """Every method's forecast of the score at the planned end, from everything seen so far (the live path:
    the same for a run in progress and for a finished run replayed from a cut)."""
    def compute() -> dict[str, Any]:
        last = float(max(h.index.max(), r.index.max()))
        first = float(min(h.index.min(), r.index.min()))
        fc = forecast(h.index.to_numpy(), h.to_numpy(), r.index.to_numpy(), r.to_numpy(), cutoff_step=last,
                      target_steps=[planned], rng=rng, warmup=warmup)
        return _live(fc, first, last, planned, rng)
    return _guarded(compute)


def _live(fc: Forecast, first: float, last: float, planned: int, rng: MetricRange) -> dict[str, Any]:
    frac = (last - first) / (planned - first) if planned > first else 1.0
    return _compact(fc, rng) | {"horizon_step": planned, "from_step": last, "fraction_done": frac}


def _compact(fc: Forecast, rng: MetricRange) -> dict[str, Any]:
    law = fc.methods.get("law")
    weak = None if law is None else weak_fit_reason(law.params.get("r2"), rng.clip(law.params.get("ceiling_lo")),
                                                    rng.clip(law.params.get("ceiling_hi")), rng)
    return {"methods": {m: {"predicted": f.predicted, "scale": f.scale, "rolling_mae": f.rolling_mae,
                            "note": f.note} for m, f in fc.methods.items()}, "weak_law": weak,
            "failed": dict(fc.failed), "features": dict(fc.features), "level": fc.level, "noise_sd": fc.noise_sd,
            "n_evaluations": fc.n_evaluations, "warmup_steps": list(fc.warmup.steps),
            "entropy_at_target": fc.entropy_at_target}


# --- one benchmark ------------------------------------------------------------------------------------------


def _benchmark(h: pd.Series, r: pd.Series, key: str, settings: RunSettings) -> dict[str, Any]:
    """Range, warm-up, degenerate status or the bounded law of one benchmark."""
    rng = metric_range(key, r.to_numpy(), settings.performance_range)
    pairs = align(h, r)
    warm = _warmup(pairs, settings.warmup)
    keep = ~np.isin(pairs.steps, np.asarray(warm.steps, dtype=np.int64))
    hp, rp, sp = pairs.entropy[keep], pairs.performance[keep], pairs.steps[keep]
    summary: dict[str, Any] = {
        "key": key, "benchmark": benchmark_name(key), "status": "ok", "reason": None, "law": None,
        "range": rng.to_dict(), "excluded_steps": list(warm.steps), "warmup_reason": warm.reason,
        "n": int(keep.sum()), "best": finite_number(r.max()), "last": finite_number(r.iloc[-1]) if len(r) else None,
        "first": finite_number(r.iloc[0]) if len(r) else None,
    }
    bad = check_series(sp, rp, rng)
    if bad is None:
        try:
            law = fit_law(hp, rp)
        except FitError as exc:
            summary.update(status="failed", reason=f"{exc} [{exc.cause}]")
        else:
            rejected = check_law(law)
            if rejected is None:
                summary["law"] = bounded_law(law.to_dict(), rng, summary["best"])
            else:
                bad = rejected
                summary["law_rejected"] = law.to_dict()
    if bad is not None:
        summary.update(status="degenerate", reason=bad.reason, degenerate=bad.to_dict())
    alignment = {"n_pairs": len(pairs), "n_used": int(keep.sum()), "fallback_steps": list(pairs.fallback_steps),
                 "unpaired_steps": list(pairs.unpaired_steps), "n_nonfinite": pairs.n_nonfinite,
                 "max_gap": pairs.max_gap, "rule": PAIRING_RULE}
    return {"key": key, "r": r, "range": rng, "warmup": warm, "summary": summary, "alignment": alignment}


def bounded_law(law: dict[str, Any], rng: MetricRange, best: float | None) -> dict[str, Any]:
    """The law's dict with its ceiling and interval inside the metric's range; the raw values kept, and a flag
    in words when b − a leaves the range."""
    raw, lo, hi = law["ceiling"], law["ceiling_lo"], law["ceiling_hi"]
    out = dict(law)
    out.update(ceiling=rng.clip(raw), ceiling_lo=rng.clip(lo), ceiling_hi=rng.clip(hi), ceiling_raw=raw,
               ceiling_lo_raw=lo, ceiling_hi_raw=hi, range=rng.to_dict())
    out["ceiling_ci"] = [out["ceiling_lo"], out["ceiling_hi"]]
    flags = list(law.get("flags", []))
    if rng.above(raw):
        near = best is not None and rng.lo is not None and best >= rng.hi - 0.1 * (rng.hi - rng.lo)
        flags.append(f"the law extrapolates above {rng.hi:g} (b − a = {raw:.4f}): "
                     + ("the run is already near perfect" if near else f"the ceiling is shown as {rng.hi:g}"))
    elif rng.below(raw):
        flags.append(f"the law extrapolates below {rng.lo:g} (b − a = {raw:.4f}): the ceiling is shown as {rng.lo:g}")
    weak = weak_fit_reason(law.get("r2"), out["ceiling_lo"], out["ceiling_hi"], rng)
    out["weak"] = weak
    if weak:
        flags.append(weak)
    out["flags"] = flags
    return out


def warmup_mode(result: RunAnalysis) -> str | int:
    """The warm-up setting a stored result was computed with (for forecasts recomputed from it)."""
    warm = result.warmup or {}
    if warm.get("mode") == "keep":
        return "keep"
    if warm.get("mode") == "pinned":
        return max(warm.get("excluded_steps") or [0])
    return "auto"


def _warmup(pairs: Aligned, mode: str | int) -> Warmup:
    if mode == "keep":
        return KEEP
    if not isinstance(mode, str):
        return pinned_warmup(pairs.steps, int(mode))
    return detect_warmup(pairs.entropy, pairs.performance, pairs.steps)


# --- helpers -------------------------------------------------------------------------------------------------


def _planned(run: Mapping[str, Any], settings: RunSettings) -> tuple[int | None, str | None]:
    if settings.planned_steps:
        return settings.planned_steps, "user"
    if run.get("planned_steps") is not None and not pd.isna(run.get("planned_steps")):
        return int(run["planned_steps"]), run.get("planned_from")
    return planned_length(run.get("params"))


def _levels(h: pd.Series, r: pd.Series, law: Mapping[str, Any] | None) -> dict[str, Any]:
    best = finite_number(r.max()) if len(r) else None
    return {"best_performance": best, "last_performance": finite_number(r.iloc[-1]) if len(r) else None,
            "performance_first": finite_number(r.iloc[0]) if len(r) else None,
            "entropy_first": finite_number(h.iloc[0]) if len(h) else None, "entropy_last": finite_number(h.iloc[-1]) if len(h) else None,
            "headroom": (law["ceiling"] - best) if law and best is not None else None}


def _trend_curves(h: pd.Series, r: pd.Series) -> tuple[pd.Series, pd.Series]:
    out = []
    for s in (h, r):
        steps, values = bin_means(s.index.to_numpy(), s.to_numpy(), TREND_POINTS)
        out.append(pd.Series(values, index=steps, name=s.name))
    return out[0], out[1]


def _guarded(compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A part that cannot be made says why instead of failing the whole run."""
    try:
        return compute()
    except FitError as exc:
        return {"error": str(exc), "cause": exc.cause}
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "cause": "numerical"}
