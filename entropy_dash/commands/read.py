"""Read commands: `runs`, `fit`, `backtest`, `scaling` (text tables, or one JSON document with --json)."""

from __future__ import annotations

import argparse
from typing import Any

from analysis.payloads import backtest_payload, fit_payload, runs_payload, scaling_payload
from entropy_dash.commands.output import emit, fmt, open_store


def cmd_runs(args: argparse.Namespace) -> int:
    payload = runs_payload(open_store(args, create=False))

    def text() -> str:
        if not payload:
            return "no runs yet: ingest some with `entropy-dash ingest …` or try `entropy-dash demo`"
        lines = [f"{'id':>4}  {'run':40}  {'entropy key':22}  {'performance key':38}  {'H pts':>6}  {'R pts':>6}  last"]
        for r in payload:
            lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {(r['entropy_key'] or '–')[:22]:22}  "
                         f"{(r['performance_key'] or '–')[:38]:38}  {r['n_entropy']:>6}  {r['n_performance']:>6}  "
                         f"{fmt(r['last_step'])}" + (f"   ({r['reason']})" if r["reason"] else ""))
        return "\n".join(lines)

    emit(args, payload, text)
    return 0


def fit_table(payload: list[dict[str, Any]]) -> str:
    if not payload:
        return "no runs yet: ingest some with `entropy-dash ingest …` or try `entropy-dash demo`"
    lines = [f"{'id':>4}  {'run':40}  {'a':>8}  {'b':>8}  {'ceiling':>8}  {'95% CI':>17}  {'R²':>6}  {'n':>4}"]
    for r in payload:
        if r["status"] != "ok":
            lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {r['status']}: {r['reason']}")
            continue
        ci = r["ceiling_ci"]
        lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {fmt(r['a'], 4):>8}  {fmt(r['b'], 4):>8}  "
                     f"{fmt(r['ceiling'], 4):>8}  {fmt(ci[0], 3):>8}–{fmt(ci[1], 3):<8}  {fmt(r['r2']):>6}  "
                     f"{r['n']:>4}" + (f"  ({r['n_excluded']} outliers set aside)" if r["n_excluded"] else "")
                     + ("  ⚠ " + "; ".join(r["flags"]) if r["flags"] else ""))
    return "\n".join(lines)


def cmd_fit(args: argparse.Namespace) -> int:
    payload = fit_payload(open_store(args, create=False), args.run, args.robust)
    emit(args, payload, lambda: fit_table(payload))
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    payload = backtest_payload(open_store(args, create=False), args.cutoff)

    def text() -> str:
        if not payload["runs"]:
            return "no run can be backtested yet" + "".join(f"\n  {s['run']}: {s['reason']}" for s in payload["skipped"])
        methods = list(payload["runs"][0]["baselines"])
        head = f"{'run':40}  {'observed':>8}  " + "  ".join(f"{m:>11}" for m in methods)
        lines = [f"backtest: forecast from the first {payload['cutoff']:.0%} of each run vs its final score "
                 "(mean of the last 3 evaluations); error in points", head]
        for r in payload["runs"]:
            cells = "  ".join(f"{r['baselines'][m]['predicted']:.3f}({100 * r['baselines'][m]['error']:+.1f})"
                              for m in methods)
            lines.append(f"{r['run'][:40]:40}  {r['observed_final']:>8.3f}  {cells}")
        lines += [f"  skipped {s['run']}: {s['reason']}" for s in payload["skipped"]]
        summary = payload["summary"]
        lines.append("MAE (pt): " + ", ".join(f"{m} {100 * v['mae']:.2f}" for m, v in summary["scores"].items()))
        lines.append(summary["sentence"])
        return "\n".join(lines)

    emit(args, payload, text)
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    payload = scaling_payload(open_store(args, create=False), args.group)

    def text() -> str:
        lines = [f"{'run':40}  {'size (B)':>8}  {'algorithm':10}  {'intervention':14}  {'a':>7}  {'b':>7}  {'ceiling':>7}"]
        for r in payload["runs"]:
            lines.append(f"{r['run'][:40]:40}  {fmt(r['size'], 2):>8}  {(r['algorithm'] or '–')[:10]:10}  "
                         f"{r['intervention'][:14]:14}  {r['a']:>7.4f}  {r['b']:>7.4f}  {r['ceiling']:>7.4f}")
        lines.append(payload["note"] + ":")
        for f in payload["fits"]:
            grp = f"[{f['group']}] " if f["group"] is not None else ""
            if "reason" in f:
                lines.append(f"  {grp}{f['coefficient']}: {f['reason']}")
            else:
                lines.append(f"  {grp}{f['coefficient']} = {f['k']:.4f}·ln(size) + {f['c']:.4f}  "
                             f"(k ± {f['k_se']:.4f}, R² {f['r2']:.3f}, n {f['n']})")
        return "\n".join(lines)

    emit(args, payload, text)
    return 0
