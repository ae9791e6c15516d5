"""A page about a few runs reads the stored analyses of those runs only, not every run's: counted on
``Store.analyses_frame`` (the one method the dashboard reads result documents through) while each page runs in
AppTest on a store of 110 analysed runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analysis.pipeline import refresh_analyses
from analysis.version import FORECAST_KIND, HEALTH_KIND, KIND
from db import Store
from db.records import RunData, RunInfo, Series
from db.store_analyses import AnalysesMixin

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
H, R = "actor/entropy", "val-core/gsm8k/acc/mean@1"
ROLES = {H: "entropy", R: "performance"}
N_RUNS = 110  # more than a Runs page (50) and the Groups page's default (100)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> str:
    """110 short runs, each with entropy every step and accuracy every 5 steps, analysed and stored."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reads') / 's.db'}"
    store = Store.open(url)
    sid = store.source_id("file", "/sweep")
    rng = np.random.default_rng(3)
    for i in range(N_RUNS):
        steps = np.arange(1, 61)
        h = 0.1 + np.exp(-steps / (20 + i % 7)) * (1 + 0.05 * rng.standard_normal(steps.size))
        rs = np.arange(0, 61, 5)
        r = 0.8 - 0.4 * np.exp(-rs / (15 + i % 5)) + 0.005 * rng.standard_normal(rs.size)
        store.write_run(sid, RunData(RunInfo(f"r{i}", f"run-{i:03d}", project=f"p{i % 2}", model="7B"),
                                     (Series.build(H, steps, h), Series.build(R, rs, r))), ROLES)
    refresh_analyses(store)
    return url


@pytest.fixture
def reads(monkeypatch) -> list[tuple[str | None, int | None]]:
    """(kind, how many run ids were asked for; None: every run) of each ``analyses_frame`` call."""
    seen: list[tuple[str | None, int | None]] = []
    original = AnalysesMixin.analyses_frame

    def counted(self, kind=None, run_ids=None):  # noqa: ANN001, ANN202 - the wrapped method's own signature
        seen.append((kind, None if run_ids is None else len(list(run_ids))))
        return original(self, kind, run_ids)

    monkeypatch.setattr(AnalysesMixin, "analyses_frame", counted)
    return seen


def _run_page(monkeypatch, url: str, page: str, reads: list) -> AppTest:
    monkeypatch.setenv("ENTROPY_DASH_DB", url)
    st.cache_data.clear()  # the pages' caches outlive an AppTest: each page here starts cold
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    if page != "runs":
        st.cache_data.clear()
        reads.clear()
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


@pytest.mark.parametrize(("page", "most"), [("runs", 50), ("ceiling", 1), ("collapse", 8), ("compare", 8),
                                            ("groups", 100), ("backtest", 0), ("health", 1)])
def test_a_page_reads_the_analyses_it_shows_only(monkeypatch, sweep, reads, page, most):
    at = _run_page(monkeypatch, sweep, page, reads)
    summaries = [n for kind, n in reads if kind == KIND]
    assert None not in summaries, f"the {page} page read every run's analysis"
    assert max(summaries, default=0) == most  # the runs it shows (its first page, its default selection)
    forecasts = [n for kind, n in reads if kind == FORECAST_KIND]
    if page != "backtest":  # the Backtest page shows every finished run's replay: it reads every forecast row
        assert None not in forecasts and max(forecasts, default=0) <= most
    healths = [n for kind, n in reads if kind == HEALTH_KIND]  # the Health page's grid reads a column, not these
    assert healths == ([1] if page == "health" else [])
    text = " ".join(m.value for m in at.caption) + " ".join(str(m.value) for m in at.markdown)
    if page == "runs":
        assert f"runs 1–50 of {N_RUNS} matching" in text
    if page == "groups":  # nothing selected: the first 100 runs, "every run" one click away
        assert at.radio(key="g_scope").options == ["the first 100 runs", f"every run ({N_RUNS})"]
        assert "100 runs in 2 groups" in text
    if page == "health":  # every run in the grid, the first of them (worst first) picked
        assert at.dataframe[0].value.shape == (N_RUNS, 9)
        assert at.selectbox(key="h_run").options[0].startswith("run-")


def test_groups_every_run_when_asked(monkeypatch, sweep, reads):
    at = _run_page(monkeypatch, sweep, "groups", reads)
    reads.clear()
    at.radio(key="g_scope").set_value(f"every run ({N_RUNS})").run()
    assert not at.exception, at.exception
    assert f"{N_RUNS} runs in 2 groups" in " ".join(m.value for m in at.caption)
    assert max(n for kind, n in reads if kind == KIND) == N_RUNS
