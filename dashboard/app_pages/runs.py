"""Runs: one filterable row per run (H first→last, R best/last, law, ceiling ± CI, headroom, stage, collapse,
backtest error). Rows ticked here are the selection the other pages show."""

from __future__ import annotations

import hashlib

import streamlit as st

from dashboard import context, state
from dashboard.tables import filter_options, filter_runs, runs_table
from models.backtest import DEFAULT_CUTOFF

NUM = {c: st.column_config.NumberColumn(format="%.4f")
       for c in ("R best", "R last", "a", "b", "ceiling", "± (95% CI)", "headroom", "R²", "backtest error", "forecast",
                 "forecast backtest MAE")}
HELP = {
    "headroom": "ceiling − best performance so far",
    "forecast": "runs in progress: the headline forecast of the score at the planned end",
    "forecast backtest MAE": "the replay's error at this run's fraction: finished runs cut there and forecast by "
                             "the same path (its track record)",
    "forecast track record": "the replay at this run's own fraction: how many finished runs, MAE, coverage",
    "fit": "a weak law fit (low R², or a ceiling interval spanning most of the range) is flagged here and never "
           "carries the headline forecast",
    "state": "finished, or in progress: step so far of the planned length",
    "backtest error": f"track record: forecast of the final score from the first {DEFAULT_CUTOFF:.0%} of the run "
                      "minus what happened",
    "± (95% CI)": "half-width of the ceiling's 95% confidence interval",
}

st.title("Runs")
ctx = context.load()
if ctx is not None:
    table = runs_table(ctx.results, ctx.runs, ctx.fits)
    opts = filter_options(table, ctx.runs)
    c = st.columns([1, 1, 1, 2, 2])
    projects = c[0].multiselect("project / experiment", opts["project"], key="f_project")
    models = c[1].multiselect("model", opts["model"], key="f_model")
    algorithms = c[2].multiselect("algorithm", opts["algorithm"], key="f_algorithm")
    tags = c[3].multiselect("tags (all of)", opts["tags"], key="f_tags")
    search = c[4].text_input("run name contains", key="f_search")
    shown = filter_runs(table, ctx.runs, projects=projects, models=models, algorithms=algorithms, tags=tags,
                        search=search)
    all_ids = [int(i) for i in table["id"]]
    chosen = state.selection(all_ids)
    shown_ids = [int(i) for i in shown["id"]]
    gen = st.session_state.setdefault("_runs_table_gen", 0)
    digest = hashlib.sha1(",".join(map(str, shown_ids)).encode()).hexdigest()[:10]
    key = f"runs_table_{digest}_{gen}"

    def picked() -> None:
        rows = st.session_state[key].selection.rows
        picked_ids = [shown_ids[i] for i in rows if i < len(shown_ids)]
        hidden = [i for i in state.selection(all_ids) if i not in shown_ids]
        state.set_selection(hidden + picked_ids)

    st.caption(f"{len(shown)} of {len(table)} runs · tick rows to select them for the Collapse, Ceiling and "
               "Compare pages (the URL keeps the selection)")
    st.dataframe(shown, hide_index=True, key=key, on_select=picked, selection_mode="multi-row",
                 selection_default={"selection": {"rows": [shown_ids.index(i) for i in chosen if i in shown_ids]}},
                 column_config={**NUM, **{k: st.column_config.Column(help=v) for k, v in HELP.items()
                                          if k not in NUM},
                                "headroom": st.column_config.NumberColumn(format="%.4f", help=HELP["headroom"]),
                                "backtest error": st.column_config.NumberColumn(format="%+.4f",
                                                                                help=HELP["backtest error"]),
                                "± (95% CI)": st.column_config.NumberColumn(format="%.4f", help=HELP["± (95% CI)"])})

    def picker_changed() -> None:
        st.session_state["_runs_table_gen"] = st.session_state.get("_runs_table_gen", 0) + 1

    labels = ctx.labels()
    pick_key = "_pick_runs"
    st.session_state[pick_key] = [i for i in state.selection(all_ids) if i in labels]

    def multiselect_changed() -> None:
        state.set_selection(st.session_state[pick_key])
        picker_changed()

    st.multiselect("Selected runs (carried to the other pages)", list(labels), format_func=labels.get,
                   key=pick_key, on_change=multiselect_changed,
                   placeholder="none selected: the other pages show the first few runs")
    unfit = [r for r in ctx.results if not r.get("law")]
    if unfit:
        with st.expander(f"{len(unfit)} run(s) without a fitted law: what is missing"):
            context.show_unfit(unfit)
