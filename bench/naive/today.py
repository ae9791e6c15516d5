"""Today's Collapse page as it was before the point budget (kept in the bench as "the naive way"): every
stored point read per trace (``Store.points``), smoothed, MinMaxLTTB to ≤ 2,000 points per trace whatever
the number of runs, one stage band + dashed line and collapse markers per run, WebGL only above 60,000
points in the figure. A verbatim copy of dashboard/curves.py, dashboard/collapse_figure.py and the page's
reading code at commit 8ae02f4, so the benchmark measures both ways in one run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tsdownsample import MinMaxLTTBDownsampler

from dashboard.smoothing import ema_debiased
from plots.colors import run_color, with_alpha
from plots.text import plotly_text, run_label

MAX_POINTS = 2_000
_LTTB = MinMaxLTTBDownsampler()


def downsample_index(x: np.ndarray, y: np.ndarray, n_out: int = MAX_POINTS) -> np.ndarray:
    x = np.asarray(x)
    y = np.asarray(y, dtype=float)
    n = y.size
    if n <= n_out:
        return np.arange(n)
    idx = _LTTB.downsample(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y), n_out=n_out - 2)
    return np.union1d(np.asarray(idx, dtype=np.int64), [0, n - 1, int(np.argmin(y)), int(np.argmax(y))])


def finite_xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.isfinite(np.asarray(x, dtype=float)) & np.isfinite(np.asarray(y, dtype=float))


X_AXES = ("step", "wall time")


@dataclass(frozen=True, eq=False)
class Curve:
    """Points to draw for one metric: raw and (when smoothing) smoothed, each ≤ ``MAX_POINTS``."""

    x: np.ndarray
    y: np.ndarray
    step: np.ndarray
    smooth_x: np.ndarray | None
    smooth_y: np.ndarray | None
    smooth_step: np.ndarray | None
    n_total: int  # finite points stored
    x_axis: str  # "step" or "wall time" (hours since the run's first point)
    steps_all_first: float | None = None
    steps_all_last: float | None = None
    # step → x mapping (for markers at a step): anchors from the full-resolution series
    anchor_steps: np.ndarray | None = None
    anchor_x: np.ndarray | None = None

    def x_at(self, step: float) -> float:
        """x coordinate of ``step`` (identity on the step axis; interpolated/extrapolated wall time)."""
        if self.x_axis == "step" or self.anchor_steps is None or self.anchor_steps.size == 0:
            return float(step)
        s, w = self.anchor_steps, self.anchor_x
        if s.size == 1:
            return float(w[0])
        if step <= s[-1]:
            return float(np.interp(step, s, w))
        rate = (w[-1] - w[0]) / (s[-1] - s[0]) if s[-1] > s[0] else 0.0
        return float(w[-1] + (step - s[-1]) * rate)


def wall_hours(wall_time: np.ndarray) -> np.ndarray | None:
    """Hours since the first finite wall time, or None when the run has no usable wall times."""
    w = np.asarray(wall_time, dtype=float)
    if w.size == 0 or not np.isfinite(w).all():
        return None
    return (w - w[0]) / 3600.0


def prepare_curve(steps: np.ndarray, values: np.ndarray, wall_time: np.ndarray | None = None, *,
                  smoothing: float = 0.0, x_axis: str = "step", n_out: int = MAX_POINTS) -> Curve:
    """The drawable curve of one series (steps increasing). ``x_axis="wall time"`` falls back to steps when
    the series lacks wall times (check ``Curve.x_axis``)."""
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {X_AXES}, got {x_axis!r}")
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    x_full = steps
    used = "step"
    if x_axis == "wall time" and wall_time is not None:
        hours = wall_hours(wall_time)
        if hours is not None and np.all(np.diff(hours) >= 0):
            x_full, used = hours, "wall time"
    ok = finite_xy(x_full, values)
    xs, ys, ss = x_full[ok], values[ok], steps[ok]
    keep = downsample_index(xs, ys, n_out)
    sx = sy = sst = None
    if smoothing > 0 and ys.size:
        smooth = ema_debiased(ys, smoothing)
        k2 = downsample_index(xs, smooth, n_out)
        sx, sy, sst = xs[k2], smooth[k2], ss[k2]
    return Curve(x=xs[keep], y=ys[keep], step=ss[keep], smooth_x=sx, smooth_y=sy, smooth_step=sst,
                 n_total=int(ys.size), x_axis=used,
                 steps_all_first=float(ss[0]) if ss.size else None, steps_all_last=float(ss[-1]) if ss.size else None,
                 anchor_steps=ss[keep] if used != "step" else None, anchor_x=xs[keep] if used != "step" else None)


#: above this many points in the figure, traces use WebGL (Scattergl) so the browser stays responsive
WEBGL_ABOVE = 60_000
ALARM_SYMBOL = {"collapsing": "x", "collapsed": "x-thin-open"}


@dataclass(frozen=True)
class RunCurves:
    run_id: int
    name: str
    entropy: Curve | None
    performance: Curve | None
    group: str | None = None  # legend group (model or algorithm) or None
    stage: Mapping[str, Any] = field(default_factory=dict)
    collapse: Mapping[str, Any] = field(default_factory=dict)
    entropy_key: str | None = None
    performance_key: str | None = None


def _n_points(runs: Sequence[RunCurves]) -> int:
    total = 0
    for r in runs:
        for c in (r.entropy, r.performance):
            if c is not None:
                total += c.x.size + (c.smooth_x.size if c.smooth_x is not None else 0)
    return total


def collapse_figure(runs: Sequence[RunCurves], *, log_y: bool = False, height: int = 720) -> go.Figure:
    """Overlaid H and R curves of ``runs`` (legend grouped by ``RunCurves.group`` when set)."""
    scatter = go.Scattergl if _n_points(runs) > WEBGL_ABOVE else go.Scatter
    x_axis = next((c.x_axis for r in runs for c in (r.entropy, r.performance) if c is not None), "step")
    x_title = "wall time (hours since the run's first point)" if x_axis == "wall time" else "step"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("policy entropy H", "performance R"))
    ordered = sorted(runs, key=lambda r: (r.group or "", r.run_id))
    seen_groups: set[str] = set()
    traces: list[tuple[go.Scatter | go.Scattergl, int]] = []
    shapes: list[dict] = []
    notes: list[dict] = []
    for r in ordered:
        color = run_color(r.run_id)
        label = plotly_text(run_label(r.name, r.run_id))
        meta = plotly_text(r.name)
        group = f"g:{r.group}" if r.group is not None else f"run:{r.run_id}"
        title = None
        if r.group is not None and r.group not in seen_groups:
            seen_groups.add(r.group)
            title = plotly_text(r.group)
        first_in_legend = True
        for row, curve, sym in ((1, r.entropy, "H"), (2, r.performance, "R")):
            if curve is None or curve.n_total == 0:
                continue
            smoothed = curve.smooth_x is not None
            hover = (f"run: %{{meta}}<br>step %{{customdata:.0f}}<br>{sym} %{{y:.4f}}"
                     + ("<br>t %{x:.2f} h" if curve.x_axis == "wall time" else "") + "<extra></extra>")
            sparse = curve.x.size <= 200 and row == 2
            raw = scatter(x=curve.x, y=curve.y, customdata=curve.step, meta=meta, hovertemplate=hover,
                          mode="lines+markers" if sparse else "lines",
                          line={"color": with_alpha(color, 0.3) if smoothed else color, "width": 1 if smoothed else 1.6},
                          marker={"size": 4, "color": with_alpha(color, 0.3) if smoothed else color},
                          name=label, legendgroup=group, showlegend=first_in_legend and not smoothed,
                          legendgrouptitle_text=title if first_in_legend and not smoothed else None)
            traces.append((raw, row))
            if smoothed:
                traces.append((scatter(x=curve.smooth_x, y=curve.smooth_y, customdata=curve.smooth_step, meta=meta,
                                      hovertemplate=hover.replace("<extra>", " (smoothed)<extra>"), mode="lines",
                                      line={"color": color, "width": 1.8}, name=label, legendgroup=group,
                                      showlegend=first_in_legend, legendgrouptitle_text=title if first_in_legend else None),
                               row))
            first_in_legend = False
        _stage(shapes, notes, r, color, annotate=len(runs) == 1)
        traces += [(t, 1) for t in _collapse(r, color, scatter, group)]
    # one call each: adding shapes or traces one by one re-validates the layout every time (quadratic)
    fig.add_traces([t for t, _ in traces], rows=[row for _, row in traces], cols=[1] * len(traces))
    fig.update_layout(shapes=shapes, annotations=list(fig.layout.annotations) + notes)
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_xaxes(title_text=x_title, row=2, col=1)
    fig.update_layout(height=height, margin={"t": 40, "r": 10}, hovermode="closest",
                      legend={"groupclick": "togglegroup" if seen_groups else "toggleitem", "tracegroupgap": 6})
    return fig


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _stage(shapes: list[dict], notes: list[dict], r: RunCurves, color: str, *, annotate: bool) -> None:
    """Shade the boundary's range and mark its step on both panels (only for a clear switch); the label is
    written only when one run is shown (with several they overlap; the table below lists them)."""
    st = r.stage or {}
    ref = r.entropy or r.performance
    if ref is None or not st.get("clear") or not _finite(st.get("step")):
        return
    lo, hi = st.get("range") or (st["step"], st["step"])
    x0, x1, xs = ref.x_at(lo), ref.x_at(hi), ref.x_at(st["step"])
    for xref, yref in (("x", "y domain"), ("x2", "y2 domain")):
        shapes.append({"type": "rect", "xref": xref, "yref": yref, "x0": x0, "x1": max(x1, x0), "y0": 0, "y1": 1,
                       "fillcolor": color, "opacity": 0.10, "line": {"width": 0}, "layer": "below"})
        shapes.append({"type": "line", "xref": xref, "yref": yref, "x0": xs, "x1": xs, "y0": 0, "y1": 1,
                       "line": {"color": color, "dash": "dash", "width": 1}})
    if annotate:
        notes.append({"x": xs, "y": 0.98, "xref": "x", "yref": "y domain", "showarrow": False,
                      "text": f"plateau from step {st['step']:.0f} [{lo:.0f}–{hi:.0f}]",
                      "font": {"size": 10, "color": color}, "yanchor": "top", "xanchor": "left"})


PROJECTION_REACH = 0.5  # how far past a run's last step (in run lengths) a projected floor step is drawn


def _collapse(r: RunCurves, color: str, scatter: type, group: str) -> list:
    """Alarm marker at the last entropy point; projected floor step with the floor level (dotted)."""
    c = r.collapse or {}
    h = r.entropy
    out: list = []
    if h is None or h.n_total == 0 or not c.get("verdict"):
        return out
    meta = plotly_text(r.name)
    verdict = str(c["verdict"])
    last_x, last_step = float(h.x[-1]), float(h.step[-1])
    if c.get("alarm") and _finite(c.get("h_now")):
        out.append(scatter(
            x=[last_x], y=[c["h_now"]], mode="markers", meta=meta, customdata=[last_step],
            marker={"symbol": ALARM_SYMBOL.get(verdict, "x"), "size": 13, "color": color, "line": {"width": 2}},
            name=f"{verdict}", legendgroup=group, showlegend=False,
            hovertemplate=f"run: %{{meta}}<br>{plotly_text(verdict)} at step %{{customdata:.0f}}"
                          "<br>H now %{y:.4f}<extra></extra>"))
    proj, floor = c.get("projected_floor_step"), c.get("floor")
    if _finite(proj) and _finite(floor):
        # a projection far past the run would stretch the axis and squeeze every curve: beyond half the
        # run's length again, the marker stops there and points right (the hover gives the step)
        limit = last_step + PROJECTION_REACH * (last_step - float(h.step[0]))
        beyond = float(proj) > limit
        px = h.x_at(min(float(proj), limit))
        out.append(scatter(
            x=[last_x, px], y=[floor, floor], mode="lines+markers", meta=meta, customdata=[last_step, proj],
            line={"color": color, "dash": "dot", "width": 1},
            marker={"symbol": ["line-ns", "triangle-right" if beyond else "triangle-down"], "size": [1, 11],
                    "color": color},
            legendgroup=group, showlegend=False, name="projected floor",
            hovertemplate="run: %{meta}<br>entropy floor %{y:.4f}<br>projected to reach it at step "
                          f"{float(proj):.0f}<extra></extra>"))
    return out


def naive_points(fig: go.Figure) -> int:
    """Largest number of points in one trace of ``fig`` (to check the per-trace budget)."""
    return max((len(np.asarray(t.x)) for t in fig.data if t.x is not None), default=0)
