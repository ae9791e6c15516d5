"""Runs: one row per run with its entropy/performance range and the fitted law."""

from __future__ import annotations

import streamlit as st

from dashboard import data
from dashboard.tables import runs_table

st.title("Runs")
store = data.get_store()
if store is not None:
    results = data.results(data.db_url(), data.version(store))
    if not results:
        st.info("No runs in the store yet. Ingest some with `entropy-dash ingest mlflow URI` (or file, "
                "tensorboard, wandb), or run `entropy-dash demo`.")
    else:
        st.dataframe(runs_table(results), hide_index=True, use_container_width=True,
                     column_config={c: st.column_config.NumberColumn(format="%.4f")
                                    for c in ("a", "b", "ceiling", "± (95% CI)", "R²")})
