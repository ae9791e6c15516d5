"""Cached access to the store for the pages.

The store is opened once per process (``st.cache_resource``). Query results are cached with
``st.cache_data`` keyed on the store's data version (``Store.data_version``), so a page reload does not
re-query while an ingest that adds points or re-analyses runs invalidates them at once. Curves are cached
per run and metric, keyed on that run's own data version, already smoothed and downsampled (within the
chart's point budget), so the cache stays small however long the runs are. Curves are read from the stored
downsampled levels (``Store.lod_points``: a few hundred to a few thousand rows per series) unless smoothing
is on; full-resolution points are read straight through ``Store.points`` (one DB-API query per series: 20k
points in ≈20 ms on SQLite). Nothing here writes: the dashboard may connect with a read-only role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from analysis.results import RunAnalysis
from dashboard.curves import Curve, choose_level, prepare_curve
from dashboard.grouping import bucket_points, bucket_width, data_spacing, level_of_width
from db import Store, resolve_db_url
from db.errors import StoreError
from db.masking import mask_secrets, mask_url
from plots.downsample import MAX_POINTS

FIX_NO_DB = ("Create it with `entropy-dash init --db {url}` and fill it with `entropy-dash ingest …` "
             "(mlflow, wandb, tensorboard or file), or try `entropy-dash demo`.")
FIX_NO_RUNS = ("No runs in the store yet. Ingest some with `entropy-dash ingest mlflow URI` (or `wandb`, "
               "`tensorboard`, `file`), or run `entropy-dash demo`.")


def db_url() -> str:
    return resolve_db_url(None)


def shown_url() -> str:
    """The store's URL as pages show it: password masked."""
    return mask_url(db_url())


@st.cache_resource(show_spinner=False)
def _open(url: str) -> Store:
    return Store.open(url, create=False)


def get_store() -> Store | None:
    """The store, or None after telling the user what is missing and which command fixes it."""
    url = db_url()
    try:
        store = _open(url)
        store.data_version()  # the file may have been deleted since it was opened
        return store
    except StoreError as exc:
        _open.clear()
        st.warning(f"{exc}\n\n" + FIX_NO_DB.format(url=shown_url()))
        return None
    except Exception as exc:  # noqa: BLE001 - a broken database must not take the page down
        _open.clear()
        st.error(mask_secrets(f"cannot read the store at {url}: {type(exc).__name__}: {exc}\n\n")
                 + FIX_NO_DB.format(url=shown_url()))
        return None


@st.cache_data(show_spinner=False, ttl=60)
def _writable(url: str) -> bool:
    return _open(url).is_writable()


def is_writable() -> bool:
    """Whether this dashboard's connection may write to the store (checked at most once a minute)."""
    return _writable(db_url())


def version(store: Store) -> tuple:
    return store.data_version()


@st.cache_data(show_spinner=False, max_entries=8)
def results(url: str, version: tuple) -> list[RunAnalysis]:
    """Every run's analysis: stored when fresh, computed in memory when stale (pages never write)."""
    from analysis.pipeline import current_results

    return current_results(_open(url))


@st.cache_data(show_spinner=False, max_entries=8)
def fit_doc(url: str, version: tuple) -> dict[int, dict[str, Any]]:
    """``fit --json`` per run id: bounded ceilings, benchmarks, the live forecast with its track record."""
    from analysis.payloads import fit_payload

    return {int(r["run_id"]): r for r in fit_payload(_open(url), results(url, version),
                                                     cross=cross_run(url, version))}


