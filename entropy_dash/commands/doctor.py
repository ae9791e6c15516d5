"""`entropy-dash doctor`: every run's health findings, as stored with its analysis (``analysis.health``), with
where it stands among the store's finished runs and what its live forecast says; exit 1 with ``--fail-on LEVEL``
when a finding reaches that level (for CI), 2 for a usage error (an unknown run or experiment).

Read-only: stale analyses are computed in memory, as every read command does.
"""

from __future__ import annotations

import argparse
from typing import Any

from analysis.results import RunAnalysis
from entropy_dash.commands.output import emit, open_store
from entropy_dash.commands.read import NO_RUNS
from entropy_dash.errors import ConfigError

BADGE = {"critical": "CRIT", "warn": "WARN", "info": "INFO", "ok": " ok ", "skipped": "skip"}


def select(results: list[RunAnalysis], runs: list[str], experiments: list[str]) -> list[RunAnalysis]:
    """The results of the runs asked for (ids or names) and of the experiments asked for; all when neither."""
    if not runs and not experiments:
        return results
    projects = {r.project for r in results}
    for e in experiments:
        if e not in projects:
            raise ConfigError(f"no runs in experiment {e!r}; experiments in the store: "
                              f"{', '.join(sorted(str(p) for p in projects if p)) or 'none'}")
    chosen = []
    for name in runs:
        hit = [r for r in results if str(r.run_id) == name or r.run == name]
        if not hit:
            raise ConfigError(f"no run {name!r} in the store: see `entropy-dash runs`")
        chosen += hit
    chosen += [r for r in results if r.project in experiments]
    seen: set[int] = set()
    return [r for r in chosen if not (r.run_id in seen or seen.add(r.run_id))]


def doctor_document(runs: list[dict[str, Any]], fail_on: str | None) -> dict:
    """``doctor --json``: ``runs`` are ``analysis.health.health_payload``'s rows."""
    from analysis.health import at_least

    hits = at_least(runs, fail_on) if fail_on else []
    return {"fail_on": fail_on, "failing": len(hits), "runs": runs}


def doctor_text(doc: dict[str, Any]) -> str:
    if not doc["runs"]:
        return NO_RUNS
    lines = []
    for r in doc["runs"]:
        lines.append(f"\n{r['run_id']:>4}  {r['run']}  —  {r['progress'] or ''}  (worst: {r['worst']})")
        if not r["findings"]:
            lines.append("      no findings: the run has no points")
        skipped = [f for f in r["findings"] if f["severity"] == "skipped"]
        for f in r["findings"]:
            if f["severity"] == "skipped":
                continue
            bench = f" [{f['benchmark']}]" if f.get("benchmark") else ""
            lines.append(f"  {BADGE[f['severity']]}  {f['detector']}{bench}: {f['sentence']}")
            if f["severity"] in ("warn", "critical"):
                lines += [f"          do: {a}" for a in f["advice"][:3]]
                if f["steps"]:
                    lines.append(f"          keys: {', '.join(f['keys'])}; steps {f['steps'][0]}–{f['steps'][1]}")
        for f in skipped:
            bench = f" [{f['benchmark']}]" if f.get("benchmark") else ""
            lines.append(f"  skip  {f['detector']}{bench}: {f['sentence'].removeprefix('skipped — ')}")
    if doc["fail_on"]:
        lines.append(f"\n{doc['failing']} finding{'s' if doc['failing'] != 1 else ''} at or above "
                     f"{doc['fail_on']}")
    return "\n".join(lines).lstrip("\n")


def cmd_doctor(args: argparse.Namespace) -> int:
    from analysis.pipeline import current_health, current_results

    store = open_store(args, create=False)
    results = current_results(store)
    chosen = select(results, list(args.run or []), list(args.experiment or []))
    doc = doctor_document(current_health(store, chosen, results), args.fail_on)
    emit(args, doc, lambda: doctor_text(doc))
    return 1 if doc["failing"] else 0
