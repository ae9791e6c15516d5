"""Plotly figures of one run (Ceiling page): pure functions of frames and stored analysis results.

Every user string that reaches plotly goes through ``plotly_text`` (plotly renders a subset of HTML).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.colors import run_color, with_alpha
from dashboard.text import plotly_text
from models.law import LawFit

__all__ = ["ceiling_figure", "forecast_figure", "law_from_result", "residuals", "residuals_figure", "run_color"]

BAND = "rgba(100,100,100,0.18)"


def law_from_result(law: Mapping[str, Any]) -> LawFit:
    fields = LawFit.__dataclass_fields__
    return LawFit(**{k: law[k] for k in fields if k in law})


def ceiling_figure(pairs: pd.DataFrame, law: Mapping[str, Any], run: str, run_id: int = 0) -> go.Figure:
    """R vs H: the paired points, the fitted law with its confidence band, and the ceiling at H = 0."""
    fit = law_from_result(law)
    color = run_color(run_id)
    h_hi = max(float(pairs["entropy"].max()) if len(pairs) else fit.h_max, fit.h_max) * 1.05
    grid = np.linspace(0.0, h_hi, 200)
    lo, hi = fit.interval(grid)
    pct = round(fit.confidence * 100)
    name = plotly_text(run)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.r_[grid, grid[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", mode="none",
                             fillcolor=BAND, name=f"{pct}% confidence band of the law", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=grid, y=fit.predict(grid), mode="lines", line={"color": color},
                             name=f"R = −{fit.a:.3g}·e^H + {fit.b:.3g}  (R² {fit.r2:.3f})",
                             hovertemplate="law<br>H %{x:.4f}<br>R %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=pairs["entropy"], y=pairs["performance"], mode="markers", marker={"color": color, "size": 7},
        name=f"{name} (n={len(pairs)})", customdata=pairs[["step"]].to_numpy(), meta=name,
        hovertemplate="run: %{meta}<br>step %{customdata[0]}<br>H %{x:.4f}<br>R %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[0.0], y=[fit.ceiling], mode="markers", marker={"symbol": "star", "size": 14, "color": "black"},
        error_y={"type": "data", "symmetric": False, "array": [fit.ceiling_hi - fit.ceiling],
                 "arrayminus": [fit.ceiling - fit.ceiling_lo], "color": "black"},
        name=f"ceiling R(H=0) = {fit.ceiling:.3f} [{fit.ceiling_lo:.3f}, {fit.ceiling_hi:.3f}]",
        hovertemplate=f"ceiling %{{y:.4f}}<br>{pct}% CI {fit.ceiling_lo:.4f} – {fit.ceiling_hi:.4f}<extra></extra>"))
    fig.update_layout(xaxis_title="entropy H", yaxis_title="performance R", legend={"orientation": "h", "y": -0.2},
                      margin={"t": 30}, height=460)
    return fig


def residuals(pairs: pd.DataFrame, law: Mapping[str, Any]) -> pd.DataFrame:
    """Observed minus fitted R for every paired point (columns step, entropy, performance, fitted, residual)."""
    fit = law_from_result(law)
    out = pairs[["step", "entropy", "performance"]].copy()
    out["fitted"] = fit.predict(out["entropy"].to_numpy())
    out["residual"] = out["performance"] - out["fitted"]
    return out


def residuals_figure(pairs: pd.DataFrame, law: Mapping[str, Any], run: str, run_id: int = 0) -> go.Figure:
    """Residuals of the law against step, with ±2σ (σ = the fit's residual standard deviation)."""
    res = residuals(pairs, law)
    sigma = float(law.get("sigma") or 0.0)
    color = run_color(run_id)
    fig = go.Figure()
    if sigma > 0 and len(res):
        x0, x1 = float(res["step"].min()), float(res["step"].max())
        fig.add_trace(go.Scatter(x=[x0, x1, x1, x0], y=[2 * sigma, 2 * sigma, -2 * sigma, -2 * sigma], fill="toself",
                                 mode="none", fillcolor=BAND, name="±2σ of the fit", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=res["step"], y=res["residual"], mode="markers+lines", line={"color": color, "width": 1},
                             marker={"color": color, "size": 6}, name="observed − law", meta=plotly_text(run),
                             customdata=res[["entropy"]].to_numpy(),
                             hovertemplate="run: %{meta}<br>step %{x}<br>H %{customdata[0]:.4f}"
                                           "<br>residual %{y:+.4f}<extra></extra>"))
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(xaxis_title="step", yaxis_title="R − law(H)", height=300, margin={"t": 20},
                      legend={"orientation": "h", "y": -0.3})
    return fig


def forecast_figure(perf: pd.Series, fc: Mapping[str, Any] | None, law: Mapping[str, Any] | None, run: str,
                    run_id: int = 0, *, cutoff_step: float | None = None,
                    backtest: Mapping[str, Any] | None = None) -> go.Figure:
    """R vs step: every evaluation, the cutoff, the law forecast after it with its prediction band, the
    baselines' forecasts (thin), the predicted vs observed final mean, and the ceiling with its interval."""
    color = run_color(run_id)
    name = plotly_text(run)
    fig = go.Figure()
    steps = perf.index.to_numpy(dtype=float)
    if law and steps.size:
        x0, x1 = float(steps.min()), float(steps.max())
        fig.add_trace(go.Scatter(x=[x0, x1, x1, x0], y=[law["ceiling_hi"]] * 2 + [law["ceiling_lo"]] * 2, fill="toself",
                                 mode="none", fillcolor="rgba(0,0,0,0.08)", hoverinfo="skip",
                                 name=f"ceiling 95% CI [{law['ceiling_lo']:.3f}, {law['ceiling_hi']:.3f}] (whole run)"))
        fig.add_trace(go.Scatter(x=[x0, x1], y=[law["ceiling"]] * 2, mode="lines",
                                 line={"color": "black", "dash": "dash"}, name=f"ceiling {law['ceiling']:.3f} (whole run)",
                                 hovertemplate="ceiling %{y:.4f}<extra></extra>"))
    if fc and "cause" not in fc:
        m = fc["methods"]["law"]
        fs = np.asarray(fc["steps"], dtype=float)
        fig.add_trace(go.Scatter(x=np.r_[fs, fs[::-1]], y=np.r_[m["hi"], m["lo"][::-1]], fill="toself", mode="none",
                                 fillcolor=with_alpha(color, 0.18), hoverinfo="skip",
                                 name=f"law forecast {round(fc.get('confidence', 0.95) * 100)}% prediction band"))
        fig.add_trace(go.Scatter(x=fs, y=m["mean"], mode="lines", line={"color": color, "dash": "dash", "width": 2},
                                 name="law forecast (entropy decay → law)",
                                 hovertemplate="law forecast<br>step %{x}<br>R %{y:.4f}<extra></extra>"))
        for method, dash in (("saturating", "dot"), ("last_value", "dashdot"), ("combined", "longdash")):
            if method in fc["methods"]:
                mm = fc["methods"][method]
                fig.add_trace(go.Scatter(x=fs, y=mm["mean"], mode="lines", line={"color": "grey", "dash": dash, "width": 1},
                                         name=f"{method} baseline", visible="legendonly" if method == "combined" else True,
                                         hovertemplate=f"{method}<br>step %{{x}}<br>R %{{y:.4f}}<extra></extra>"))
        if fc.get("ceiling") is not None and fs.size:
            lo, hi = fc.get("ceiling_interval") or (None, None)
            fig.add_trace(go.Scatter(x=[fs.min(), fs.max()], y=[fc["ceiling"]] * 2, mode="lines",
                                     line={"color": color, "dash": "dot", "width": 1},
                                     name=f"ceiling from the cutoff {fc['ceiling']:.3f}"
                                          + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""),
                                     hovertemplate="ceiling from the cutoff %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=steps, y=perf.to_numpy(), mode="markers+lines" if steps.size <= 300 else "lines",
                             line={"color": color, "width": 1}, marker={"color": color, "size": 5}, name=name,
                             meta=name, hovertemplate="run: %{meta}<br>step %{x}<br>R %{y:.4f}<extra></extra>"))
    if backtest and "cause" not in backtest and backtest.get("final_steps"):
        fsx = float(np.mean(backtest["final_steps"]))
        lo, hi = backtest["interval"]
        fig.add_trace(go.Scatter(x=[fsx], y=[backtest["predicted_final"]], mode="markers",
                                 marker={"symbol": "diamond", "size": 12, "color": color, "line": {"color": "black", "width": 1}},
                                 error_y={"type": "data", "symmetric": False, "array": [hi - backtest["predicted_final"]],
                                          "arrayminus": [backtest["predicted_final"] - lo]},
                                 name=f"predicted final mean {backtest['predicted_final']:.3f} [{lo:.3f}, {hi:.3f}]",
                                 hovertemplate="predicted mean of the last evaluations %{y:.4f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[fsx], y=[backtest["observed_final"]], mode="markers",
                                 marker={"symbol": "circle-open", "size": 14, "color": "black", "line": {"width": 2}},
                                 name=f"observed final mean {backtest['observed_final']:.3f}",
                                 hovertemplate="observed mean of the last evaluations %{y:.4f}<extra></extra>"))
    if cutoff_step is not None:
        fig.add_vline(x=cutoff_step, line={"color": "black", "width": 1},
                      annotation_text=f"cutoff step {cutoff_step:.0f}", annotation_position="top left")
    fig.update_layout(xaxis_title="step", yaxis_title="performance R", height=460, margin={"t": 30},
                      legend={"orientation": "h", "y": -0.2})
    return fig
