"""The version of the analysis code: bumped whenever what ``analysis.run`` computes changes; stored analyses made
by another version are stale (recomputed by writers, computed in memory by readers)."""

ANALYSIS_VERSION = 4  # 3: run-health findings (analysis.health); 4: replay and stored cross-run results

#: the kind of the per-run analysis row in the ``analyses`` table
KIND = "summary"

#: the per-run row of the results across runs (replay rows or live headline) in the ``analyses`` table
FORECAST_KIND = "forecast"

#: the kind of the store-wide replay summary in the ``cross_run`` table
CROSS_RUN_KIND = "replay"
