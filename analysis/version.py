"""The version of the analysis code: bumped whenever what ``analysis.run`` computes changes; stored analyses made
by another version are stale (recomputed by writers, computed in memory by readers)."""

from typing import Any

ANALYSIS_VERSION = 6  # 3: run-health findings (analysis.health); 4: replay and stored cross-run results;
#                       5: every stored analysis carries ``schema_version``; 6: the replay's forecasts fitted
#                       in one batch per run (the same numbers to about 12 digits: sums in another order)

#: the version of the shape of every ``--json`` document and stored analysis (README, "JSON documents"):
#: bumped when a key is renamed or removed or changes meaning; adding a key keeps it
SCHEMA_VERSION = 1

#: the kind of the per-run analysis row in the ``analyses`` table
KIND = "summary"

#: the per-run row of the results across runs (replay rows or live headline) in the ``analyses`` table
FORECAST_KIND = "forecast"

#: the per-run row of its health findings in context (ranked among the finished runs, told the live forecast)
HEALTH_KIND = "health"

#: the kind of the store-wide replay summary in the ``cross_run`` table
CROSS_RUN_KIND = "replay"

#: the version of what the cross-run step stores (``analysis.pipeline.refresh_cross_run``): stored results of
#: another version are not current (readers compute them in memory, the next writer stores them again)
CROSS_RUN_VERSION = 2  # 2: each run's health findings in context (``HEALTH_KIND`` rows)


def versioned(doc: Any) -> Any:
    """A document with ``schema_version``: a dict gets the key; a list (``runs --json``, ``fit --json``) gets it in
    every row, so its shape stays a list. Anything else is returned as it is."""
    if isinstance(doc, dict):
        return {**doc, "schema_version": SCHEMA_VERSION}
    if isinstance(doc, list):
        return [versioned(row) if isinstance(row, dict) else row for row in doc]
    return doc
