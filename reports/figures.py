"""Figures of the ceiling report: the per-run plotly figures of the dashboard (``dashboard.figures``), fed
from a run's stored series and analysis (no I/O here) and titled for a static page.

Run names drawn by plotly go through ``plotly_text`` (plotly reads a small HTML subset in trace names and
hover text, so a run called ``<b>x</b>`` would otherwise be drawn bold; escaped, it is drawn as typed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.forecasting import headline_path
from analysis.run import warmup_mode
from dashboard.figures import ceiling_figure
from dashboard.figures import forecast_figure as step_figure
from dashboard.text import plotly_text
from models.align import align
from models.metric_range import MetricRange

__all__ = ["fit_figure", "forecast_figure", "plotly_text"]


def fit_figure(h: pd.Series, r: pd.Series, result: Mapping[str, Any]) -> go.Figure:
    """R vs H: the paired points (warm-up ones apart), the fitted law with its band and the bounded ceiling."""
    pairs = align(h, r).to_frame()
    warm = pairs["step"].isin(result.get("excluded_steps") or [])
    fig = ceiling_figure(pairs[~warm], result["law"], plotly_text(result["run"]), result["run_id"], pairs[warm])
    fig.update_layout(height=420, title={"text": "R vs H: fitted law and ceiling", "x": 0.01})
    return fig


def forecast_figure(h: pd.Series, r: pd.Series, result: Mapping[str, Any],
                    headline: Mapping[str, Any]) -> go.Figure:
    """R vs step with the headline forecast as a path and band: a finished run's backtest (``headline`` is its
    row of ``backtest --json``: predicted vs observed final) or a live run's forecast to its planned end
    (``headline`` is its ``fit --json`` forecast)."""
    live = "horizon_step" in headline
    rng = MetricRange.from_dict(result["range"])
    start = float(headline["from_step"] if live else headline["cutoff_step"])
    end = float(headline["horizon_step"] if live else headline.get("planned_end_step") or np.mean(headline["final_steps"]))
    path = headline_path(h, r, cutoff_step=start, end_step=end, rng=rng, warmup=warmup_mode(result),
                         weights=headline["weights"], final=headline["predicted_final"], interval=headline["interval"])
    fig = step_figure(r, result.get("law"), result["run"], result["run_id"], path=path, cutoff_step=start,
                      backtest=None if live else headline, live=headline if live else None,
                      excluded_steps=result.get("excluded_steps") or [])
    title = (f"forecast to the planned end (step {int(end)})" if live
             else f"backtest from the first {headline['cutoff']:.0%}: the headline forecast vs what happened")
    fig.update_layout(height=460, title={"text": title, "x": 0.01})
    return fig
