"""Plotly figure builders: pure functions of frames and analysis results (no Streamlit, no store)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models.law import LawFit

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22")


def run_color(run_id: int) -> str:
    """A colour that stays the same for a run on every page."""
    return PALETTE[int(run_id) % len(PALETTE)]


def law_from_result(law: Mapping[str, Any]) -> LawFit:
    fields = LawFit.__dataclass_fields__
    return LawFit(**{k: law[k] for k in fields if k in law})


def ceiling_figure(pairs: pd.DataFrame, law: Mapping[str, Any], run: str, run_id: int = 0) -> go.Figure:
    """R vs H: the paired points, the fitted law with its confidence band, and the ceiling at H = 0."""
    fit = law_from_result(law)
    color = run_color(run_id)
    h_hi = max(float(pairs["entropy"].max()), fit.h_max) * 1.05
    grid = np.linspace(0.0, h_hi, 200)
    lo, hi = fit.interval(grid)
    pct = round(fit.confidence * 100)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.r_[grid, grid[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", mode="none",
                             fillcolor="rgba(100,100,100,0.18)", name=f"{pct}% confidence band", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=grid, y=fit.predict(grid), mode="lines", line={"color": color},
                             name=f"R = −{fit.a:.3g}·e^H + {fit.b:.3g}  (R² {fit.r2:.3f})"))
    fig.add_trace(go.Scatter(
        x=pairs["entropy"], y=pairs["performance"], mode="markers", marker={"color": color, "size": 7},
        name=f"{run} (n={len(pairs)})", customdata=pairs[["step"]].to_numpy(),
        hovertemplate="run: %{meta}<br>step %{customdata[0]}<br>H %{x:.4f}<br>R %{y:.4f}<extra></extra>",
        meta=run))
    fig.add_trace(go.Scatter(
        x=[0.0], y=[fit.ceiling], mode="markers", marker={"symbol": "star", "size": 14, "color": "black"},
        error_y={"type": "data", "symmetric": False, "array": [fit.ceiling_hi - fit.ceiling],
                 "arrayminus": [fit.ceiling - fit.ceiling_lo]},
        name=f"ceiling R(H=0) = {fit.ceiling:.3f} [{fit.ceiling_lo:.3f}, {fit.ceiling_hi:.3f}]",
        hovertemplate="ceiling %{y:.4f}<extra></extra>"))
    fig.update_layout(xaxis_title="entropy H", yaxis_title="performance R", legend={"orientation": "h", "y": -0.2},
                      margin={"t": 30}, height=480)
    return fig


def curves_figure(entropy: pd.DataFrame, performance: pd.DataFrame, run: str, run_id: int = 0,
                  ceiling: float | None = None) -> go.Figure:
    """H and R against step for one run (entropy on top, performance below, the ceiling as a line)."""
    color = run_color(run_id)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("entropy H", "performance R"))
    fig.add_trace(go.Scatter(x=entropy["step"], y=entropy["value"], mode="lines", line={"color": color},
                             name=f"{run} · H", meta=run,
                             hovertemplate="run: %{meta}<br>step %{x}<br>H %{y:.4f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=performance["step"], y=performance["value"], mode="lines+markers",
                             line={"color": color}, name=f"{run} · R", meta=run,
                             hovertemplate="run: %{meta}<br>step %{x}<br>R %{y:.4f}<extra></extra>"), 2, 1)
    if ceiling is not None and np.isfinite(ceiling):
        fig.add_hline(y=ceiling, line_dash="dash", line_color="black", row=2, col=1,
                      annotation_text=f"ceiling {ceiling:.3f}")
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(height=520, margin={"t": 40}, showlegend=False)
    return fig
