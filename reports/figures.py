"""Figures of the ceiling report: pure functions of a run's series and its stored analysis (no store, no I/O).

The R-vs-H fit is ``dashboard.figures.ceiling_figure``; this module adds the backtest forecast figure and
the escaping of names that plotly draws (plotly reads a small HTML subset in trace names and hover text,
so a run called ``<b>x</b>`` would otherwise be drawn bold; escaped, it is drawn as typed).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.pipeline import metric_bounds, model_curves
from dashboard.figures import ceiling_figure, run_color
from models.align import align
from models.backtest import cutoff_step_of
from models.errors import FitError
from models.forecast import forecast


def plotly_text(s: str) -> str:
    """A user string as plotly text: its pseudo-HTML tags shown literally."""
    return html.escape(str(s), quote=False)


def fit_figure(h: pd.Series, r: pd.Series, law: Mapping[str, Any], run: str, run_id: int) -> go.Figure:
    """R vs H: the paired points, the fitted law with its band and the ceiling at H = 0."""
    pairs = align(h, r).to_frame()
    fig = ceiling_figure(pairs, law, plotly_text(run), run_id)
    fig.update_layout(height=420, title={"text": "R vs H: fitted law and ceiling", "x": 0.01})
    return fig


def forecast_figure(h: pd.Series, r: pd.Series, backtest: Mapping[str, Any], run: str, run_id: int) -> go.Figure:
    """The backtest: entropy and performance over steps, the cutoff, the law's forecast made from the points
    before it (entropy decay → law, with its 95% prediction band) and the headline forecast of the final
    score against what was observed.

    ``backtest`` is the run's stored backtest (``analysis.run_backtest``). The forecast paths are recomputed
    with the same inputs as the backtest (same cutoff step, horizon, bounds and seed), so the band drawn is
    the one behind the stored numbers.
    """
    color = run_color(run_id)
    name = plotly_text(run)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.09, row_heights=[0.4, 0.6],
                        subplot_titles=("entropy H", "performance R"))
    cstep = cutoff_step_of(h.index.to_numpy(), r.index.to_numpy(), float(backtest["cutoff"]))
    before_h, before_r = h.index <= cstep, r.index <= cstep
    for row, s, before, label in ((1, h, before_h, "H"), (2, r, before_r, "R")):
        mode = "lines" if row == 1 else "markers"
        fig.add_trace(go.Scatter(x=s.index[before], y=s.to_numpy()[before], mode=mode, line={"color": color},
                                 marker={"color": color, "size": 6}, name=f"{label} used for the forecast",
                                 legendgroup="used", showlegend=row == 2), row, 1)
        fig.add_trace(go.Scatter(x=s.index[~before], y=s.to_numpy()[~before], mode=mode,
                                 line={"color": "#9a9a9a"}, marker={"color": "#9a9a9a", "size": 6},
                                 name=f"{label} after the cutoff (not used)", legendgroup="after",
                                 showlegend=row == 2), row, 1)
    fc = _forecast(h, r, cstep)
    if fc is not None:
        steps = fc.steps
        law = fc.methods["law"]
        fig.add_trace(go.Scatter(x=steps, y=fc.entropy_forecast, mode="lines", line={"color": "black", "dash": "dot"},
                                 name="entropy forecast (decay fit)", showlegend=True), 1, 1)
        fig.add_trace(go.Scatter(x=np.r_[steps, steps[::-1]], y=np.r_[law.hi, law.lo[::-1]], fill="toself",
                                 mode="none", fillcolor="rgba(0,0,0,0.12)", hoverinfo="skip",
                                 name=f"law forecast {round(fc.confidence * 100)}% band"), 2, 1)
        fig.add_trace(go.Scatter(x=steps, y=law.mean, mode="lines", line={"color": "black", "dash": "dash"},
                                 name="law forecast R = b − a·e^Ĥ"), 2, 1)
    final_steps = list(backtest.get("final_steps") or [])
    if final_steps:
        x = float(np.mean(final_steps))
        lo, hi = backtest["interval"]
        pred = backtest["predicted_final"]
        fig.add_trace(go.Scatter(
            x=[x], y=[pred], mode="markers", marker={"symbol": "diamond", "size": 12, "color": "#d62728"},
            error_y={"type": "data", "symmetric": False, "array": [hi - pred], "arrayminus": [pred - lo]},
            name=f"{backtest['method']} forecast of the final score {pred:.3f} [{lo:.3f}, {hi:.3f}]"), 2, 1)
        fig.add_trace(go.Scatter(x=[x], y=[backtest["observed_final"]], mode="markers",
                                 marker={"symbol": "x", "size": 12, "color": "black"},
                                 name=f"observed final score {backtest['observed_final']:.3f} "
                                      f"(mean of the last {len(final_steps)} evaluations)"), 2, 1)
    for row in (1, 2):
        fig.add_vline(x=cstep, line_dash="dot", line_color="#555", row=row, col=1)
    fig.add_annotation(x=cstep, y=1.0, xref="x", yref="paper", text=f"cutoff step {int(cstep)}",
                       showarrow=False, xanchor="left", yanchor="bottom")
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(height=520, margin={"t": 50}, legend={"orientation": "h", "y": -0.18},
                      title={"text": f"backtest of {name}", "x": 0.01})
    return fig


def _forecast(h: pd.Series, r: pd.Series, cstep: float):  # noqa: ANN202 - models.forecast.Forecast | None
    h, r = model_curves(h, r)  # the curves the stored backtest was computed on
    after = r.index.to_numpy(dtype=float) > cstep
    if not after.any():
        return None
    try:
        return forecast(h.index.to_numpy(), h.to_numpy(), r.index.to_numpy(), r.to_numpy(), cutoff_step=cstep,
                        horizon_steps=r.index.to_numpy(dtype=float)[after], bounds=metric_bounds(r))
    except FitError:
        return None
