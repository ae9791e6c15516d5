"""The version of the analysis code: bumped whenever what ``analysis.run`` computes changes; stored analyses made
by another version are stale (recomputed by writers, computed in memory by readers)."""

ANALYSIS_VERSION = 3  # 3: run-health findings (analysis.health)

#: the kind of the per-run analysis row in the ``analyses`` table
KIND = "summary"
