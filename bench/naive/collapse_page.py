"""Today's Collapse page (before the point budget), for bench/dashboard.py — verbatim but for its imports, its
own `curve` reader (every stored point, as dashboard/data.py read them) and the typed analysis it is given
(read as its dict, the way the page read it).

Collapse: entropy and performance against step (or wall time) for the selected runs, overlaid, with the
stage boundary, collapse markers and projected floor step; debiased EMA smoothing, log-y, legend groups."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from today import MAX_POINTS, X_AXES, Curve, RunCurves, collapse_figure, prepare_curve

from dashboard import context, data, state
from dashboard.tables import backtest_text, collapse_text, stage_text
from dashboard.text import md_text
from plots.text import run_label


@st.cache_data(show_spinner=False, max_entries=1024)
def curve(url: str, run_id: int, run_version: int, key: str, smoothing: float, x_axis: str) -> Curve:
    pts = data._open(url).points(run_id, key)
    return prepare_curve(pts[:, 0], pts[:, 1], pts[:, 2], smoothing=smoothing, x_axis=x_axis)


GROUPS = {"none": None, "model": "model", "algorithm": "algorithm"}

st.title("Collapse")
ctx = context.load()
if ctx is not None:
    labels = ctx.labels()
    ids = state.run_picker(labels, "collapse", label="Runs (the selection is shared with the other pages)")
    c = st.columns([1, 2, 1, 1])
    x_axis = c[0].radio("x axis", X_AXES, horizontal=True, key="c_x")
    smoothing = c[1].slider("smoothing (debiased EMA weight, as in TensorBoard)", 0.0, 0.99, 0.0, 0.01, key="c_smooth")
    log_y = c[2].toggle("log y", key="c_log")
    group_by = c[3].selectbox("legend groups", list(GROUPS), key="c_group")
    if not ids:
        st.info("Pick at least one run above (or on the Runs page).")
    runs: list[RunCurves] = []
    rows = []
    for run_id in ids:
        typed = ctx.by_id[run_id]
        res = typed.to_dict()  # this page read the stored dict
        info = ctx.run_info(run_id)
        version = ctx.run_version(run_id)
        hk, rk = res.get("entropy_key"), res.get("performance_key")
        if hk is None:
            st.warning(f"**{md_text(run_label(res['run'], run_id))}**: no entropy curve — {context.FIX_NO_ENTROPY}")
        if rk is None:
            st.warning(f"**{md_text(run_label(res['run'], run_id))}**: no performance curve — "
                       f"{context.FIX_NO_PERFORMANCE}")
        hc = curve(ctx.url, run_id, version, hk, smoothing, x_axis) if hk else None
        rc = curve(ctx.url, run_id, version, rk, smoothing, x_axis) if rk else None
        col = GROUPS[group_by]
        group = (str(info.get(col)) if info.get(col) else f"(no {col})") if col else None
        runs.append(RunCurves(run_id=run_id, name=str(res["run"]), entropy=hc, performance=rc, group=group,
                              stage=res.get("stage") or {}, collapse=res.get("collapse") or {},
                              entropy_key=hk, performance_key=rk))
        coll = res.get("collapse") or {}
        rows.append({"id": run_id, "run": str(res["run"]), "verdict": collapse_text(typed.collapse),
                     "H start": coll.get("h_start"), "H now": coll.get("h_now"), "floor": coll.get("floor"),
                     "projected floor step": coll.get("projected_floor_step"), "decay": coll.get("decay_kind"),
                     "stage": stage_text(typed.stage), "backtest (track record)": backtest_text(res),
                     "message": coll.get("message") or coll.get("error") or "",
                     "points drawn H / stored": f"{hc.x.size} / {hc.n_total}" if hc else "–",
                     "points drawn R / stored": f"{rc.x.size} / {rc.n_total}" if rc else "–"})
    if any(r.entropy is not None or r.performance is not None for r in runs):
        if x_axis == "wall time" and any(c.x_axis != "wall time" for r in runs for c in (r.entropy, r.performance)
                                         if c is not None):
            st.info("Some runs have no wall times logged for every point; they are drawn against step.")
        st.plotly_chart(collapse_figure(runs, log_y=log_y), key="collapse_chart")
        st.caption(f"Each trace is downsampled at render to ≤ {MAX_POINTS:,} points (MinMaxLTTB, minimum and "
                   "maximum kept); smoothing is computed on every stored point first. Shaded: the rising → plateau "
                   "boundary's range (dashed: its step). ✕: collapse alarm; ▽ on a dotted line: the step at which "
                   "entropy is projected to reach its floor.")
        st.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("H start", "H now", "floor")}
                     | {"projected floor step": st.column_config.NumberColumn(format="%.0f")})
