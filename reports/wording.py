"""The words and numbers both the Markdown and the HTML report print: how the ceiling and the backtest are
computed, one summary row per run, and each run's sentences (plain text: each format escapes it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reports.document import ReportData

HOW_CEILING = (
    "For each run, every evaluation R is paired with the policy entropy H of the rollouts that produced it, and "
    "R = −a·e^H + b is fitted by ordinary least squares (R is linear in e^H). The ceiling is the fitted R at "
    "H = 0 — the score left once entropy is exhausted — b − a, with a 95% t-interval from the fit's covariance. "
    "Headroom is the ceiling minus the best evaluation so far. 1 pt = 0.01 of the metric."
)
HOW_BACKTEST = (
    "Backtest: from the first part of each finished run's steps only, its final score (the mean of its last 3 "
    "evaluations) is forecast by every method — the law through an entropy forecast, saturating, sigmoid and "
    "power curves in the step, the last value, the mean of the last three evaluations, and a model learned from "
    "the other finished runs — and the error is predicted − observed. The headline is a weighted mean of the "
    "methods whose weights were learned on the other finished runs only (the run never grades its own "
    "forecast), with a 95% interval calibrated on their errors. Runs still in progress are never backtested."
)


@dataclass(frozen=True)
class SummaryRow:
    """One run's line of the summary table, as plain (unescaped) text."""

    run_id: int
    run: str
    status: str
    ceiling: str
    interval: str
    best: str
    headroom: str
    plateau: str
    collapse: str
    backtest_error: str
    progress: str
    forecast: str


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def fmt_pt(v: Any, sign: bool = True) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:+.1f} pt" if sign else f"{100 * v:.2f} pt"


def summary_rows(data: ReportData) -> list[SummaryRow]:
    rows = []
    for f in data.fit:
        ci = f.get("ceiling_ci") or [None, None]
        pr = f.get("plateau_range")
        plateau = "–" if f.get("plateau_step") is None else (
            f"step {f['plateau_step']}" + (f" ({pr[0]}–{pr[1]})" if pr else ""))
        col = f.get("collapse") or {}
        collapse = col.get("verdict") or "–"
        if col.get("projected_floor_step") is not None:
            collapse += f" (floor ≈ step {fmt(col['projected_floor_step'], 0)})"
        bt = f.get("backtest") or {}
        fc = f.get("forecast")
        forecast = (f"{fmt(fc['predicted_final'])} [{fmt(fc['interval'][0])}, {fmt(fc['interval'][1])}] at step "
                    f"{fc['horizon_step']}" + (f", {fc['track_record']['sentence']}"
                                                if (fc.get("track_record") or {}).get("sentence") else "")) if fc else "–"
        rows.append(SummaryRow(
            run_id=f["run_id"], run=f["run"], status=f["status"], ceiling=fmt(f.get("ceiling")),
            interval=f"{fmt(ci[0])} – {fmt(ci[1])}" if f.get("ceiling") is not None else "–",
            best=fmt(f.get("best_performance")), headroom=fmt_pt(f.get("headroom")), plateau=plateau,
            collapse=collapse, backtest_error=fmt_pt(bt.get("error")) if bt.get("error") is not None else "–",
            progress=f.get("progress") or "–", forecast=forecast))
    return rows


