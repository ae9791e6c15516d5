"""The floor under the Collapse page: Streamlit and plotly alone drawing as many lines and points as the page
does for N runs (two charts' worth in one figure, N lines each), with no widgets, no store and no table.
``BENCH_FLOOR_RUNS`` sets N; each line gets the page's own per-line budget."""

from __future__ import annotations

import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.collapse_figure import WEBGL_TRACES, marker_points
from plots.downsample import trace_budget

n_runs = int(os.environ.get("BENCH_FLOOR_RUNS", "10"))
n_points = trace_budget(2 * n_runs, marker_points(n_runs))
trace = go.Scattergl if 2 * n_runs > WEBGL_TRACES else go.Scatter
x = np.arange(n_points) * (20_000 / n_points)
fig = make_subplots(rows=2, cols=1, shared_xaxes=True)
for i in range(n_runs):
    fig.add_trace(trace(x=x, y=np.exp(-x / (3_000 + 50 * i)) + 0.05, mode="lines", showlegend=False), row=1, col=1)
    fig.add_trace(trace(x=x, y=0.7 - 0.5 * np.exp(-x / (2_000 + 50 * i)), mode="lines", showlegend=False),
                  row=2, col=1)
st.title("Collapse")
st.plotly_chart(fig)
