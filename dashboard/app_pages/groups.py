"""Groups: many runs at once. Runs grouped by project/experiment, model, algorithm, intervention or any tag or
parameter: the median and interquartile band of H and R per group against step, and every run as one point
(ceiling against entropy spent, coloured by group). Buckets follow the data (per step, per evaluation; ``dashboard.grouping``); a stored downsampled
level (``db.lod``) is read only where it is finer than the buckets, so it stays quick at hundreds of runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import context, data, state
from dashboard.group_figures import MANY_POINTS, bands_figure, points_figure
from dashboard.grouping import (
    first_last,
    group_bands,
    group_choices,
    group_of,
    group_table,
    limit_groups,
    run_points,
)
from dashboard.text import md_text

MAX_GROUPS = 12
DEFAULT_RUNS = 100  # runs shown when none is selected (every run, up to this many)


def bucket_words(width: dict[str, int]) -> str:
    """``1 step (H) and 5 steps (R)``: the bucket width of each band drawn."""
    def steps(w: int) -> str:
        return f"{w:,} step{'s' if w != 1 else ''}"
    if width.get("entropy") == width.get("performance") or len(width) == 1:
        return steps(next(iter(width.values())))
    return f"{steps(width['entropy'])} (H) and {steps(width['performance'])} (R)"


st.title("Groups")
top = st.container()  # messages and options: filled once the store is read
head = st.empty()
slot = st.empty()
# the first chart's empty frame goes out first, so that the browser loads the charting library while the
# store is read (replaced by the chart, or removed when there is nothing to draw)
slot.plotly_chart(bands_figure([], []))
with top:
    ctx = context.load()
if ctx is None:
    slot.empty()
else:
    all_ids = ctx.ids()
    chosen = state.selection(all_ids)
    with top:
        c = st.columns([2, 2, 1])
        choice = c[0].selectbox("group runs by", group_choices(ctx.runs), key="g_by",
                                help="as W&B groups runs; tags and parameters of every run are offered")
        # with nothing selected, a store of more than DEFAULT_RUNS runs shows its first DEFAULT_RUNS until
        # "every run" is chosen: the page's cost follows what it draws, not the store's size
        first = f"the first {DEFAULT_RUNS} runs"
        scopes = ([first, f"every run ({len(all_ids)})"] if len(all_ids) > DEFAULT_RUNS else ["every run"]) \
            + ([f"the selected runs ({len(chosen)})"] if chosen else [])
        scope = c[1].radio("runs", scopes, horizontal=True, key="g_scope",
                           index=len(scopes) - 1 if chosen else 0,
                           help="the selection is made on the Runs page (or in the URL)")
        ids = chosen if scope.startswith("the selected") else all_ids[:DEFAULT_RUNS] if scope == first else all_ids
        intervals = c[2].toggle("ceiling intervals", value=len(ids) <= MANY_POINTS, key="g_intervals")
    results = ctx.of(ids)  # the analyses of the runs drawn only
    info = ctx.runs.set_index("id", drop=False)
    raw_groups = {i: group_of(info.loc[i].to_dict(), choice) for i in ids if i in info.index}
    groups = limit_groups(raw_groups, MAX_GROUPS)
    n_raw = len(set(raw_groups.values()))
    if n_raw > MAX_GROUPS:
        top.caption(f"{n_raw} groups: the {MAX_GROUPS - 1} largest are drawn apart, the others together as one.")

    keys = tuple(sorted({k for i in ids for k in (results[i].entropy_key, results[i].performance_key) if k}))
    spans = data.step_spans(ctx.url, ctx.version, tuple(ids), keys)
    levels = data.lod_levels(ctx.url, ctx.version, tuple(ids), keys)
    versions = dict(zip(ctx.runs["id"].astype(int), ctx.runs["data_version"].astype(int), strict=True))
    series: dict[str, dict[int, tuple]] = {"entropy": {}, "performance": {}}
    width: dict[str, int] = {}
    from_level = n_series = 0
    for role in ("entropy", "performance"):
        wanted = [(i, versions.get(i, 0), key) for i in ids
                  if (key := results[i].entropy_key if role == "entropy" else results[i].performance_key)
                  and (i, key) in spans]
        if wanted:
            got = data.group_series(ctx.url, tuple(wanted), spans, levels)
            series[role], width[role] = got.series, got.width
            from_level += got.from_level
            n_series += len(wanted)

    head.subheader("Median and interquartile range per group")
    hb = group_bands(series["entropy"], groups, width.get("entropy", 1))
    rb = group_bands(series["performance"], groups, width.get("performance", 1))
    if not hb and not rb:
        slot.info("None of these runs has an entropy or performance curve stored.")
    else:
        slot.plotly_chart(bands_figure(hb, rb), key="groups_bands")
        n_groups = len(set(groups.values()))
        st.caption(f"{len(ids)} runs in {n_groups} group{'s' if n_groups != 1 else ''}. Steps are cut into "
                   f"buckets of {bucket_words(width)}; a run's value in a bucket is its latest value at or before "
                   "the bucket's end (within the run's own steps); the line is the median over the group's runs, the band their 25th–75th "
                   f"percentiles (hover: how many runs). {from_level} of {n_series} series were read from a "
                   "stored downsampled level finer than the buckets, the others point by point.")

    st.subheader("Runs as points: ceiling against entropy spent")
    entropy = {i: first_last(*series["entropy"][i]) for i in series["entropy"]}
    points = run_points([results[i] for i in ids], groups, entropy)
    drawn = points.dropna(subset=["ceiling", "entropy spent"])
    if drawn.empty:
        st.info("No run here has both a fitted law and an entropy curve. `entropy-dash runs` shows what each "
                "run has.")
    else:
        st.plotly_chart(points_figure(points, intervals=intervals), key="groups_points")
        left_out = len(points) - len(drawn)
        st.caption(f"{len(drawn)} runs drawn, coloured by group; ◆ each group's median. Entropy spent = "
                   "(H_first − H_last) / H_first, the first and last stored entropy; ceiling = b − a of the fitted "
                   "law" + (" with its 95% interval" if intervals else "") +
                   (f". {left_out} runs without a fitted law or an entropy curve are left out (listed below)."
                    if left_out else "."))
    st.dataframe(group_table(points), hide_index=True,
                 column_config={"median entropy spent": st.column_config.NumberColumn(format="%.3f")}
                 | {c: st.column_config.NumberColumn(format="%.4f")
                    for c in ("median ceiling", "ceiling q25", "ceiling q75")})
    odd = points[(points["status"] != "ok") | points["ceiling"].isna()]
    if len(odd):
        with st.expander(f"{len(odd)} runs without a ceiling or with a status other than ok"):
            st.dataframe(pd.DataFrame({"id": odd["id"], "run": odd["run"], "group": odd["group"],
                                       "status": odd["status"], "reason": odd["reason"],
                                       "ceiling": odd["ceiling"]}), hide_index=True)
    if choice.startswith(("tag: ", "param: ")):
        st.caption(f"Grouped by {md_text(choice)}; runs without it form their own group.")
