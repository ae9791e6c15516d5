"""Compare: a, b and the ceiling across runs; a and b vs model size (log axis) with the log-linear fit;
the fitted laws overlaid; the ceiling lift of each run over a chosen baseline run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.scaling import scaling_of
from dashboard import context, state
from dashboard.compare_figures import coefficients_figure, laws_figure, lift_figure, scaling_figure
from dashboard.tables import ceiling_lift_table, coefficients_table

FMT4 = st.column_config.NumberColumn(format="%.4f")

st.title("Compare")
ctx = context.load()
if ctx is not None:
    fitted = context.fitted_or_explain(ctx, ", so there is nothing to compare")
    if fitted:
        labels = ctx.labels(fitted)
        ids = state.run_picker(labels, "compare", label="Runs (the selection is shared with the other pages)")
        chosen = list(ctx.of(ids).values())
        fits = ctx.fits_of(ids)
        if len(chosen) < 1:
            st.info("Pick runs above (or on the Runs page) to compare them.")
        else:
            scaling = scaling_of(ctx.runs, chosen, coefficients=("a", "b"))
            table = coefficients_table(chosen, ctx.runs, scaling.sizes(), fits)
            st.subheader("Law coefficients and ceiling per run")
            st.plotly_chart(coefficients_figure(table), key="coef_chart")
            st.dataframe(table, hide_index=True,
                         column_config={c: FMT4 for c in ("a", "a se", "b", "b se", "ceiling", "ceiling_lo",
                                                          "ceiling_hi", "R²")}
                         | {"backtest error": st.column_config.NumberColumn(format="%+.4f",
                                                                            help="track record of this run's forecast")})

            st.subheader("a and b vs model size")
            pts = table[table["size (B)"].notna()].rename(columns={"size (B)": "size"})
            fits = {coef: scaling.fit(coef) for coef in ("a", "b")}
            if pts.empty:
                st.info("No model size could be read from these runs' model, name, params or tags (e.g. "
                        "'Qwen2.5-7B', '1.5B'). Tag runs with `model_size` to compare across sizes.")
            else:
                st.plotly_chart(scaling_figure(pts, fits), key="scaling_chart")
                for coef, fit in fits.items():
                    if isinstance(fit, str):
                        st.caption(f"{coef}: no log-linear fit — {fit}")
                    else:
                        lo, hi = fit.k_ci
                        st.caption(f"{coef} = k·ln(size) + c with k = {fit.k:.4g} (95% CI {lo:.4g} – {hi:.4g}), "
                                   f"c = {fit.c:.4g}, R² {fit.r2:.3f}, n = {fit.n} runs")

            st.subheader("Fitted laws overlaid")
            st.plotly_chart(laws_figure(chosen), key="laws_chart")
            st.caption("Solid: the law over the entropy range each run observed; dotted: its extrapolation to H = 0 "
                       "(★ the ceiling).")

            st.subheader("Intervention comparison: ceiling lift over a baseline run")
            base_default = next((int(r.run_id) for r in chosen
                                 if str((ctx.run_info(int(r.run_id)).get("tags") or {}).get("intervention"))
                                 == "none"), int(chosen[0].run_id))
            base_opts = [int(r.run_id) for r in chosen]
            baseline = st.selectbox("baseline run", base_opts, index=base_opts.index(base_default),
                                    format_func=labels.get, key="baseline")
            lift = ceiling_lift_table(chosen, baseline, fits)
            if len(lift) > 1:
                st.plotly_chart(lift_figure(lift), key="lift_chart")
            st.dataframe(pd.DataFrame(lift), hide_index=True,
                         column_config={c: FMT4 for c in ("ceiling", "ceiling_lo", "ceiling_hi")}
                         | {c: st.column_config.NumberColumn(format="%+.4f") for c in ("lift", "lift_lo", "lift_hi",
                                                                                      "backtest error")})
            st.caption("lift = ceiling − the baseline's ceiling; its 95% interval treats the two fits as independent "
                       "(se = √(se² + se_base²), normal quantile). The backtest column is each run's track record.")
