"""Figures of the Groups page (pure plotly builders): median and interquartile band of H and R per group
against step, and the runs as points (ceiling against entropy spent, coloured by group, with each group's
median), readable at hundreds of runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.grouping import GroupBand
from plots.colors import PALETTE, with_alpha
from plots.text import plotly_text, run_label

#: more runs than this in the runs-as-points view: smaller, lighter markers and no interval bars by default
MANY_POINTS = 60


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """A colour per group (sorted order; the palette repeats past 16 groups)."""
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(sorted(set(groups)))}


def bands_figure(entropy: Sequence[GroupBand], performance: Sequence[GroupBand], *, height: int = 720) -> go.Figure:
    """H (top) and R (bottom) against step: per group the median line and the interquartile band."""
    colors = group_colors([b.group for b in (*entropy, *performance)])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("policy entropy H: median and interquartile range per group",
                                        "performance R: median and interquartile range per group"))
    traces: list[tuple[go.Scatter, int]] = []
    shown: set[str] = set()
    for row, bands, sym in ((1, entropy, "H"), (2, performance, "R")):
        for b in bands:
            ok = b.n_runs > 0
            if not ok.any():
                continue
            color, name = colors[b.group], plotly_text(b.group)
            x = b.step[ok]
            # the band as one closed polygon (q75 forward, q25 back): one trace, no dependence on trace order
            traces.append((go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[b.q75[ok], b.q25[ok][::-1]], fill="toself",
                                      mode="lines", line={"width": 0}, fillcolor=with_alpha(color, 0.2),
                                      hoverinfo="skip", legendgroup=name, showlegend=False, name=name), row))
            traces.append((go.Scatter(
                x=x, y=b.median[ok], mode="lines", line={"color": color, "width": 2}, name=name, legendgroup=name,
                showlegend=b.group not in shown, customdata=np.c_[b.q25[ok], b.q75[ok], b.n_runs[ok]],
                hovertemplate=f"group: {name}<br>step %{{x:.0f}}<br>median {sym} %{{y:.4f}}<br>"
                              "interquartile %{customdata[0]:.4f} – %{customdata[1]:.4f}<br>"
                              "%{customdata[2]:.0f} runs<extra></extra>"), row))
            shown.add(b.group)
    if traces:
        fig.add_traces([t for t, _ in traces], rows=[r for _, r in traces], cols=[1] * len(traces))
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(height=height, margin={"t": 40, "r": 10}, hovermode="closest",
                      legend={"title": {"text": "group"}})
    return fig


def points_figure(points: pd.DataFrame, *, intervals: bool | None = None, height: int = 560) -> go.Figure:
    """Ceiling against entropy spent, one point per run coloured by group (with its interval bars when
    ``intervals``; default: up to ``MANY_POINTS`` runs), and each group's median as a large outlined marker.
    Runs without a ceiling or without entropy are left out (the page counts them)."""
    ok = points.dropna(subset=["ceiling", "entropy spent"])
    many = len(ok) > MANY_POINTS
    bars = (not many) if intervals is None else intervals
    colors = group_colors(list(points["group"]))
    fig = go.Figure()
    for group, part in ok.groupby("group", sort=True):
        color = colors[group]
        name = plotly_text(group)
        text = [plotly_text(run_label(r, i)) + ("" if s == "ok" else f"<br>status: {plotly_text(s)}")
                for r, i, s in zip(part["run"], part["id"], part["status"], strict=True)]
        err = {"type": "data", "symmetric": False, "array": (part["ceiling hi"] - part["ceiling"]).to_numpy(),
               "arrayminus": (part["ceiling"] - part["ceiling lo"]).to_numpy(), "color": with_alpha(color, 0.35),
               "thickness": 1, "width": 0, "visible": bars}
        fig.add_trace(go.Scatter(
            x=part["entropy spent"], y=part["ceiling"], mode="markers", name=name, legendgroup=name, text=text,
            marker={"color": with_alpha(color, 0.7 if many else 0.9), "size": 6 if many else 9,
                    "line": {"width": 0.5, "color": "white"}},
            error_y=err, customdata=np.c_[part["ceiling lo"], part["ceiling hi"], part["H first"], part["H last"]],
            hovertemplate="%{text}<br>entropy spent %{x:.1%} (H %{customdata[2]:.3f} → %{customdata[3]:.3f})<br>"
                          "ceiling %{y:.4f} [%{customdata[0]:.4f}, %{customdata[1]:.4f}]<extra></extra>"))
    med = ok.groupby("group", sort=True).agg(x=("entropy spent", "median"), y=("ceiling", "median"),
                                             n=("ceiling", "size"))
    if len(med):
        fig.add_trace(go.Scatter(
            x=med["x"], y=med["y"], mode="markers", name="group median",
            marker={"symbol": "diamond", "size": 16, "color": [colors[g] for g in med.index],
                    "line": {"width": 2, "color": "black"}},
            text=[plotly_text(g) for g in med.index], customdata=med["n"],
            hovertemplate="group: %{text} (%{customdata} runs)<br>median entropy spent %{x:.1%}<br>"
                          "median ceiling %{y:.4f}<extra></extra>"))
    fig.update_layout(xaxis={"title": "entropy spent (H_first − H_last) / H_first", "tickformat": ".0%"},
                      yaxis={"title": "ceiling R(H=0) of the fitted law"}, height=height, margin={"t": 30},
                      legend={"title": {"text": "group"}}, hovermode="closest")
    return fig