def run_sentences(fit: Mapping[str, Any], runs_row: Mapping[str, Any] | None, *, detail: bool = True) -> list[str]:
    """How this run's ceiling was computed and how well it backtested, in plain words (``detail``: with the
    evidence behind the stage boundary and the collapse verdict, and why these keys were chosen)."""
    if fit["status"] == "skipped":
        return [f"Not analysed: {fit['reason']}."]
    keys = f"Entropy key {fit['entropy_key']}, performance key {fit['performance_key']}"
    if detail and runs_row and runs_row.get("key_reason"):
        keys += f" ({runs_row['key_reason']})"
    out = [keys + ".", f"State: {fit.get('progress') or 'unknown'}."]
    if fit.get("excluded_steps"):
        out.append(f"{(fit.get('warmup') or {}).get('reason') or 'Warm-up excluded'}; these evaluations are left out "
                   "of the law.")
    if len(fit.get("benchmarks") or []) > 1:
        out.append("Benchmarks: " + "; ".join(
            f"{b['benchmark']}: " + (f"ceiling {fmt(b['ceiling'])} [{fmt(b['ceiling_ci'][0])}, {fmt(b['ceiling_ci'][1])}], "
                                     f"R² {fmt(b['r2'])}" if b["status"] == "ok" else str(b["reason"]))
            for b in fit["benchmarks"]) + f" (headline: {fit['performance_key']}).")
    if fit["status"] != "ok" or fit.get("a") is None:
        out.append(f"No law could be fitted: {fit['reason']}.")
    else:
        h0, h1 = fit.get("h_range") or [None, None]
        ci = fit["ceiling_ci"]
        out.append(f"Fitted R = −{fmt(fit['a'], 4)}·e^H + {fmt(fit['b'], 4)} on {fit['n']} paired evaluations "
                   f"(R² {fmt(fit['r2'])}, RMSE {fmt(fit['rmse'], 4)}; a ± {fmt(fit['a_se'], 4)}, "
                   f"b ± {fmt(fit['b_se'], 4)}), entropy observed from {fmt(h0)} to {fmt(h1)}.")
        out.append(f"At H = 0 this gives a ceiling of {fmt(fit['ceiling'])} (95% CI {fmt(ci[0])} to {fmt(ci[1])}); the "
                   f"best evaluation so far is {fmt(fit.get('best_performance'))}, so the headroom is "
                   f"{fmt_pt(fit.get('headroom'))}.")
        out += [f"Warning: {flag}." for flag in fit.get("flags") or []]
    if fit.get("plateau_step") is not None:
        pr = fit.get("plateau_range")
        out.append(f"The rising stage ended around step {fit['plateau_step']}"
                   + (f" (range {pr[0]}–{pr[1]})" if pr else "")
                   + (f": {fit.get('stage_reason') or ''}." if detail else "."))
    elif fit.get("stage_reason"):
        out.append(f"No stage boundary: {fit['stage_reason']}.")
    col = fit.get("collapse") or {}
    if col.get("verdict") or col.get("message"):
        floor = col.get("projected_floor_step")
        out.append(f"Collapse check: {col.get('verdict') or 'not available'}"
                   + (f" — {col.get('message') or ''}." if detail else
                      (f" (entropy floor projected at step {fmt(floor, 0)})." if floor is not None else ".")))
    fc = fit.get("forecast")
    if fc:
        record = (f"; its track record: {fc['track_record']['sentence']}"
                  if (fc.get("track_record") or {}).get("sentence") else
                  "; too few finished runs to learn from: the weights come from this run's own rolling-origin errors")
        out.append(f"Forecast: at its planned end (step {fc['horizon_step']}) the run should score "
                   f"{fmt(fc['predicted_final'])} (95% interval {fmt(fc['interval'][0])} to {fmt(fc['interval'][1])}; "
                   f"{fc['label']}){record}.")
    elif fit.get("forecast_reason") and not fit.get("finished"):
        out.append(f"No forecast: {fit['forecast_reason']}.")
    bt = fit.get("backtest") or {}
    if bt.get("error") is not None:
        lo, hi = bt["interval"]
        covered = "inside" if lo <= bt["observed_final"] <= hi else "outside"
        out.append(f"Backtest: from the first {bt['cutoff']:.0%} of the run, the headline forecast of the final score "
                   f"was {fmt(bt['predicted_final'])} (95% interval {fmt(lo)} to {fmt(hi)}); the run ended at "
                   f"{fmt(bt['observed_final'])}, an error of {fmt_pt(bt['error'])} ({covered} the interval).")
    else:  # a run in progress, or one whose source does not say it finished, teaches nothing: say so
        out.append(f"Backtest not possible: {bt.get('reason') or 'not computed'}.")
    return out
