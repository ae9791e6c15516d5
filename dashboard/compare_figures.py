"""Cross-run figures (Compare page): coefficients per run, coefficients vs model size with the log-linear
fit, overlaid fitted laws, and the ceiling lift over a baseline run. Pure plotly builders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.results import RunAnalysis
from models.intervals import Z95
from models.scaling import ScalingFit
from plots.colors import run_color
from plots.run_figures import law_from_result
from plots.text import plotly_text, run_label


def coefficients_figure(table: pd.DataFrame) -> go.Figure:
    """a, b and the ceiling per run (points with ±1.96·se / the ceiling's interval)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(f"a (± {Z95:.2f} se)", f"b (± {Z95:.2f} se)",
                                                        "ceiling b − a (95% CI)"))
    labels = [plotly_text(run_label(r, i)) for r, i in zip(table["run"], table["id"], strict=True)]
    colors = [run_color(i) for i in table["id"]]
    for col, (val, lo, hi) in enumerate((
        (table["a"], table["a"] - Z95 * table["a se"], table["a"] + Z95 * table["a se"]),
        (table["b"], table["b"] - Z95 * table["b se"], table["b"] + Z95 * table["b se"]),
        (table["ceiling"], table["ceiling_lo"], table["ceiling_hi"]),
    ), start=1):
        fig.add_trace(go.Scatter(x=val, y=labels, mode="markers", marker={"color": colors, "size": 10},
                                 error_x={"type": "data", "symmetric": False, "array": hi - val, "arrayminus": val - lo},
                                 showlegend=False, hovertemplate="%{y}<br>%{x:.4f}<extra></extra>"), row=1, col=col)
    fig.update_yaxes(showticklabels=False, col=2)
    fig.update_yaxes(showticklabels=False, col=3)
    fig.update_layout(height=max(260, 40 + 28 * len(table)), margin={"t": 40, "l": 10})
    return fig


def scaling_figure(points: pd.DataFrame, fits: Mapping[str, ScalingFit | str]) -> go.Figure:
    """a and b against model size (log axis), each with its log-linear fit and 95% confidence band."""
    coefs = [c for c in ("a", "b") if c in points]
    fig = make_subplots(rows=1, cols=len(coefs), subplot_titles=[f"{c} vs model size" for c in coefs])
    for col, coef in enumerate(coefs, start=1):
        fig.add_trace(go.Scatter(
            x=points["size"], y=points[coef], mode="markers",
            marker={"color": [run_color(i) for i in points["id"]], "size": 10},
            customdata=np.c_[points["id"]], meta=[plotly_text(r) for r in points["run"]],
            text=[plotly_text(r) for r in points["run"]], showlegend=False,
            hovertemplate="run: %{text}<br>size %{x:g}B<br>" + coef + " %{y:.4f}<extra></extra>"), row=1, col=col)
        fit = fits.get(coef)
        if isinstance(fit, ScalingFit):
            grid = np.geomspace(fit.size_min, fit.size_max, 60)
            mid = fit.predict(grid)
            lo, hi = fit.interval(grid)
            fig.add_trace(go.Scatter(x=np.r_[grid, grid[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", mode="none",
                                     fillcolor="rgba(100,100,100,0.15)", hoverinfo="skip", showlegend=False), row=1, col=col)
            fig.add_trace(go.Scatter(x=grid, y=mid, mode="lines", line={"color": "black"}, showlegend=False,
                                     hovertemplate=f"{coef} = {fit.k:.3g}·ln(size) + {fit.c:.3g} (R² {fit.r2:.2f})"
                                                   "<br>size %{x:g}B: %{y:.4f}<extra></extra>"), row=1, col=col)
            fig.layout.annotations[col - 1].text = (f"{coef} = {fit.k:.3g}·ln(size) + {fit.c:.3g}  "
                                                    f"(R² {fit.r2:.2f}, n={fit.n})")
    fig.update_xaxes(type="log", title_text="model size (billions of parameters)")
    fig.update_layout(height=380, margin={"t": 50})
    return fig


def laws_figure(results: Sequence[RunAnalysis]) -> go.Figure:
    """Each run's fitted law R(H): solid over its observed entropy range, dotted down to H = 0 (the ceiling)."""
    fig = go.Figure()
    for r in results:
        if r.law is None:
            continue
        fit = law_from_result(r.law.to_dict())
        color = run_color(r.run_id)
        label = plotly_text(run_label(r.run, r.run_id))
        meta = plotly_text(r.run)
        seen = np.linspace(fit.h_min, fit.h_max, 60)
        below = np.linspace(0.0, fit.h_min, 30)
        hover = "run: %{meta}<br>H %{x:.3f}<br>R %{y:.4f}<extra></extra>"
        fig.add_trace(go.Scatter(x=seen, y=fit.predict(seen), mode="lines", line={"color": color, "width": 2},
                                 name=label, legendgroup=str(r.run_id), meta=meta, hovertemplate=hover))
        fig.add_trace(go.Scatter(x=below, y=fit.predict(below), mode="lines", line={"color": color, "dash": "dot"},
                                 legendgroup=str(r.run_id), showlegend=False, meta=meta,
                                 hovertemplate=hover.replace("<extra>", " (extrapolated)<extra>")))
        fig.add_trace(go.Scatter(x=[0.0], y=[fit.ceiling], mode="markers", marker={"color": color, "symbol": "star", "size": 11},
                                 legendgroup=str(r.run_id), showlegend=False, meta=meta,
                                 hovertemplate="run: %{meta}<br>ceiling %{y:.4f}"
                                               f"<br>95% CI {fit.ceiling_lo:.4f} – {fit.ceiling_hi:.4f}<extra></extra>"))
    fig.update_layout(xaxis_title="entropy H", yaxis_title="fitted performance R", height=460, margin={"t": 20})
    return fig


def lift_figure(lift: pd.DataFrame) -> go.Figure:
    """Ceiling lift of each run over the baseline (bars) with the 95% interval of the difference."""
    rows = lift[~lift["baseline"]]
    labels = [plotly_text(run_label(r, i)) for r, i in zip(rows["run"], rows["id"], strict=True)]
    fig = go.Figure(go.Bar(
        x=rows["lift"], y=labels, orientation="h", marker={"color": [run_color(i) for i in rows["id"]]},
        error_x={"type": "data", "symmetric": False, "array": rows["lift_hi"] - rows["lift"],
                 "arrayminus": rows["lift"] - rows["lift_lo"]},
        hovertemplate="%{y}<br>lift %{x:+.4f}<extra></extra>"))
    base = lift[lift["baseline"]]
    title = plotly_text(run_label(base["run"].iloc[0], base["id"].iloc[0])) if len(base) else "baseline"
    fig.add_vline(x=0, line_color="black")
    fig.update_layout(xaxis_title=f"ceiling − ceiling of {title}", height=max(220, 60 + 32 * len(rows)),
                      margin={"t": 20, "l": 10})
    return fig
