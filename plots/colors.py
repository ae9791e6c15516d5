"""Run colours: the same run has the same colour on every page (keyed on its store id)."""

from __future__ import annotations

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#393b79", "#ad494a", "#637939", "#843c39", "#7b4173", "#3182bd")


def run_color(run_id: int) -> str:
    """A colour that stays the same for a run on every page."""
    return PALETTE[int(run_id) % len(PALETTE)]


def with_alpha(hex_color: str, alpha: float) -> str:
    """``#rrggbb`` as an ``rgba(…)`` string with opacity ``alpha``."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"
