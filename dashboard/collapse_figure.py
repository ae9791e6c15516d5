"""The Collapse page's figure: entropy (top) and performance (bottom) against step or wall time for many
runs, overlaid. Pure: takes prepared curves (``dashboard.curves``) and stored analysis dicts.

Within a point budget per chart (``plots.downsample.CHART_BUDGET``: every trace is cut to its share,
``trace_budget``), with WebGL traces when there are more than ``WEBGL_TRACES`` lines. Up to ``LEGEND_RUNS``
runs the legend lists each run; with more it lists the legend groups (one entry toggles a group), or is left
out when there are none (hover a line for its run: a legend of 100 runs is unreadable and slow to draw). Up to ``DETAIL_RUNS``
runs each run's stage boundary is drawn (shaded range + dashed line) with its collapse marker and projected
floor step; with more runs those would pile up, so each run gets one summary marker on its entropy curve
instead (``summary_marker``), and the table under the chart lists the details.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.results import Collapse, Failure, Stage
from dashboard.curves import Curve
from dashboard.tables import stage_text
from db.values import finite_number
from plots.colors import run_color, with_alpha
from plots.downsample import CHART_BUDGET, downsample_index, trace_budget
from plots.text import plotly_text, run_label

#: more line traces than this: WebGL (Scattergl) instead of SVG ($ENTROPY_DASH_WEBGL_TRACES overrides it).
#: Within the point budget SVG draws faster wherever WebGL runs in software (no GPU: remote desktops, headless
#: browsers; 200 traces × 500 points: SVG 2.3 s, WebGL 5.2 s in headless Chromium), so WebGL is kept for
#: the many-trace charts where SVG's per-trace DOM cost dominates.
WEBGL_TRACES = int(os.environ.get("ENTROPY_DASH_WEBGL_TRACES", "200"))
#: up to this many runs: stage band, dashed line, collapse marker and projected floor per run; more: one marker
DETAIL_RUNS = 6
#: marker points a run adds in detail mode (alarm marker + projected-floor line)
DETAIL_MARKERS = 3
#: up to this many runs the legend lists every run; more: one entry per legend group (none without groups)
LEGEND_RUNS = 20
ALARM_SYMBOL = {"collapsing": "x", "collapsed": "x-thin-open"}
SUMMARY_SYMBOL = {"plateau": "diamond", "alarm": "x", "none": "circle"}


@dataclass(frozen=True)
class RunCurves:
    run_id: int
    name: str
    entropy: Curve | None
    performance: Curve | None
    group: str | None = None  # legend group (model or algorithm) or None
    stage: Stage | Failure | None = None
    collapse: Collapse | Failure | None = None
    entropy_key: str | None = None
    performance_key: str | None = None


def _trace(kind: str, row: int, **props: Any) -> dict[str, Any]:
    """A trace as plain data on panel ``row`` (1: H, 2: R); ``None`` properties are left out and ``a_b``
    names nest (``legendgrouptitle_text`` → ``{"legendgrouptitle": {"text": …}}``)."""
    out: dict[str, Any] = {"type": kind, "xaxis": "x" if row == 1 else "x2", "yaxis": "y" if row == 1 else "y2"}
    for k, v in props.items():
        if v is None:
            continue
        if k == "legendgrouptitle_text":
            out["legendgrouptitle"] = {"text": v}
        else:
            out[k] = v
    return out


def line_traces(runs: Sequence[RunCurves]) -> int:
    """Line traces the figure of ``runs`` draws (raw and, when smoothing, smoothed, per metric)."""
    return sum(1 + (c.smooth_x is not None) for r in runs for c in (r.entropy, r.performance)
               if c is not None and c.n_total > 0)


def detailed(n_runs: int) -> bool:
    """Whether runs get their own stage bands and collapse markers (else one summary marker each)."""
    return n_runs <= DETAIL_RUNS


def marker_points(n_runs: int) -> int:
    """Points the stage/collapse markers of ``n_runs`` runs may take out of the chart's budget."""
    return n_runs * (DETAIL_MARKERS if detailed(n_runs) else 1)


