"""Ceiling: per run, R vs H with the fitted law and the predicted ceiling R(H=0); H and R vs step."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.figures import ceiling_figure, curves_figure
from models.align import align

st.title("Ceiling")
store = data.get_store()
if store is not None:
    url, version = data.db_url(), data.version(store)
    fitted = [r for r in data.results(url, version) if r.get("law")]
    if not fitted:
        st.info("No run has a fitted law yet: a run needs an entropy and a performance metric with at least "
                "3 paired points. See `entropy-dash runs` for what each run has.")
    else:
        names = {r["run_id"]: f"{r['run']}  (#{r['run_id']})" for r in fitted}
        run_id = st.selectbox("Run", list(names), format_func=names.get)
        res = next(r for r in fitted if r["run_id"] == run_id)
        law = res["law"]
        cols = st.columns(5)
        cols[0].metric("ceiling R(H=0)", f"{law['ceiling']:.4f}",
                       help="b − a: the law's prediction once entropy is exhausted")
        cols[1].metric("95% CI", f"{law['ceiling_lo']:.4f} – {law['ceiling_hi']:.4f}")
        cols[2].metric("a", f"{law['a']:.4f} ± {law['a_se']:.4f}")
        cols[3].metric("b", f"{law['b']:.4f} ± {law['b_se']:.4f}")
        cols[4].metric("R²", f"{law['r2']:.4f}", help=f"n = {law['n']} paired points")
        for flag in law.get("flags", []):
            st.warning(flag)

        s = data.series(url, version, (run_id,), (res["entropy_key"], res["performance_key"]))
        h = s[s["key"] == res["entropy_key"]]
        r = s[s["key"] == res["performance_key"]]
        pairs = align(pd.Series(h["value"].to_numpy(), index=h["step"].to_numpy()),
                      pd.Series(r["value"].to_numpy(), index=r["step"].to_numpy())).to_frame()
        st.plotly_chart(ceiling_figure(pairs, law, res["run"], run_id), use_container_width=True)
        st.caption(f"entropy: `{res['entropy_key']}` · performance: `{res['performance_key']}` — "
                   f"{res['key_reason']}")
        st.plotly_chart(curves_figure(h, r, res["run"], run_id, law["ceiling"]), use_container_width=True)
