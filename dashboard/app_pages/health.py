"""Health: every run × every detector, coloured by severity (the findings stored with each run's analysis, with
its standing among the finished runs and its live forecast, as `entropy-dash doctor` prints them). Pick a cell
(run and finding) to read its sentence, evidence and advice beside the curves it fired on, the steps it used
shaded. The grid reads one small stored column per run (``data.health_grid``); only the picked run's findings
are read (``data.health_of``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import context, data
from dashboard.text import md_text
from models.health import DETECTORS, RANK
from plots.text import plotly_text

COLOURS = {"critical": "#d62728", "warn": "#ff7f0e", "info": "#1f77b4", "ok": "#2ca02c", "skipped": "#bdbdbd",
           "–": "#ffffff"}
MAX_CURVES = 3


def label(f: dict[str, Any]) -> str:
    return f["detector"] + (f" · {f['benchmark']}" if f.get("benchmark") else "")


def grid(worst: dict[int, dict[str, str]], labels: dict[int, str]) -> pd.DataFrame:
    """Runs × detectors: the worst severity of each detector's findings (one per benchmark for some), from
    ``data.health_grid``; "–" where a detector has none."""
    rows = [{"run": labels[rid], **{d: row.get(d, "–") for d in DETECTORS}} for rid, row in worst.items()]
    return pd.DataFrame(rows).set_index("run")


def _style(v: str) -> str:
    colour = COLOURS.get(v, "#ffffff")
    text = "white" if v in ("critical", "warn", "info", "ok") else "black"
    return f"background-color: {colour}; color: {text}"


def curves_figure(df: pd.DataFrame, keys: list[str], steps: list[int] | None) -> go.Figure:
    """One panel per key the finding read, the step range it used shaded."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[plotly_text(k) for k in keys])
    for i, k in enumerate(keys, start=1):
        s = df[df["key"] == k]
        fig.add_trace(go.Scatter(x=s["step"], y=s["value"], mode="lines+markers" if len(s) <= 60 else "lines",
                                 name=plotly_text(k), marker={"size": 5}), row=i, col=1)
        if steps:
            fig.add_vrect(x0=steps[0], x1=steps[1], fillcolor="#ff7f0e", opacity=0.15, line_width=0, row=i, col=1)
    fig.update_layout(height=230 * len(keys) + 60, margin={"t": 40, "b": 30}, showlegend=False)
    fig.update_xaxes(title_text="step", row=len(keys), col=1)
    return fig


st.title("Health")
ctx = context.load()
if ctx is not None:
    analysed = set(ctx.ids())
    worst = {rid: row for rid, row in data.health_grid(ctx.url, ctx.version).items() if rid in analysed}
    if not worst:
        st.info("No run has health findings yet: `entropy-dash analyse --all` computes them with each run's "
                "analysis (ingest does it for the runs it changes).")
    else:
        labels = ctx.labels(worst)
        table = grid(worst, labels)
        counts = pd.Series(table.to_numpy().ravel()).value_counts()
        st.caption(" · ".join(f"{counts.get(s, 0)} {s}" for s in ("critical", "warn", "info", "ok", "skipped"))
                   + " (the worst finding of each detector per run; `entropy-dash doctor` prints the same)")
        st.dataframe(table.style.map(_style), key="health_grid")
        worst_first = sorted(worst, key=lambda rid: -max(RANK[s] for s in worst[rid].values()))
        c = st.columns([2, 2])
        rid = c[0].selectbox("run", worst_first, format_func=labels.__getitem__, key="h_run")
        findings = sorted(data.health_of(ctx.url, ctx.version, rid)["findings"], key=lambda f: -RANK[f["severity"]])
        pick = c[1].selectbox("finding", range(len(findings)), key="h_finding",
                              format_func=lambda j: f"{findings[j]['severity']} — {label(findings[j])}")
        f = findings[pick]
        left, right = st.columns([2, 3])
        with left:
            st.subheader(f"{f['severity']}: {md_text(label(f))}")
            st.markdown(md_text(f["sentence"]))
            if f["severity"] != "skipped":
                ev = pd.DataFrame([{"evidence": k, "value": "–" if v is None else (f"{v:.4g}" if isinstance(v, float)
                                                                                    else str(v))}
                                   for k, v in f["evidence"].items()])
                st.dataframe(ev, hide_index=True, key="health_evidence")
            if f["advice"]:
                st.markdown("**Do this**\n\n" + "\n".join(f"{i}. {md_text(a)}" for i, a in enumerate(f["advice"], 1)))
            if f["references"]:
                st.caption("References: " + "; ".join(md_text(r) for r in f["references"]))
        with right:
            keys = list(f["keys"])[:MAX_CURVES]
            if keys:
                df = data.series(ctx.url, ctx.version, (int(rid),), tuple(keys))
                st.plotly_chart(curves_figure(df, keys, f["steps"]), key="health_curves")
                if f["steps"]:
                    st.caption(f"shaded: steps {f['steps'][0]}–{f['steps'][1]}, the range the finding used")
            else:
                st.info(f"no curve: the detector was skipped — it needs {md_text(f['needs'])}.")
