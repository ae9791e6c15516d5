"""Figures of the ceiling report: the per-run plotly figures the Ceiling page draws too (``plots.run_figures``),
fed from a run's stored series and analysis (no I/O here) and titled for a static page.

Run names drawn by plotly go through ``plotly_text`` (plotly reads a small HTML subset in trace names and
hover text, so a run called ``<b>x</b>`` would otherwise be drawn bold; escaped, it is drawn as typed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from analysis.headline import HeadlineSpan, path_of_headline
from analysis.results import RunAnalysis
from models.align import align
from plots.run_figures import ceiling_figure
from plots.run_figures import forecast_figure as step_figure
from plots.text import plotly_text

__all__ = ["fit_figure", "forecast_figure", "plotly_text"]


def fit_figure(h: pd.Series, r: pd.Series, result: RunAnalysis) -> go.Figure:
    """R vs H: the paired points (warm-up ones apart), the fitted law with its band and the bounded ceiling."""
    pairs = align(h, r).to_frame()
    warm = pairs["step"].isin(list(result.excluded_steps or ()))
    fig = ceiling_figure(pairs[~warm], result.law.to_dict(), plotly_text(result.run), result.run_id, pairs[warm])
    fig.update_layout(height=420, title={"text": "R vs H: fitted law and ceiling", "x": 0.01})
    return fig


def forecast_figure(h: pd.Series, r: pd.Series, result: RunAnalysis, headline: Mapping[str, Any],
                    span: HeadlineSpan) -> go.Figure:
    """R vs step with the headline forecast as a path and band: a finished run's backtest (``headline`` is its
    row of ``backtest --json``: predicted vs observed final) or a live run's forecast to its planned end
    (``headline`` is its ``fit --json`` forecast); ``span`` says which (``HeadlineSpan.of_backtest``/``of_live``)."""
    live = span.live
    path = path_of_headline(h, r, result, headline, span)
    fig = step_figure(r, None if result.law is None else result.law.to_dict(), result.run, result.run_id, path=path,
                      cutoff_step=span.start, backtest=None if live else headline, live=headline if live else None,
                      excluded_steps=list(result.excluded_steps or ()))
    title = (f"forecast to the planned end (step {int(span.end)})" if live
             else f"backtest from the first {headline['cutoff']:.0%}: the headline forecast vs what happened")
    fig.update_layout(height=460, title={"text": title, "x": 0.01})
    return fig
