"""Collapse: entropy and performance against step (or wall time) for the selected runs, overlaid, with the
stage boundary, collapse markers and projected floor step (one summary marker per run when many are shown);
debiased EMA smoothing, log-y, legend groups. Within a point budget per chart, read from the stored
downsampled levels."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.results import Collapse
from dashboard import context, data, state
from dashboard.collapse_figure import (
    DETAIL_RUNS,
    LEGEND_RUNS,
    WEBGL_TRACES,
    RunCurves,
    chart_points,
    collapse_figure,
    detailed,
    frame_figure,
    line_traces,
    marker_points,
)
from dashboard.curves import X_AXES, Curve
from dashboard.grouping import group_of
from dashboard.tables import backtest_text, collapse_text, stage_text
from dashboard.text import md_text
from plots.downsample import CHART_BUDGET, trace_budget
from plots.text import run_label

GROUPS = ("none", "project / experiment", "model", "algorithm", "intervention")
GROUPS_PAGE_FROM = 20  # selections at least this large get a pointer to the Groups page


@st.cache_resource(show_spinner=False, max_entries=4)
def chart(key: tuple, _runs: list[RunCurves], log_y: bool) -> go.Figure:
    """The figure, kept for a reload of the same view (``key``: store, store version, runs and options);
    assembling a few hundred traces is a good part of the page's own time. Never mutated."""
    return collapse_figure(_runs, log_y=log_y)


def _drawn(cv: Curve | None) -> str:
    """Points drawn of the rows read, and where they were read from."""
    return "–" if cv is None else (f"{cv.x.size:,} of {cv.n_total:,} "
                                    + ("points" if cv.level is None else f"in level {cv.level}"))


st.title("Collapse")
top = st.container()  # messages, run picker and options: filled once the store is read
slot = st.empty()
# the chart's empty frame goes out first, so that the browser loads the charting library while the store is
# opened and the curves are read (replaced by the chart, or removed when there is nothing to draw)
slot.plotly_chart(frame_figure())
with top:
    ctx = context.load()
if ctx is None:
    slot.empty()
