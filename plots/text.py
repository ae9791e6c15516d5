"""User strings (run names, tags, keys) made safe for plotly, which renders a subset of HTML in trace names,
legend titles, annotations and hover text: a run named ``<b>x</b>`` would turn bold (and anything tag-like is
parsed). ``plotly_text`` escapes ``&``, ``<`` and ``>`` as entities, which plotly shows literally."""

from __future__ import annotations

from typing import Any


def plotly_text(value: Any) -> str:
    """``value`` as text that plotly displays literally (no markup)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def run_label(name: Any, run_id: int) -> str:
    """How a run is named in pickers and legends (before any escaping): ``name (#id)``."""
    return f"{name} (#{int(run_id)})"
