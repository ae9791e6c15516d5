"""Ceiling: per run and benchmark, R vs H with the fitted law, its band and the ceiling R(H=0) with its interval
(bounded to the metric's range; warm-up evaluations marked and excluded); the law's residuals; and R vs step
with the headline forecast: to the planned end for a run in progress, or the backtest from a cutoff for a
finished run — always with its interval and its track record."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import context, data, state
from dashboard.tables import baselines_table
from dashboard.text import md_text, step_list
from models.align import align
from models.backtest import DEFAULT_CUTOFF
from plots.run_figures import ceiling_figure, forecast_figure, residuals_figure

FMT4 = st.column_config.NumberColumn(format="%.4f")

st.title("Ceiling")
ctx = context.load()
if ctx is not None:
    shown = ctx.ids(shown=True)
    if not shown:
        st.info("No run has an entropy and a performance metric yet. `entropy-dash runs` shows what each run has.")
        context.show_unfit(ctx.results)
    else:
        labels = ctx.labels(shown)
        run_id = state.single_run(list(labels), labels, "ceiling")
        res = ctx.of([run_id])[run_id]
        fit = ctx.fits_of([run_id])[run_id]
        version = ctx.run_version(run_id)
        st.caption(f"**{md_text(res.progress or '')}** · entropy {md_text(res.entropy_key)} · "
                   f"{md_text(res.key_reason or '')}")

        benches = res.benchmarks
        keys = [b.key for b in benches]
        if len(keys) > 1:
            key = st.selectbox("benchmark (the headline first, by the rule: your key › the training data's benchmark "
                               "› the first by name that can be fitted)", keys, index=keys.index(res.performance_key),
                               format_func=lambda k: next(b.benchmark for b in benches if b.key == k)
                               + (" (headline)" if k == res.performance_key else ""), key="c_bench")
        else:
            key = res.performance_key
        bench = next((b for b in benches if b.key == key), None)
        law = res.law if bench is None else bench.law
        excluded = () if bench is None else bench.excluded_steps
        law_doc = None if law is None else law.to_dict()  # what the figures draw
        h, r = data.run_arrays(ctx.url, run_id, version, res.entropy_key, key)

        if law is None:
            status, reason = (res.status, res.reason) if bench is None else (bench.status, bench.reason)
            st.warning(f"**{md_text(status)}**: {md_text(reason)} — no ceiling is shown for "
                       "this benchmark (a law fitted here would mislead).")
        else:
            cols = st.columns(4) + st.columns(4)
            cols[0].metric("ceiling R(H=0)", f"{law.ceiling:.4f}", help="b − a: the law's prediction once entropy is "
                           "exhausted, kept inside the metric's range")
            cols[1].metric("95% CI", f"{law.ceiling_lo:.3f}–{law.ceiling_hi:.3f}")
            best = None if bench is None else bench.best
            headroom = (law.ceiling - best) if best is not None else None
            cols[2].metric("headroom", "–" if headroom is None else f"{headroom:+.4f}",
                           help="ceiling − best performance so far")
            bt = (fit.get("backtest") or {}) if key == res.performance_key else {}
            cols[3].metric(f"backtest error ({DEFAULT_CUTOFF:.0%})",
                           f"{bt['error']:+.4f}" if bt.get("error") is not None else "n/a",
                           help=f"track record: the headline forecast of the final score from the first "
                                f"{DEFAULT_CUTOFF:.0%} of this run minus what happened"
                                + (f" — {bt.get('reason')}" if bt.get("reason") else ""))
            cols[4].metric("a", f"{law.a:.3f} ± {law.a_se:.3f}")
            cols[5].metric("b", f"{law.b:.3f} ± {law.b_se:.3f}")
            cols[6].metric("R²", f"{law.r2:.4f}", help=f"n = {law.n} paired evaluations")
            cols[7].metric("b − a (unbounded)", f"{law.ceiling_raw:.4f}", help=(law.range or {}).get("reason"))
            for flag in law.flags:
                st.warning(flag)

            pairs = align(h, r).to_frame()
            warm = pairs["step"].isin(list(excluded))
            if warm.any():
                st.info(f"{int(warm.sum())} warm-up evaluation(s) excluded (steps "
                        f"{step_list(pairs['step'][warm])}): {md_text((res.warmup or {}).get('reason'))}. "
                        "`entropy-dash fit --keep-warmup` (or `keep_warmup = true` in sources.toml) fits them too.")
            left, right = st.columns(2)
            with left:
                st.subheader("R vs H: the law and its ceiling")
                st.plotly_chart(ceiling_figure(pairs[~warm], law_doc, res.run, run_id, pairs[warm]), key="ceiling_chart")
            with right:
                st.subheader("Residuals of the law")
                st.plotly_chart(residuals_figure(pairs[~warm], law_doc, res.run, run_id), key="residuals_chart")

        if key == res.performance_key:
            live = fit.get("forecast")
            if live:
                st.subheader(f"Forecast to the planned end (step {live['horizon_step']})")
                m = st.columns(4)
                m[0].metric("predicted final", f"{live['predicted_final']:.4f}", help=live["label"])
                m[1].metric("95% interval", f"{live['interval'][0]:.3f}–{live['interval'][1]:.3f}",
                            help="calibrated on the finished runs' errors" if live["calibrated"] else
                            "fewer than 19 finished runs: a Student-t interval of the size of their errors (not calibrated)")
                m[2].metric("track record (MAE)", "–" if live["backtest_mae"] is None else
                            f"{100 * live['backtest_mae']:.2f} pt",
                            help=f"the replay's error: {live['backtest_n']} finished runs cut at "
                                 f"{live['backtest_cutoff']:.0%} of their length, forecast by this same path")
                m[3].metric("interval coverage", "–" if live.get("coverage") is None else f"{live['coverage']:.0%}")
                rec = (live.get("track_record") or {}).get("sentence") or "no finished run replayed yet"
                st.caption(f"{md_text(live['label'])}; weights learned on {live['backtest_n']} finished runs "
                           f"({md_text(live['rule'])}); {md_text(rec)}.")
                for m_name, why in (live.get("excluded") or {}).items():
                    st.caption(f"no weight to {md_text(m_name)}: {md_text(why)}")
                path = data.headline_path(ctx.url, run_id, version, res, live, live=True)
                st.plotly_chart(forecast_figure(r, law_doc, res.run, run_id, path=path, cutoff_step=live["from_step"],
                                                live=live, excluded_steps=list(res.excluded_steps or ())),
                                key="forecast_chart")
            elif res.finished:
                st.subheader("Backtest: the forecast from the first part of the run vs what happened")
                doc = data.backtest_of_run(ctx.url, ctx.version, run_id)
                cut = st.select_slider("cutoff: forecast from the first k% of steps", [d["cutoff"] for d in doc["cutoffs"]],
                                       value=DEFAULT_CUTOFF, format_func=lambda c: f"{c:.0%}", key="cutoff")
                cdoc = next(d for d in doc["cutoffs"] if d["cutoff"] == cut)
                row = next((x for x in cdoc["runs"] if x["run_id"] == run_id), None)
                if row is None:
                    why = next((x["reason"] for x in cdoc["skipped"] if x["run_id"] == run_id), "not backtested")
                    st.warning(f"No backtest at a {cut:.0%} cutoff: {md_text(why)}. Try a later cutoff.")
                else:
                    m = st.columns(5)
                    m[0].metric("predicted final", f"{row['predicted_final']:.4f}", help=row["label"])
                    m[1].metric("95% interval", f"{row['interval'][0]:.3f}–{row['interval'][1]:.3f}")
                    m[2].metric("observed final", f"{row['observed_final']:.4f}",
                                help=f"mean of the evaluations at steps {', '.join(map(str, row['final_steps']))}")
                    m[3].metric("error", f"{row['error']:+.4f}")
                    m[4].metric("inside the interval", "yes" if row["covered"] else "no")
                    st.caption(f"{md_text(row['label'])}; weights learned on the {row['pool']} other finished runs "
                               f"({md_text(row['rule'])}). {md_text(cdoc['summary']['sentence'])}")
                    path = data.headline_path(ctx.url, run_id, version, res, row, live=False)
                    st.plotly_chart(forecast_figure(r, law_doc, res.run, run_id, path=path,
                                                    cutoff_step=row["cutoff_step"], backtest=row,
                                                    excluded_steps=list(res.excluded_steps or ())),
                                    key="forecast_chart")
                    st.dataframe(baselines_table(row), hide_index=True,
                                 column_config={c: FMT4 for c in ("predicted", "interval lo", "interval hi", "observed")}
                                 | {"error": st.column_config.NumberColumn(format="%+.4f"),
                                    "weight": st.column_config.NumberColumn(format="%.2f")})
            else:
                st.info(f"No forecast: {md_text(fit.get('forecast_reason') or res.progress)}.")
        st.dataframe(pd.DataFrame([{"benchmark": b.benchmark, "key": b.key, "status": b.status,
                                    "ceiling": None if b.law is None else b.law.ceiling,
                                    "95% CI": "–" if b.law is None else
                                    f"{b.law.ceiling_lo:.3f}–{b.law.ceiling_hi:.3f}",
                                    "R²": None if b.law is None else b.law.r2, "best": b.best,
                                    "warm-up excluded": len(b.excluded_steps),
                                    "reason": b.reason or ""} for b in benches]),
                     hide_index=True, key="benchmarks_table", column_config={"ceiling": FMT4, "R²": FMT4,
                                                                             "best": FMT4})
