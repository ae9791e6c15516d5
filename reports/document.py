"""What a report shows, and the JSON report itself: the documents ``runs --json``, ``fit --json`` and
``backtest --json`` print, restricted to the selected runs, with the stored analyses behind them (for the
figures). ``ReportData.document()`` is ``report.json``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from analysis.results import RunAnalysis
from analysis.version import versioned
from db import Store
from db.values import json_safe
from reports.errors import ReportError

SCHEMA = "entropy-dash.report/1"


@dataclass(frozen=True)
class ReportData:
    """What a report shows: the three CLI documents (filtered to the selected runs) and the stored results."""

    generated_at: str
    store: str
    filters: dict[str, list[str]]
    runs: list[dict[str, Any]]
    fit: list[dict[str, Any]]
    backtest: dict[str, Any]
    results: dict[int, RunAnalysis] = field(repr=False)  # run id → stored analysis (for the figures)

    def document(self) -> dict[str, Any]:
        """The JSON report (schema in README, "Reports")."""
        return json_safe(versioned({"schema": SCHEMA, "generated_at": self.generated_at, "store": self.store,
                                    "filters": self.filters, "runs": versioned(self.runs), "fit": versioned(self.fit),
                                    "backtest": versioned(self.backtest)}))


def collect_report(store: Store, experiments: Sequence[str] | None = None,
                   runs: Sequence[str] | None = None) -> ReportData:
    """The payloads of ``runs``/``fit``/``backtest --json``, restricted to the selected runs.

    ``experiments`` match a run's project (MLflow experiment, W&B project); ``runs`` match a run id or
    name. Both given: runs matching both. A name that matches nothing is an error naming it. The backtest is
    a view of the stored replay: with a selection, its summary (MAE, coverage per method, sentence) is taken
    over the selected runs' replay rows; weights and intervals were learned, as stored, on every finished run
    of the store (nothing is refitted for a report).
    Nothing is written to the store: stale analyses are computed in memory.
    """
    from analysis.payloads import backtest_payload, fit_payload, runs_payload
    from analysis.pipeline import current_cross_run, current_results

    all_results = current_results(store)
    cross = current_cross_run(store, results=all_results)
    runs_doc = runs_payload(store, all_results)
    fit_doc = fit_payload(store, all_results, cross=cross)
    keep = _select(runs_doc, list(experiments or []), list(runs or []))
    selected = all_results if keep is None else [r for r in all_results if r.run_id in keep]
    if keep is not None:
        runs_doc = [r for r in runs_doc if r["run_id"] in keep]
        fit_doc = [r for r in fit_doc if r["run_id"] in keep]
    bt_doc = backtest_payload(store, selected, cross=cross)
    return ReportData(generated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                      store=store.url, filters={"experiments": list(experiments or []), "runs": list(runs or [])},
                      runs=runs_doc, fit=fit_doc, backtest=bt_doc,
                      results={int(r.run_id): r for r in selected})


def _select(runs_doc: list[dict[str, Any]], experiments: list[str], runs: list[str]) -> set[int] | None:
    if not experiments and not runs:
        return None
    keep = {r["run_id"] for r in runs_doc}
    if experiments:
        projects = {r["project"] for r in runs_doc}
        unknown = [e for e in experiments if e not in projects]
        if unknown:
            raise ReportError(f"no runs in experiment {unknown[0]!r}; experiments in the store: "
                              f"{', '.join(sorted(str(p) for p in projects if p)) or 'none'}")
        keep &= {r["run_id"] for r in runs_doc if r["project"] in experiments}
    if runs:
        for want in runs:
            if not any(str(r["run_id"]) == want or r["run"] == want for r in runs_doc):
                raise ReportError(f"no run {want!r} in the store: see `entropy-dash runs`")
        keep &= {r["run_id"] for r in runs_doc if str(r["run_id"]) in runs or r["run"] in runs}
    if not keep:
        raise ReportError(f"no run matches both --experiment {experiments} and --run {runs}")
    return keep