def chart_points(fig: go.Figure) -> int:
    """Points a figure draws: every x value of every trace."""
    return sum(len(t.x) for t in fig.data if t.x is not None)


def collapse_figure(runs: Sequence[RunCurves], *, log_y: bool = False, height: int = 720,
                    budget: int = CHART_BUDGET) -> go.Figure:
    """Overlaid H and R curves of ``runs`` (legend grouped by ``RunCurves.group`` when set), at most
    ``budget`` points in all.

    Traces are assembled as plain data and handed to plotly without its per-property validation (which
    costs more than everything else on the page at 100 runs); the tests validate every figure."""
    n_lines = line_traces(runs)
    per_trace = trace_budget(n_lines, marker_points(len(runs)), budget=budget)
    kind = "scattergl" if n_lines > WEBGL_TRACES else "scatter"
    x_axis = next((c.x_axis for r in runs for c in (r.entropy, r.performance) if c is not None), "step")
    x_title = "wall time (hours since the run's first point)" if x_axis == "wall time" else "step"
    ordered = sorted(runs, key=lambda r: (r.group or "", r.run_id))
    seen_groups: set[str] = set()
    traces: list[dict[str, Any]] = []
    shapes: list[dict] = []
    notes: list[dict] = []
    detail = detailed(len(runs))
    width = 1.6 if len(runs) <= 20 else 1.0
    per_run_legend = len(runs) <= LEGEND_RUNS
    summary: list[dict] = []
    for r in ordered:
        color = run_color(r.run_id)
        label = plotly_text(run_label(r.name, r.run_id))
        meta = plotly_text(r.name)
        group = f"g:{r.group}" if r.group is not None else f"run:{r.run_id}"
        title = None
        if r.group is not None and r.group not in seen_groups:
            seen_groups.add(r.group)
            title = plotly_text(r.group)
        first_in_legend = per_run_legend or title is not None
        if not per_run_legend:  # the group's first run stands for the group
            label, title = (title, None) if title is not None else (label, None)
        for row, curve, sym in ((1, r.entropy, "H"), (2, r.performance, "R")):
            if curve is None or curve.n_total == 0:
                continue
            smoothed = curve.smooth_x is not None
            on_steps = curve.x_axis == "step"
            hover = (f"run: %{{meta}}<br>step %{{{'x' if on_steps else 'customdata'}:.0f}}<br>{sym} %{{y:.4f}}"
                     + ("" if on_steps else "<br>t %{x:.2f} h") + "<extra></extra>")
            x, y, step = _cut(curve.x, curve.y, curve.step, per_trace)
            # markers on a short performance series (evaluations every N steps), never on a downsampled one:
            # SVG draws a marker as an element of its own, so they are kept for a few runs
            sparse = row == 2 and curve.level is None and curve.n_total <= 200 and len(runs) <= 20
            traces.append(_trace(
                kind, row, x=_compact(x, on_steps), y=y, customdata=None if on_steps else step, meta=meta,
                hovertemplate=hover, mode="lines+markers" if sparse else "lines",
                line={"color": with_alpha(color, 0.3) if smoothed else color, "width": 1 if smoothed else width},
                marker={"size": 4, "color": with_alpha(color, 0.3) if smoothed else color},
                name=label, legendgroup=group, showlegend=first_in_legend and not smoothed,
                legendgrouptitle_text=title if first_in_legend and not smoothed else None))
            if smoothed:
                sx, sy, sst = _cut(curve.smooth_x, curve.smooth_y, curve.smooth_step, per_trace)
                traces.append(_trace(
                    kind, row, x=_compact(sx, on_steps), y=sy, customdata=None if on_steps else sst, meta=meta,
                    hovertemplate=hover.replace("<extra>", " (smoothed)<extra>"), mode="lines",
                    line={"color": color, "width": max(width, 1.2)}, name=label, legendgroup=group,
                    showlegend=first_in_legend, legendgrouptitle_text=title if first_in_legend else None))
            first_in_legend = False
        if detail:
            _stage(shapes, notes, r, color, annotate=len(runs) == 1)
            traces += _collapse(r, color, kind, group)
        else:
            m = summary_marker(r)
            if m is not None:
                summary.append(m | {"color": color})
    if summary:
        traces.append(_trace(
            kind, 1, x=[m["x"] for m in summary], y=[m["y"] for m in summary], text=[m["text"] for m in summary],
            mode="markers", hovertemplate="%{text}<extra></extra>", name="stage / collapse (one per run)",
            marker={"symbol": [m["symbol"] for m in summary], "size": 9, "color": [m["color"] for m in summary],
                    "line": {"width": 1, "color": "#222"}},
            legendgroup="summary", showlegend=per_run_legend or bool(seen_groups)))
    frame = _frame(height)
    frame.update_layout(shapes=shapes, annotations=list(frame.layout.annotations) + notes, hovermode="closest",
                        showlegend=per_run_legend or bool(seen_groups),
                        legend={"groupclick": "togglegroup" if seen_groups else "toggleitem", "tracegroupgap": 6})
    frame.update_yaxes(type="log" if log_y else "linear")
    frame.update_xaxes(title_text=x_title, row=2, col=1)
    return go.Figure(data=traces, layout=frame.layout, _validate=False)


