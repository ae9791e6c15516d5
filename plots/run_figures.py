"""Plotly figures of one run (Ceiling page): pure functions of frames and stored analysis results.

Every user string that reaches plotly goes through ``plotly_text`` (plotly renders a subset of HTML).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from models.law import LawFit
from plots.colors import run_color, with_alpha
from plots.downsample import MAX_POINTS, downsample_index
from plots.text import plotly_text

__all__ = ["ceiling_figure", "forecast_figure", "law_from_result", "residuals", "residuals_figure", "run_color"]

BAND = "rgba(100,100,100,0.18)"


def drawn(frame: pd.DataFrame, y: str) -> pd.DataFrame:
    """At most ``MAX_POINTS`` rows of ``frame`` to draw (MinMaxLTTB over step, extremes of ``y`` kept): a run
    evaluated every step has 20,000 pairs, which SVG markers draw in seconds; the fit uses them all."""
    if len(frame) <= MAX_POINTS:
        return frame
    order = frame.sort_values("step")
    idx = downsample_index(order["step"].to_numpy(dtype=float), order[y].to_numpy(dtype=float))
    return order.iloc[idx]


def law_from_result(law: Mapping[str, Any]) -> LawFit:
    fields = LawFit.__dataclass_fields__
    return LawFit(**{k: law[k] for k in fields if k in law})


def ceiling_figure(pairs: pd.DataFrame, law: Mapping[str, Any], run: str, run_id: int = 0,
                   excluded: pd.DataFrame | None = None) -> go.Figure:
    """R vs H: the paired points, the fitted law with its confidence band, and the ceiling at H = 0 (bounded to
    the metric's range; the law's own b − a named when it leaves it). ``excluded``: warm-up pairs, drawn
    apart and not part of the fit."""
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
    shown = drawn(pairs, "performance")
    fig.add_trace(go.Scatter(
        x=shown["entropy"], y=shown["performance"], mode="markers", marker={"color": color, "size": 7},
        name=f"{name} (n={len(pairs)}" + (f", {len(shown):,} drawn)" if len(shown) < len(pairs) else ")"),
        customdata=shown[["step"]].to_numpy(), meta=name,
        hovertemplate="run: %{meta}<br>step %{customdata[0]}<br>H %{x:.4f}<br>R %{y:.4f}<extra></extra>"))
    if excluded is not None and len(excluded):
        fig.add_trace(go.Scatter(
            x=excluded["entropy"], y=excluded["performance"], mode="markers",
            marker={"color": "#9a9a9a", "size": 9, "symbol": "x"}, name=f"warm-up, excluded from the fit "
            f"(n={len(excluded)})", customdata=excluded[["step"]].to_numpy(),
            hovertemplate="excluded (warm-up)<br>step %{customdata[0]}<br>H %{x:.4f}<br>R %{y:.4f}<extra></extra>"))
    c, c_lo, c_hi = law["ceiling"], law["ceiling_lo"], law["ceiling_hi"]  # bounded to the metric's range
    raw = law.get("ceiling_raw", c)
    beyond = f"; the law's own b − a = {raw:.3f} leaves the range" if abs(raw - c) > 1e-12 else ""
    fig.add_trace(go.Scatter(
        x=[0.0], y=[c], mode="markers", marker={"symbol": "star", "size": 14, "color": "black"},
        error_y={"type": "data", "symmetric": False, "array": [c_hi - c], "arrayminus": [c - c_lo], "color": "black"},
        name=f"ceiling R(H=0) = {c:.3f} [{c_lo:.3f}, {c_hi:.3f}]{beyond}",
        hovertemplate=f"ceiling %{{y:.4f}}<br>{pct}% CI {c_lo:.4f} – {c_hi:.4f}{beyond}<extra></extra>"))
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
    res = drawn(residuals(pairs, law), "residual")
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


def forecast_figure(perf: pd.Series, law: Mapping[str, Any] | None, run: str, run_id: int = 0, *,
                    path: Mapping[str, Any] | None = None, cutoff_step: float | None = None,
                    backtest: Mapping[str, Any] | None = None, live: Mapping[str, Any] | None = None,
                    excluded_steps: tuple[int, ...] | list[int] = ()) -> go.Figure:
    """R vs step: every evaluation (warm-up ones marked as excluded), the ceiling with its interval, the
    headline forecast from ``cutoff_step`` as a path with its band (``analysis.forecasting.headline_path``),
    and either the backtest's predicted vs observed final score or the live forecast at the planned end."""
    color = run_color(run_id)
    name = plotly_text(run)
    fig = go.Figure()
    steps = perf.index.to_numpy(dtype=float)
    end = float(live["horizon_step"]) if live else (float(steps.max()) if steps.size else 0.0)
    if law and steps.size:
        x0 = float(steps.min())
        fig.add_trace(go.Scatter(x=[x0, end, end, x0], y=[law["ceiling_hi"]] * 2 + [law["ceiling_lo"]] * 2,
                                 fill="toself", mode="none", fillcolor="rgba(0,0,0,0.08)", hoverinfo="skip",
                                 name=f"ceiling 95% CI [{law['ceiling_lo']:.3f}, {law['ceiling_hi']:.3f}]"))
        fig.add_trace(go.Scatter(x=[x0, end], y=[law["ceiling"]] * 2, mode="lines",
                                 line={"color": "black", "dash": "dash"}, name=f"ceiling {law['ceiling']:.3f}",
                                 hovertemplate="ceiling %{y:.4f}<extra></extra>"))
    if path is not None:
        ps = np.asarray(path["steps"], dtype=float)
        fig.add_trace(go.Scatter(x=np.r_[ps, ps[::-1]], y=np.r_[path["hi"], np.asarray(path["lo"])[::-1]],
                                 fill="toself", mode="none", fillcolor=with_alpha(color, 0.18), hoverinfo="skip",
                                 name="headline 95% interval (calibrated at the end)"))
        label = (live or backtest or {}).get("label", "headline")
        fig.add_trace(go.Scatter(x=ps, y=path["path"], mode="lines", line={"color": color, "dash": "dash", "width": 2},
                                 name=f"headline forecast ({plotly_text(label)})",
                                 hovertemplate="headline forecast<br>step %{x:.0f}<br>R %{y:.4f}<extra></extra>"))
    if len(perf) > MAX_POINTS:  # what is drawn; the forecast used every point
        perf = perf.iloc[downsample_index(perf.index.to_numpy(dtype=float), perf.to_numpy(dtype=float))]
        steps = perf.index.to_numpy(dtype=float)
    warm = np.isin(perf.index.to_numpy(), np.asarray(list(excluded_steps), dtype=perf.index.dtype))
    fig.add_trace(go.Scatter(x=steps[~warm], y=perf.to_numpy()[~warm], mode="markers+lines" if steps.size <= 300
                             else "lines", line={"color": color, "width": 1}, marker={"color": color, "size": 5},
                             name=name, meta=name, hovertemplate="run: %{meta}<br>step %{x}<br>R %{y:.4f}<extra></extra>"))
    if warm.any():
        fig.add_trace(go.Scatter(x=steps[warm], y=perf.to_numpy()[warm], mode="markers",
                                 marker={"color": "#9a9a9a", "size": 9, "symbol": "x"},
                                 name="warm-up evaluations (excluded from the law)",
                                 hovertemplate="excluded (warm-up)<br>step %{x}<br>R %{y:.4f}<extra></extra>"))
    if backtest and backtest.get("final_steps"):
        fsx = float(np.mean(backtest["final_steps"]))
        _final_marker(fig, fsx, backtest["predicted_final"], backtest["interval"], color, "predicted final mean")
        fig.add_trace(go.Scatter(x=[fsx], y=[backtest["observed_final"]], mode="markers",
                                 marker={"symbol": "circle-open", "size": 14, "color": "black", "line": {"width": 2}},
                                 name=f"observed final mean {backtest['observed_final']:.3f}",
                                 hovertemplate="observed mean of the last evaluations %{y:.4f}<extra></extra>"))
    if live:
        _final_marker(fig, end, live["predicted_final"], live["interval"], color,
                      f"forecast at the planned end (step {int(end)})")
        fig.add_vline(x=end, line={"color": "grey", "width": 1, "dash": "dot"},
                      annotation_text=f"planned end, step {int(end)}", annotation_position="top right")
    if cutoff_step is not None:
        fig.add_vline(x=cutoff_step, line={"color": "black", "width": 1},
                      annotation_text=(f"now: step {cutoff_step:.0f}" if live else f"cutoff step {cutoff_step:.0f}"),
                      annotation_position="top left")
    fig.update_layout(xaxis_title="step", yaxis_title="performance R", height=460, margin={"t": 30},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def _final_marker(fig: go.Figure, x: float, y: float, interval: Any, color: str, what: str) -> None:
    lo, hi = interval
    fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers",
                             marker={"symbol": "diamond", "size": 12, "color": color, "line": {"color": "black", "width": 1}},
                             error_y={"type": "data", "symmetric": False, "array": [hi - y], "arrayminus": [y - lo]},
                             name=f"{what} {y:.3f} [{lo:.3f}, {hi:.3f}]",
                             hovertemplate=f"{what} %{{y:.4f}}<br>95% interval {lo:.4f} – {hi:.4f}<extra></extra>"))