else:
    labels = ctx.labels()
    with top:
        ids = state.run_picker(labels, "collapse", label="Runs (the selection is shared with the other pages)")
        c = st.columns([1, 2, 1, 1])
        x_axis = c[0].radio("x axis", X_AXES, horizontal=True, key="c_x")
        smoothing = c[1].slider("smoothing (debiased EMA weight, as in TensorBoard)", 0.0, 0.99, 0.0, 0.01,
                                key="c_smooth")
        log_y = c[2].toggle("log y", key="c_log")
        group_by = c[3].selectbox("legend groups", GROUPS, key="c_group")
        if not ids:
            st.info("Pick at least one run above (or on the Runs page).")
        elif len(ids) >= GROUPS_PAGE_FROM:
            st.page_link("app_pages/groups.py", icon=":material/stacked_line_chart:",
                         label=f"{len(ids)} runs: the Groups page shows them as a median and interquartile band "
                               "per group, and each run as one point (ceiling against entropy spent)")
    results = ctx.of(ids)  # the analyses of the runs drawn only
    fits = ctx.fits_of(ids)
    # the chart's point budget, shared by every line: known before reading, so each series is read at the
    # coarsest stored level that still has that many points
    n_out = trace_budget(2 * len(ids) * (2 if smoothing > 0 else 1), marker_points(len(ids)))
    keys = tuple(sorted({k for i in ids for k in (results[i].entropy_key, results[i].performance_key) if k}))
    levels = data.lod_levels(ctx.url, ctx.version, tuple(ids), keys) if ids and smoothing == 0 else {}
    info = ctx.runs.set_index("id", drop=False)
    versions = dict(zip(ctx.runs["id"].astype(int), ctx.runs["data_version"].astype(int), strict=True))
    wanted = tuple((run_id, versions.get(run_id, 0), k, data.curve_level(levels, run_id, k, smoothing, n_out))
                   for run_id in ids for k in (results[run_id].entropy_key, results[run_id].performance_key) if k)
    read = dict(zip(((s[0], s[2]) for s in wanted), data.curves(ctx.url, wanted, smoothing, x_axis, n_out),
                    strict=True))
    runs: list[RunCurves] = []
    rows = []
    for run_id in ids:
        res = results[run_id]
        hk, rk = res.entropy_key, res.performance_key
        if hk is None:
            top.warning(f"**{md_text(run_label(res.run, run_id))}**: no entropy curve — {context.FIX_NO_ENTROPY}")
        if rk is None:
            top.warning(f"**{md_text(run_label(res.run, run_id))}**: no performance curve — "
                        f"{context.FIX_NO_PERFORMANCE}")
        hc, rc = read.get((run_id, hk)), read.get((run_id, rk))
        group = group_of(info.loc[run_id].to_dict(), group_by) if group_by != "none" and run_id in info.index else None
        runs.append(RunCurves(run_id=run_id, name=str(res.run), entropy=hc, performance=rc, group=group,
                              stage=res.stage, collapse=res.collapse, entropy_key=hk, performance_key=rk))
        coll = res.collapse if isinstance(res.collapse, Collapse) else None
        rows.append({"id": run_id, "run": str(res.run), "verdict": collapse_text(res.collapse),
                     "H start": coll and coll.h_start, "H now": coll and coll.h_now, "floor": coll and coll.floor,
                     "projected floor step": coll and coll.projected_floor_step, "decay": coll and coll.decay_kind,
                     "stage": stage_text(res.stage), "backtest (track record)": backtest_text(fits.get(run_id)),
                     "message": (coll.message if coll else res.collapse.error if res.collapse else None) or "",
                     "H drawn of read": _drawn(hc), "R drawn of read": _drawn(rc)})
    if not any(r.entropy is not None or r.performance is not None for r in runs):
        slot.empty()
    else:
        if x_axis == "wall time" and any(c.x_axis != "wall time" for r in runs for c in (r.entropy, r.performance)
                                         if c is not None):
            top.info("Some runs have no wall times logged for every point; they are drawn against step.")
        fig = chart((ctx.url, ctx.version, tuple(ids), smoothing, x_axis, group_by), runs, log_y)
        slot.plotly_chart(fig, key="collapse_chart")
        curves = [cv for r in runs for cv in (r.entropy, r.performance) if cv is not None]
        from_levels = sum(cv.level is not None for cv in curves)
        source = (f"{from_levels} of {len(curves)} curves read from the stored downsampled levels (M4: first, lowest, "
                  "highest and last point of every 32/128/512-step bucket), the others point by point"
                  if smoothing == 0 else "every stored point read: smoothing is computed on all of them first")
        marks = ("Shaded: the rising → plateau boundary's range (dashed: its step). ✕: collapse alarm; ▽ on a dotted "
                 "line: the step at which entropy is projected to reach its floor." if detailed(len(runs)) else
                 f"With more than {DETAIL_RUNS} runs, bands and markers per run would pile up: each run has one "
                 "marker on its entropy curve, at its rising → plateau step (◆; ● at its last point when the "
                 "switch is not clear), ✕ when its entropy is collapsing; hover it for the step range, the verdict "
                 "and the projected floor step (all in the table below).")
        legend = ("" if len(runs) <= LEGEND_RUNS else
                  f" With more than {LEGEND_RUNS} runs the legend lists the legend groups only."
                  if group_by != "none" else f" With more than {LEGEND_RUNS} runs there is no legend: hover a line "
                                             "for its run, or choose legend groups.")
        st.caption(f"{chart_points(fig):,} points drawn (budget {CHART_BUDGET:,} per chart: each line ≤ {n_out:,} "
                   "points, MinMaxLTTB keeping its minimum and maximum; "
                   f"{'WebGL' if line_traces(runs) > WEBGL_TRACES else 'SVG'} traces); {source}. {marks}{legend}")
        st.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("H start", "H now", "floor")}
                     | {"projected floor step": st.column_config.NumberColumn(format="%.0f")})
