"""Runs: one row per run (H first→last, R best/last, law, ceiling ± CI, headroom, stage, collapse, backtest
error), filtered and paged in SQL (``Store.runs_page``): only the shown page's analyses are read. Rows ticked here are the selection the other pages show."""

from __future__ import annotations

import hashlib

import streamlit as st

from dashboard import context, data, state
from dashboard.tables import runs_table
from models.backtest import DEFAULT_CUTOFF
from plots.text import run_label

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

PAGE_SIZES = (50, 100, 250, 1000)

st.title("Runs")
store = data.get_store()
names = data.run_names(data.db_url(), data.version(store)) if store is not None else {}
if store is not None and not names:
    st.info(data.FIX_NO_RUNS)
elif store is not None:
    url, version = data.db_url(), data.version(store)
    opts = data.run_filter_values(url, version)
    c = st.columns([1, 1, 1, 2, 2])
    projects = c[0].multiselect("project / experiment", opts["project"], key="f_project")
    models = c[1].multiselect("model", opts["model"], key="f_model")
    algorithms = c[2].multiselect("algorithm", opts["algorithm"], key="f_algorithm")
    tags = c[3].multiselect("tags (all of)", opts["tags"], key="f_tags")
    search = c[4].text_input("run name contains", key="f_search")
    filters = (tuple(projects), tuple(models), tuple(algorithms), tuple(tags), search)
    size = st.session_state.get("f_page_size", PAGE_SIZES[0])
    n_match, _ = data.runs_page(url, version, filters, 0, 0)
    n_pages = max(1, -(-n_match // size))
    if int(st.session_state.get("f_page", 1)) > n_pages:  # the filters left fewer pages
        st.session_state["f_page"] = n_pages
    page_no = int(st.session_state.get("f_page", 1))
    total, page_runs = data.runs_page(url, version, filters, (page_no - 1) * size, size)
    page_ids = tuple(int(i) for i in page_runs["id"])
    results = data.results_of(url, version, page_ids) if page_ids else []
    fits = data.fits_of(url, version, page_ids) if results else {}
    shown = runs_table(results, page_runs, fits) if results else runs_table([], page_runs)
    all_ids = list(names)
    chosen = state.selection(all_ids)
    shown_ids = [int(i) for i in shown["id"]] if len(shown) else []
    gen = st.session_state.setdefault("_runs_table_gen", 0)
    digest = hashlib.sha1(",".join(map(str, shown_ids)).encode()).hexdigest()[:10]
    key = f"runs_table_{digest}_{gen}"

    def picked() -> None:
        rows = st.session_state[key].selection.rows
        picked_ids = [shown_ids[i] for i in rows if i < len(shown_ids)]
        hidden = [i for i in state.selection(all_ids) if i not in shown_ids]
        state.set_selection(hidden + picked_ids)

    first = (page_no - 1) * size + 1 if total else 0
    st.caption(f"runs {first}–{first + len(page_runs) - 1 if total else 0} of {total} matching "
               f"({len(names)} in the store; filtered and paged in the database) · tick rows to select them for "
               "the Collapse, Ceiling and Compare pages (the URL keeps the selection)")
    st.dataframe(shown, hide_index=True, key=key, on_select=picked, selection_mode="multi-row",
                 selection_default={"selection": {"rows": [shown_ids.index(i) for i in chosen if i in shown_ids]}},
                 column_config={**NUM, **{k: st.column_config.Column(help=v) for k, v in HELP.items()
                                          if k not in NUM},
                                "headroom": st.column_config.NumberColumn(format="%.4f", help=HELP["headroom"]),
                                "backtest error": st.column_config.NumberColumn(format="%+.4f",
                                                                                help=HELP["backtest error"]),
                                "± (95% CI)": st.column_config.NumberColumn(format="%.4f", help=HELP["± (95% CI)"])})
    p = st.columns([1, 1, 4])
    p[0].number_input(f"page (of {n_pages})", min_value=1, max_value=n_pages, step=1, key="f_page")
    p[1].selectbox("rows per page", PAGE_SIZES, key="f_page_size")

    def picker_changed() -> None:
        st.session_state["_runs_table_gen"] = st.session_state.get("_runs_table_gen", 0) + 1

    labels = {i: run_label(n, i) for i, n in names.items()}
    pick_key = "_pick_runs"
    st.session_state[pick_key] = [i for i in state.selection(all_ids) if i in labels]

    def multiselect_changed() -> None:
        state.set_selection(st.session_state[pick_key])
        picker_changed()

    st.multiselect("Selected runs (carried to the other pages)", list(labels), format_func=labels.get,
                   key=pick_key, on_change=multiselect_changed,
                   placeholder="none selected: the other pages show the first few runs")
    unfit = [r for r in results if r.law is None]
    if unfit:
        with st.expander(f"{len(unfit)} run(s) on this page without a fitted law: what is missing"):
            context.show_unfit(unfit)