@cache
def frame_figure(*, height: int = 720) -> go.Figure:
    """The figure's empty frame (both panels, no data): sent first, so that the browser loads its charting
    library while the page still reads the curves. Built once (plotly's subplot set-up takes 0.1 s); never
    mutated."""
    return _frame(height)


def _frame(height: int) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("policy entropy H", "performance R"))
    fig.update_layout(height=height, margin={"t": 40, "r": 10})
    return fig


def _cut(x: np.ndarray, y: np.ndarray, step: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trace's points within its share of the budget (the page reads about that many already)."""
    if x.size <= n_out:
        return x, y, step
    keep = downsample_index(x, y, n_out)
    return x[keep], y[keep], step[keep]


def _compact(x: np.ndarray, on_steps: bool) -> np.ndarray:
    """Steps as integers (sent to the browser as 2- or 4-byte integers instead of 8-byte floats)."""
    if on_steps and x.size and np.all(np.abs(x) < 2**31) and np.all(x == np.round(x)):
        return x.astype(np.int64)
    return x


def summary_marker(r: RunCurves) -> dict[str, Any] | None:
    """One marker summing up a run's stage and collapse, on its entropy curve: at the rising → plateau step
    (◆), or at its last point when the switch is not clear (●); ✕ when entropy is collapsing. Its hover
    text says the stage range, the verdict and the projected floor step."""
    h = r.entropy
    if h is None or h.n_total == 0:
        return None
    st, c = _stage_of(r), _collapse_of(r)
    clear = st is not None and st.clear and finite_number(st.step) is not None
    step = float(st.step) if clear else float(h.step[-1])
    xs, ys = (h.smooth_x, h.smooth_y) if h.smooth_x is not None else (h.x, h.y)
    x = h.x_at(step)
    verdict = str((c and c.verdict) or "–")
    proj = c and c.projected_floor_step
    alarm = c is not None and c.alarm
    lines = [f"run: {plotly_text(run_label(r.name, r.run_id))}", plotly_text(stage_text(r.stage))]
    lines.append(f"collapse: {plotly_text(verdict)}"
                 + (f", floor projected at step {float(proj):.0f}" if alarm and finite_number(proj) is not None else ""))
    symbol = SUMMARY_SYMBOL["alarm" if alarm else "plateau" if clear else "none"]
    return {"x": x, "y": float(np.interp(x, xs, ys)), "symbol": symbol, "text": "<br>".join(lines)}


def _stage_of(r: RunCurves) -> Stage | None:
    """The run's stage boundary, None when it was not found (or could not be)."""
    return r.stage if isinstance(r.stage, Stage) else None


def _collapse_of(r: RunCurves) -> Collapse | None:
    """The run's collapse verdict, None when there is none (or it could not be made)."""
    return r.collapse if isinstance(r.collapse, Collapse) else None


def _stage(shapes: list[dict], notes: list[dict], r: RunCurves, color: str, *, annotate: bool) -> None:
    """Shade the boundary's range and mark its step on both panels (only for a clear switch); the label is
    written only when one run is shown (with several they overlap; the table below lists them)."""
    st = _stage_of(r)
    ref = r.entropy or r.performance
    if ref is None or st is None or not st.clear or finite_number(st.step) is None:
        return
    lo, hi = st.range or (st.step, st.step)
    x0, x1, xs = ref.x_at(lo), ref.x_at(hi), ref.x_at(st.step)
    for xref, yref in (("x", "y domain"), ("x2", "y2 domain")):
        shapes.append({"type": "rect", "xref": xref, "yref": yref, "x0": x0, "x1": max(x1, x0), "y0": 0, "y1": 1,
                       "fillcolor": color, "opacity": 0.10, "line": {"width": 0}, "layer": "below"})
        shapes.append({"type": "line", "xref": xref, "yref": yref, "x0": xs, "x1": xs, "y0": 0, "y1": 1,
                       "line": {"color": color, "dash": "dash", "width": 1}})
    if annotate:
        notes.append({"x": xs, "y": 0.98, "xref": "x", "yref": "y domain", "showarrow": False,
                      "text": f"plateau from step {st.step:.0f} [{lo:.0f}–{hi:.0f}]",
                      "font": {"size": 10, "color": color}, "yanchor": "top", "xanchor": "left"})


PROJECTION_REACH = 0.5  # how far past a run's last step (in run lengths) a projected floor step is drawn


def _collapse(r: RunCurves, color: str, kind: str, group: str) -> list[dict[str, Any]]:
    """Alarm marker at the last entropy point; projected floor step with the floor level (dotted)."""
    c = _collapse_of(r)
    h = r.entropy
    out: list = []
    if h is None or h.n_total == 0 or c is None or not c.verdict:
        return out
    meta = plotly_text(r.name)
    verdict = str(c.verdict)
    last_x, last_step = float(h.x[-1]), float(h.step[-1])
    if c.alarm and finite_number(c.h_now) is not None:
        out.append(_trace(
            kind, 1, x=[last_x], y=[c.h_now], mode="markers", meta=meta, customdata=[last_step],
            marker={"symbol": ALARM_SYMBOL.get(verdict, "x"), "size": 13, "color": color, "line": {"width": 2}},
            name=f"{verdict}", legendgroup=group, showlegend=False,
            hovertemplate=f"run: %{{meta}}<br>{plotly_text(verdict)} at step %{{customdata:.0f}}"
                          "<br>H now %{y:.4f}<extra></extra>"))
    proj, floor = c.projected_floor_step, c.floor
    if finite_number(proj) is not None and finite_number(floor) is not None:
        # a projection far past the run would stretch the axis and squeeze every curve: beyond half the
        # run's length again, the marker stops there and points right (the hover gives the step)
        limit = last_step + PROJECTION_REACH * (last_step - float(h.step[0]))
        beyond = float(proj) > limit
        px = h.x_at(min(float(proj), limit))
        out.append(_trace(
            kind, 1, x=[last_x, px], y=[floor, floor], mode="lines+markers", meta=meta, customdata=[last_step, proj],
            line={"color": color, "dash": "dot", "width": 1},
            marker={"symbol": ["line-ns", "triangle-right" if beyond else "triangle-down"], "size": [1, 11],
                    "color": color},
            legendgroup=group, showlegend=False, name="projected floor",
            hovertemplate="run: %{meta}<br>entropy floor %{y:.4f}<br>projected to reach it at step "
                          f"{float(proj):.0f}<extra></extra>"))
    return out
