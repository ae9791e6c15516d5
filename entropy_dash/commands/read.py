"""Read commands: `runs`, `fit`, `backtest`, `scaling` (text tables, or one JSON document with --json).

They never write: stale analyses are computed in memory (``analysis.pipeline.current_results``), so they work
under a database role that may only SELECT.
"""

from __future__ import annotations

import argparse
from typing import Any

from entropy_dash.commands.output import emit, fmt, open_store

NO_RUNS = "no runs yet: ingest some with `entropy-dash ingest …` or try `entropy-dash demo`"


def _results(args: argparse.Namespace, run: str | None = None):  # noqa: ANN202 - (Store, list of RunAnalysis)
    """The store and the analyses of every run (of ``run`` only, id or name, when given: a command about one
    run reads that run's rows, whatever the store's size)."""
    from analysis.pipeline import Options, current_results

    store = open_store(args, create=False)
    ids = None
    if run is not None and not getattr(args, "keep_warmup", False):
        runs = store.runs_frame()
        match = runs[(runs["id"].astype(str) == run) | (runs["name"] == run)]
        ids = [int(i) for i in match["id"]] or None  # unknown: every run, and select_runs names it
    return store, current_results(store, ids, options=Options(keep_warmup=bool(getattr(args, "keep_warmup", False))))


def cmd_runs(args: argparse.Namespace) -> int:
    from analysis.payloads import runs_payload

    store, results = _results(args)
    payload = runs_payload(store, results)

    def text() -> str:
        if not payload:
            return NO_RUNS
        lines = [f"{'id':>4}  {'run':40}  {'entropy key':22}  {'performance key':38}  {'H pts':>6}  {'R pts':>6}  "
                 "state"]
        for r in payload:
            lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {(r['entropy_key'] or '–')[:22]:22}  "
                         f"{(r['performance_key'] or '–')[:38]:38}  {r['n_entropy']:>6}  {r['n_performance']:>6}  "
                         f"{r['progress'] or '–'}" + (f"   ({r['reason']})" if r["reason"] else ""))
            lines += [f"{'':6}{d}" for d in _key_details(r)]
        return "\n".join(lines)

    emit(args, payload, text)
    return 0


def _key_details(r: dict[str, Any], shown: int = 8) -> list[str]:
    """Why the performance key was chosen, and the keys no role was found for (as ``runs --json`` has them)."""
    out = []
    if r.get("key_reason"):
        out.append(f"performance key: {r['key_reason']}")
    unknown = r.get("unrecognised_keys") or []
    if unknown:
        more = f" and {len(unknown) - shown} more (runs --json lists them)" if len(unknown) > shown else ""
        out.append(f"unrecognised keys ({len(unknown)}): {', '.join(unknown[:shown])}{more}")
    return out


def fit_table(payload: list[dict[str, Any]]) -> str:
    if not payload:
        return NO_RUNS
    lines = [f"{'id':>4}  {'run':40}  {'a':>8}  {'b':>8}  {'ceiling':>8}  {'95% CI':>17}  {'R²':>6}  {'n':>4}"]
    for r in payload:
        if r["status"] != "ok":
            lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {r['status']}: {r['reason']}")
        else:
            ci = r["ceiling_ci"]
            lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {fmt(r['a'], 4):>8}  {fmt(r['b'], 4):>8}  "
                         f"{fmt(r['ceiling'], 4):>8}  {fmt(ci[0], 3):>8}–{fmt(ci[1], 3):<8}  {fmt(r['r2']):>6}  "
                         f"{r['n']:>4}" + (f"  ({r['n_excluded']} outliers set aside)" if r["n_excluded"] else ""))
            lines += [f"{'':6}⚠ {flag}" for flag in r["flags"]]
        detail = [r["progress"] or ""]
        if r["excluded_steps"]:
            detail.append(f"warm-up excluded: steps {_steps(r['excluded_steps'])}")
        if len(r["benchmarks"]) > 1:
            detail.append("benchmarks: " + "; ".join(_bench(b) for b in r["benchmarks"]))
        fc = r["forecast"]
        if fc:
            rec = (fc.get("track_record") or {}).get("sentence")
            detail.append(f"forecast at step {fc['horizon_step']}: {fc['predicted_final']:.3f} "
                          f"[{fc['interval'][0]:.3f}, {fc['interval'][1]:.3f}] ({fc['method']}"
                          + (f"; {rec}" if rec else "; no track record: no finished run replayed yet") + ")")
            detail += [f"no weight to {m}: {why}" for m, why in (fc.get("excluded") or {}).items()]
        bt = r["backtest"]
        if bt.get("error") is not None:
            detail.append(f"backtest at {bt['cutoff']:.0%}: {bt['method']} {bt['predicted_final']:.3f} vs observed "
                          f"{bt['observed_final']:.3f} ({100 * bt['error']:+.1f} pt)")
        lines += [f"{'':6}{d}" for d in detail if d]
    return "\n".join(lines)


