"""Backtest: from which point can the forecast be trusted on runs like mine? The replay's MAE and interval
coverage against the fraction of the run done (10% to 90%, every 5%), per method and for the headline, over the
finished runs of the store or of one experiment — each run cut there, sent down the live path, and forecast
with weights learned without it. Read as stored: nothing is refitted here."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import context, data
from dashboard.text import md_text
from plots.text import plotly_text

SHOWN_NAMES = 5
SHOWN_REASONS = 20


def why_skipped(skipped: list[dict]) -> None:
    """Why runs were not backtested, one line per reason (how many runs, the first few named), not one per run:
    a sweep of 1,000 unfinished runs says it once."""
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(str(s["reason"]), []).append(str(s["run"]))
    groups = list(by_reason.items())
    for reason, names in groups[:SHOWN_REASONS]:
        more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
        st.caption(f"{len(names)} run(s) ({md_text(', '.join(names[:SHOWN_NAMES]))}{more}): {md_text(reason)}")
    if rest := groups[SHOWN_REASONS:]:
        st.caption(f"{sum(len(names) for _, names in rest)} more run(s) for {len(rest)} other reasons "
                   "(`backtest --json` lists every one)")


st.title("Backtest")
ctx = context.load()
if ctx is not None:
    projects = sorted({str(p) for p in ctx.runs["project"] if isinstance(p, str) and p})
    scope = st.selectbox("finished runs of", ["every experiment", *projects], key="bt_scope")
    doc = data.backtest_doc_for(ctx.url, ctx.version, None if scope == "every experiment" else scope)
    docs = [d for d in doc["cutoffs"] if d.get("summary")]
    if not docs:
        st.info("No finished run can be backtested yet: a backtest needs runs that reached their end (runs in "
                "progress are never used as finished ones) with enough evaluations before the cutoff.")
        for d in doc["cutoffs"][:1]:
            why_skipped(d["skipped"])
    else:
        methods = list(dict.fromkeys(m for d in docs for m in d["summary"]["scores"]))
        for what, title, scale, key in (("mae", "MAE of the final score (pt)", 100, "backtest_chart"),
                                        ("coverage", "coverage of the 95% interval (%)", 100, "coverage_chart")):
            fig = go.Figure()
            for m in methods:
                pts = [(d["cutoff"] * 100, d["summary"]["scores"][m][what]) for d in docs
                       if m in d["summary"]["scores"] and d["summary"]["scores"][m][what] is not None]
                fig.add_trace(go.Scatter(x=[x for x, _ in pts], y=[scale * y for _, y in pts], mode="lines+markers",
                                         name=plotly_text(m), line={"width": 4 if m == "headline" else 1.5,
                                                                    "color": "black" if m == "headline" else None}))
            if what == "coverage":
                fig.add_hline(y=95, line_dash="dot", annotation_text="promised 95%")
            fig.update_layout(xaxis_title="fraction of the run done (%)", yaxis_title=title, height=380,
                              margin={"t": 20}, legend={"orientation": "h", "y": -0.3})
            st.subheader("Replay: " + title.split(" (")[0] + " against the fraction done")
            st.plotly_chart(fig, key=key)
        table = pd.DataFrame([{
            "cutoff": f"{d['cutoff']:.0%}", "finished runs": d["summary"]["n_runs"],
            "headline MAE (pt)": 100 * d["summary"]["scores"]["headline"]["mae"],
            "headline coverage": d["summary"]["scores"]["headline"]["coverage"],
            "best single method": d["summary"]["best_method"],
            "its MAE (pt)": 100 * d["summary"]["scores"][d["summary"]["best_method"]]["mae"],
        } for d in docs])
        st.dataframe(table, hide_index=True, key="backtest_table",
                     column_config={"headline MAE (pt)": st.column_config.NumberColumn(format="%.2f"),
                                    "its MAE (pt)": st.column_config.NumberColumn(format="%.2f"),
                                    "headline coverage": st.column_config.NumberColumn(format="%.2f")})
        with st.expander("in words, per fraction"):
            for d in docs:
                st.markdown(f"**{d['cutoff']:.0%}** — {md_text(d['summary']['sentence'])}")
        st.caption("MAE in points of the metric (0.01 of an accuracy); coverage: the share of runs whose final "
                   "score fell inside the stated 95% interval.")
        skipped = doc["skipped"]
        if skipped:
            with st.expander(f"{len(skipped)} run(s) not backtested at {doc['cutoff']:.0%}: why"):
                why_skipped(skipped)