@st.cache_data(show_spinner=False, max_entries=32)
def fits_of(url: str, version: tuple, run_ids: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    """``fit --json`` of some runs only (``fit_doc``'s entries for them, from their stored analyses and cross-run
    rows: a page about a few runs reads those, not every run's), without ``health`` and ``health_worst`` (the
    Health page reads those, ``health_of``)."""
    from analysis.payloads import fit_payload
    from analysis.pipeline import current_cross_run

    store = _open(url)
    chosen = results_of(url, version, tuple(run_ids))
    docs = fit_payload(store, chosen, cross=current_cross_run(store, [int(i) for i in run_ids]), with_health=False)
    return {int(f["run_id"]): f for f in docs}


@st.cache_data(show_spinner=False, max_entries=8)
def health_grid(url: str, version: tuple) -> dict[int, dict[str, str]]:
    """Run id → the worst severity of each detector's findings, for the runs with findings
    (``analysis.pipeline.current_health_grid``: one small stored column, no run's document)."""
    from analysis.pipeline import current_health_grid

    return current_health_grid(_open(url))


@st.cache_data(show_spinner=False, max_entries=32)
def health_of(url: str, version: tuple, run_id: int) -> dict[str, Any]:
    """One run's health findings in context, worst first (``analysis.pipeline.current_health``)."""
    from analysis.pipeline import current_health

    store = _open(url)
    (row,) = current_health(store, results_of(url, version, (int(run_id),)))
    return row


@st.cache_data(show_spinner=False, max_entries=8)
def analysed(url: str, version: tuple) -> pd.DataFrame:
    """Per analysed run, by id: ``run_id``, ``status`` and ``fitted`` (a law was fitted) — from the analyses
    table's columns (no result document read); a stale run's from its analysis computed in memory, as
    ``results`` does."""
    from analysis.version import ANALYSIS_VERSION, KIND

    store = _open(url)
    stale = set(store.stale_runs(KIND, ANALYSIS_VERSION))
    rows = {int(i): (str(st_), n is not None and n == n)
            for i, st_, n in store.analyses_columns(KIND, ["status", "n"]).itertuples(index=False)
            if int(i) not in stale}
    for r in results_of(url, version, tuple(sorted(stale))) if stale else []:
        rows[int(r.run_id)] = (str(r.status), r.law is not None)
    return pd.DataFrame([(i, s, f) for i, (s, f) in sorted(rows.items())], columns=["run_id", "status", "fitted"])


@st.cache_data(show_spinner=False, max_entries=8)
def cross_run(url: str, version: tuple):  # noqa: ANN201 - analysis.forecasting.CrossRun
    """The results across runs (replay rows, live headlines, the replay's summary per fraction), as stored."""
    from analysis.pipeline import current_cross_run

    return current_cross_run(_open(url))


@st.cache_data(show_spinner=False, max_entries=8)
def backtest_doc(url: str, version: tuple) -> dict[str, Any]:
    """``backtest --json`` at every replayed fraction (10% to 90%, every 5%)."""
    return backtest_doc_for(url, version, None)


@st.cache_data(show_spinner=False, max_entries=16)
def backtest_doc_for(url: str, version: tuple, project: str | None) -> dict[str, Any]:
    """``backtest --json`` over the runs of one experiment/project (all runs when None)."""
    from analysis.payloads import backtest_payload
    from models.backtest import GRID

    return backtest_payload(_open(url), run_refs(url, version, project), list(GRID), cross=cross_run(url, version))


@dataclass(frozen=True)
class RunRef:
    """A run as a view of the stored replay names it (``analysis.payloads.NamedRun``)."""

    run_id: int
    run: str
    project: str | None


def run_refs(url: str, version: tuple, project: str | None = None) -> list[RunRef]:
    """Every run (of one project when given) from the runs table: what a view of the stored replay names its
    runs by (it reads no analysis)."""
    df = runs(url, version)
    out = [RunRef(int(i), str(n), p if isinstance(p, str) else None)
           for i, n, p in zip(df["id"], df["name"], df["project"], strict=True)]
    return [r for r in out if project is None or r.project == project]


@st.cache_data(show_spinner=False, max_entries=64)
def backtest_of_run(url: str, version: tuple, run_id: int) -> dict[str, Any]:
    """``backtest_doc``'s view of one run: per grid fraction its replay row (or why it has none) from its own
    stored cross-run row, and the replay's summary over every finished run as stored with the cross-run
    results (``CrossRun.track``: the numbers ``backtest_doc`` sums up from every run's row)."""
    from analysis.payloads import backtest_payload
    from analysis.pipeline import current_cross_run
    from models.backtest import GRID

    store = _open(url)
    cross = current_cross_run(store, [int(run_id)])
    doc = backtest_payload(store, [r for r in run_refs(url, version) if r.run_id == int(run_id)], list(GRID),
                           cross=cross)
    for d in (doc, *doc["cutoffs"]):
        d["summary"] = cross.track.get(f"{d['cutoff']:g}")
    return doc


@st.cache_data(show_spinner=False, max_entries=8)
def runs(url: str, version: tuple) -> pd.DataFrame:
    return _open(url).runs_frame()


def source_summary(url: str) -> pd.DataFrame:
    """Runs, syncs and last sync per source (``Store.source_summary``); not cached, like the sync log."""
    return _open(url).source_summary()


@st.cache_data(show_spinner=False, max_entries=16)
def runs_page(url: str, version: tuple, filters: tuple, offset: int, limit: int) -> tuple[int, pd.DataFrame]:
    """``Store.runs_page``: one page of runs, filtered in SQL (``filters``: projects, models, algorithms, tags,
    search)."""
    projects, models, algorithms, tags, search = filters
    return _open(url).runs_page(projects=projects, models=models, algorithms=algorithms, tags=tags, search=search,
                                offset=offset, limit=limit)


@st.cache_data(show_spinner=False, max_entries=8)
def run_filter_values(url: str, version: tuple) -> dict[str, list[str]]:
    return _open(url).run_filter_values()


@st.cache_data(show_spinner=False, max_entries=8)
def run_names(url: str, version: tuple) -> dict[int, str]:
    return _open(url).run_names()


@st.cache_data(show_spinner=False, max_entries=16)
def results_of(url: str, version: tuple, run_ids: tuple[int, ...]) -> list[RunAnalysis]:
    """The analyses of some runs only (``current_results`` of ``run_ids``)."""
    from analysis.pipeline import current_results

    return current_results(_open(url), list(run_ids))


@st.cache_data(show_spinner=False, max_entries=8)
def sources(url: str, version: tuple) -> pd.DataFrame:
    return _open(url).sources_frame()


def sync_log(url: str, limit: int = 200) -> pd.DataFrame:
    """Not cached: a running sync changes it without changing the data version."""
    return _open(url).sync_log_frame(limit)


@st.cache_data(show_spinner=False, max_entries=32)
def series(url: str, version: tuple, run_ids: tuple[int, ...], keys: tuple[str, ...]) -> pd.DataFrame:
    return _open(url).series(run_ids, keys)


# ------------------------------------------------------------------ curves (Collapse and Groups pages)
def build_curve(store: Store, run_id: int, key: str, smoothing: float, x_axis: str, n_out: int = MAX_POINTS,
                level: int | None = None) -> Curve:
    """A run's metric ready to draw at ``n_out`` points per line: from the stored ``level`` (``db.lod``) when
    given and not smoothing, else from every stored point (the EMA needs them all)."""
    if level is not None and smoothing == 0:
        pts = store.lod_points(run_id, key, level)
        if pts.size:
            return prepare_curve(pts[:, 0], pts[:, 1], pts[:, 2], x_axis=x_axis, n_out=n_out, level=level)
    pts = store.points(run_id, key)
    return prepare_curve(pts[:, 0], pts[:, 1], pts[:, 2], smoothing=smoothing, x_axis=x_axis, n_out=n_out)


@st.cache_data(show_spinner=False, max_entries=32)
def curves(url: str, series: tuple[tuple[int, int, str, int | None], ...], smoothing: float, x_axis: str,
           n_out: int = MAX_POINTS) -> list[Curve]:
    """The curves of a page, each ``(run_id, run_version, key, level)`` (cached on the runs' own data
    versions, ``runs.data_version``): one cache look-up for a page of 100 runs instead of 200."""
    store = _open(url)
    return [build_curve(store, run_id, key, smoothing, x_axis, n_out, level) for run_id, _, key, level in series]


@st.cache_data(show_spinner=False, max_entries=16)
def lod_levels(url: str, version: tuple, run_ids: tuple[int, ...], keys: tuple[str, ...]) -> dict:
    """Stored levels of the runs' series: {(run_id, key): {level: rows}} (absent: the series has none)."""
    out: dict[tuple[int, str], dict[int, int]] = {}
    for run_id, key, level, n in _open(url).lod_levels(run_ids, keys).itertuples(index=False):
        out.setdefault((int(run_id), str(key)), {})[int(level)] = int(n)
    return out


def curve_level(levels: dict, run_id: int, key: str, smoothing: float, n_out: int) -> int | None:
    """The level a curve is read from (None: every stored point; always when smoothing)."""
    return None if smoothing > 0 else choose_level(levels.get((run_id, key), {}), n_out)


@st.cache_data(show_spinner=False, max_entries=16)
def step_spans(url: str, version: tuple, run_ids: tuple[int, ...], keys: tuple[str, ...]) -> dict:
    """{(run_id, key): (first step, last step)} of the series that exist."""
    df = _open(url).step_spans(run_ids, keys)
    return {(int(r), str(k)): (int(a), int(b)) for r, k, a, b in df.itertuples(index=False)}


def build_bucket_series(store: Store, run_id: int, key: str, width: int, level: int | None) -> tuple:
    """A series reduced to what the grouped view needs (``grouping.bucket_points``): read from the stored
    level of that bucket width when there is one (it holds every bucket's last point), else from every point."""
    pts = store.lod_points(run_id, key, level) if level is not None else np.empty((0, 3))
    if not pts.size:
        pts = store.points(run_id, key)
    return bucket_points(pts[:, 0], pts[:, 1], width)


@st.cache_data(show_spinner=False, max_entries=32)
def bucket_series(url: str, series: tuple[tuple[int, int, str, int | None], ...], width: int) -> list[tuple]:
    """``build_bucket_series`` of each ``(run_id, run_version, key, level)``, cached on the runs' versions."""
    store = _open(url)
    return [build_bucket_series(store, run_id, key, width, level) for run_id, _, key, level in series]


@dataclass(frozen=True)
class GroupSeries:
    """The series of one role (entropy or performance) of the Groups page, reduced to its buckets."""

    series: dict[int, tuple]  # run_id → (steps, values): ``grouping.bucket_points`` at ``width``
    width: int  # steps per bucket (``grouping.bucket_width``)
    from_level: int  # how many series were read from a stored level (the others point by point)


def group_series(url: str, wanted: tuple[tuple[int, int, str], ...], spans: dict, levels: dict) -> GroupSeries:
    """The bucketed series of ``wanted`` ``(run_id, run_version, key)`` (every one in ``spans``, from
    ``step_spans``; ``levels`` from ``lod_levels``): first at the finest buckets the chart can show (from a
    stored level finer than them when there is one), then as coarse as the data (per evaluation for a score
    logged every N steps), read again at that width unless it is a multiple of the one read (then the
    points read already hold every bucket's end)."""
    first = min(spans[(i, k)][0] for i, _, k in wanted)
    last = max(spans[(i, k)][1] for i, _, k in wanted)

    def read(w: int) -> tuple[dict[int, tuple], int]:
        level = level_of_width(w)
        asked = tuple((i, v, k, level if level in levels.get((i, k), {}) else None) for i, v, k in wanted)
        got = dict(zip([i for i, _, _ in wanted], bucket_series(url, asked, w), strict=True))
        return got, sum(a[3] is not None for a in asked)

    fine = bucket_width(first, last)
    got, n_level = read(fine)
    coarse = bucket_width(first, last, data_spacing(got))
    if coarse % fine:
        got, n_level = read(coarse)
    return GroupSeries(got, coarse, n_level)


@st.cache_data(show_spinner=False, max_entries=64)
def run_arrays(url: str, run_id: int, run_version: int, entropy_key: str,
               performance_key: str) -> tuple[pd.Series, pd.Series]:
    """Full-resolution finite entropy and performance of one run (for fits, forecasts and residuals)."""
    store = _open(url)
    out = []
    for key in (entropy_key, performance_key):
        pts = store.points(run_id, key)
        ok = np.isfinite(pts[:, 1])
        out.append(pd.Series(pts[ok, 1], index=pts[ok, 0].astype(np.int64), name=key))
    return out[0], out[1]


@st.cache_data(show_spinner=False, max_entries=128)
def headline_path(url: str, run_id: int, run_version: int, result: RunAnalysis,
                  headline: dict[str, Any], live: bool) -> dict[str, Any] | None:
    """The headline forecast as a path with its band (``analysis.headline.path_of_headline``) for one run's
    live forecast (``live``: ``headline`` from ``fit_doc``) or backtest row (from ``backtest_doc``)."""
    from analysis.headline import HeadlineSpan, path_of_headline

    span = HeadlineSpan.of_live(headline) if live else HeadlineSpan.of_backtest(headline)
    h, r = run_arrays(url, run_id, run_version, result.entropy_key, result.performance_key)
    return path_of_headline(h, r, result, headline, span)