def _bench(b: dict[str, Any]) -> str:
    if b["status"] != "ok":
        return f"{b['benchmark']} {b['status']}"
    return f"{b['benchmark']} ceiling {b['ceiling']:.3f} (R² {b['r2']:.2f})"


def _steps(steps: list[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 6 else f"{steps[0]}–{steps[-1]} ({len(steps)})"


def _in_memory_cross_run(args: argparse.Namespace, results: list):  # noqa: ANN202
    """With a read-time choice (``--keep-warmup``) the stored cross-run results do not apply: they are computed
    in memory from this command's analyses of every run (nothing is saved). None: read them as stored."""
    if not getattr(args, "keep_warmup", False):
        return None
    from analysis.forecasting import cross_run

    return cross_run(results)


def cmd_fit(args: argparse.Namespace) -> int:
    from analysis.payloads import fit_payload

    store, results = _results(args, args.run)
    payload = fit_payload(store, results, args.run, args.robust, cross=_in_memory_cross_run(args, results))
    emit(args, payload, lambda: fit_table(payload))
    return 0


def backtest_text(payload: dict[str, Any]) -> str:
    lines = []
    for doc in payload["cutoffs"]:
        lines.append(f"\nbacktest from the first {doc['cutoff']:.0%} of each finished run: forecast of the final "
                     "score (mean of the last 3 evaluations); error in points")
        if not doc["runs"]:
            lines.append("  no finished run can be backtested at this cutoff")
        else:
            methods = list(doc["summary"]["scores"])
            lines.append(f"  {'run':40}  {'observed':>8}  {'headline':>22}")
            for r in doc["runs"]:
                lines.append(f"  {r['run'][:40]:40}  {r['observed_final']:>8.3f}  {r['predicted_final']:>7.3f} "
                             f"({100 * r['error']:+5.1f}) {r['method'][:11]:11}" + ("" if r["covered"] else "  ✗ outside"))
            scores = doc["summary"]["scores"]
            lines.append("  MAE (pt), coverage of the 95% interval: " + ", ".join(
                f"{m} {100 * scores[m]['mae']:.2f} ({_pct(scores[m]['coverage'])})" for m in methods))
            lines.append("  " + doc["summary"]["sentence"])
        lines += [f"  skipped {s['run']}: {s['reason']}" for s in doc["skipped"]]
    return "\n".join(lines).lstrip("\n")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def cmd_backtest(args: argparse.Namespace) -> int:
    from analysis.payloads import backtest_payload

    store, results = _results(args)
    payload = backtest_payload(store, results, args.cutoff, cross=_in_memory_cross_run(args, results))
    emit(args, payload, lambda: backtest_text(payload))
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    from analysis.payloads import scaling_payload

    store, results = _results(args)
    payload = scaling_payload(store, results, args.group)

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
