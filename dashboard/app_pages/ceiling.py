"""Ceiling: per run, R vs H with the fitted law, its band and the ceiling R(H=0) with its interval; the
law's residuals; R vs step with the forecast band from a cutoff (the backtest re-run from the first k% of
steps: predicted vs what happened, next to every baseline)."""

from __future__ import annotations

import streamlit as st

from dashboard import context, data, state
from dashboard.figures import ceiling_figure, forecast_figure, residuals_figure
from dashboard.tables import backtest_of, baselines_table
from dashboard.text import md_text
from models.align import align

STORED_CUTOFF = 30

st.title("Ceiling")
ctx = context.load()
if ctx is not None:
    fitted = context.fitted_or_explain(
        ctx, ": a run needs an entropy and a performance metric with at least 3 paired points")
    if fitted:
        labels = ctx.labels(fitted)
        run_id = state.single_run(list(labels), labels, "ceiling")
        res = ctx.by_id[run_id]
        law = res["law"]
        stored_bt = backtest_of(res)
        cols = st.columns(4) + st.columns(4)
        cols[0].metric("ceiling R(H=0)", f"{law['ceiling']:.4f}", help="b − a: the law's prediction once entropy "
                       "is exhausted")
        cols[1].metric("95% CI", f"{law['ceiling_lo']:.3f}–{law['ceiling_hi']:.3f}")
        cols[4].metric("a", f"{law['a']:.3f} ± {law['a_se']:.3f}")
        cols[5].metric("b", f"{law['b']:.3f} ± {law['b_se']:.3f}")
        cols[6].metric("R²", f"{law['r2']:.4f}", help=f"n = {law['n']} paired points")
        headroom = res.get("headroom")
        cols[2].metric("headroom", "–" if headroom is None else f"{headroom:+.4f}",
                       help="ceiling − best performance so far")
        cols[3].metric("backtest error", "no backtest yet" if res.get("backtest") is None else
                       (f"{stored_bt['error']:+.4f}" if stored_bt else "n/a"),
                       help="track record: the forecast of the final score from the first 30% of this run minus "
                            "what happened" + ("" if stored_bt or res.get("backtest") is None else
                                               f" — not computed: {res['backtest'].get('error')}"))
        for flag in law.get("flags", []):
            st.warning(flag)

        h, r = data.run_arrays(ctx.url, run_id, ctx.run_version(run_id), res["entropy_key"], res["performance_key"])
        pairs = align(h, r).to_frame()
        left, right = st.columns(2)
        with left:
            st.subheader("R vs H: the law and its ceiling")
            st.plotly_chart(ceiling_figure(pairs, law, res["run"], run_id), key="ceiling_chart")
        with right:
            st.subheader("Residuals of the law")
            st.plotly_chart(residuals_figure(pairs, law, res["run"], run_id), key="residuals_chart")
            st.caption(f"entropy: {md_text(res['entropy_key'])} · performance: {md_text(res['performance_key'])} — "
                       f"{md_text(res['key_reason'])}")

        st.subheader("R vs step: forecast from the first part of the run")
        cutoff_pct = st.slider("cutoff: forecast from the first k% of steps, then compare with what happened",
                               10, 90, STORED_CUTOFF, 5, format="%d%%", key="cutoff")
        cutoff = cutoff_pct / 100
        version = ctx.run_version(run_id)
        if cutoff_pct == STORED_CUTOFF and res.get("backtest") is not None:
            bt = res["backtest"]
            origin = "stored backtest"
        else:
            bt = data.backtest_at(ctx.url, run_id, version, res["entropy_key"], res["performance_key"], cutoff,
                                  res["run"])
            origin = f"re-run at {cutoff_pct}%"
        fc = data.forecast_at(ctx.url, run_id, version, res["entropy_key"], res["performance_key"], cutoff)
        if "cause" in bt:
            st.warning(f"No backtest at a {cutoff_pct}% cutoff: {md_text(bt.get('error'))}. Try a later cutoff.")
            bt_ok = None
        else:
            bt_ok = bt
            m = st.columns(3) + st.columns(3)
            m[0].metric(f"predicted final ({bt['method']})", f"{bt['predicted_final']:.4f}",
                        help="forecast of the mean of the last evaluations, from the points before the cutoff")
            m[1].metric("prediction interval", f"{bt['interval'][0]:.3f}–{bt['interval'][1]:.3f}")
            m[2].metric("observed final", f"{bt['observed_final']:.4f}",
                        help=f"mean of the evaluations at steps {', '.join(map(str, bt['final_steps']))}")
            m[3].metric("error (predicted − observed)", f"{bt['error']:+.4f}")
            m[4].metric("inside the interval", "yes" if bt.get("covered") else "no")
            m[5].metric("cutoff step", f"{bt['cutoff_step']}", help=f"{bt['n_pairs_before_cutoff']} paired points "
                        "before it")
            st.caption(f"{origin}; cutoff step {bt['cutoff_step']}, {bt['n_pairs_before_cutoff']} paired points before "
                       f"it; best method before the cutoff (rolling origin): {bt.get('best_before_cutoff') or '–'}")
        cutoff_step = fc.get("cutoff_step_exact") if "cause" not in fc else None
        st.plotly_chart(forecast_figure(r, fc if "cause" not in fc else None, law, res["run"], run_id,
                                        cutoff_step=cutoff_step, backtest=bt_ok), key="forecast_chart")
        if bt_ok:
            st.dataframe(baselines_table(bt_ok), hide_index=True,
                         column_config={c: st.column_config.NumberColumn(format="%.4f")
                                        for c in ("predicted", "interval lo", "interval hi", "observed")}
                         | {"error": st.column_config.NumberColumn(format="%+.4f")})
