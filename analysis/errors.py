"""Errors of the analysis layer."""

from __future__ import annotations


class AnalysisError(Exception):
    """A request the analysis cannot answer (an unknown run, a cutoff out of range…)."""
