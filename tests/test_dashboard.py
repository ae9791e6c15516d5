"""The dashboard: every page runs without exception on real stored data (AppTest) and shows the stored
numbers; the Ceiling page draws its chart in headless Chromium against `streamlit run`."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import Store
from entropy_dash.analysis import load_results, refresh_analyses
from entropy_dash.demo_data import log_known_law
from ingest.mlflow_source import MlflowSource
from ingest.sync import sync_source

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def law_store(tmp_path_factory) -> str:
    """A store holding one known-law run and one run without entropy, ingested through MLflow."""
    root = tmp_path_factory.mktemp("dash")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    log_known_law(tracking, "dash", a=0.3, b=1.2, steps=120, noise=0.003, seed=1)
    url = f"sqlite:///{root / 'store.db'}"
    store = Store.open(url)
    sync_source(store, MlflowSource(tracking, {"experiments": ["dash"]}))
    refresh_analyses(store)
    return url


def _app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("ENTROPY_DASH_DB", url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_runs_page_shows_the_stored_fit(monkeypatch, law_store):
    at = _app(monkeypatch, law_store)
    (table,) = at.dataframe
    df = table.value
    (res,) = load_results(Store.open(law_store, create=False))
    row = df.iloc[0]
    assert row["run"] == res["run"] and row["ceiling"] == pytest.approx(res["law"]["ceiling"])
    assert row["a"] == pytest.approx(res["law"]["a"]) and row["R²"] == pytest.approx(res["law"]["r2"])
    assert row["n pairs"] == res["law"]["n"] == 25


def test_ceiling_page_shows_ceiling_and_interval(monkeypatch, law_store):
    at = _app(monkeypatch, law_store)
    at.switch_page("app_pages/ceiling.py").run()
    assert not at.exception, at.exception
    (res,) = load_results(Store.open(law_store, create=False))
    law = res["law"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ceiling R(H=0)"] == f"{law['ceiling']:.4f}"
    assert metrics["95% CI"] == f"{law['ceiling_lo']:.4f} – {law['ceiling_hi']:.4f}"
    assert law["ceiling_lo"] < 0.9 < law["ceiling_hi"]


def test_pages_say_what_is_missing_on_an_empty_or_absent_store(monkeypatch, tmp_path):
    at = _app(monkeypatch, f"sqlite:///{tmp_path / 'absent.db'}")
    assert "entropy-dash init" in at.warning[0].value
    Store.open(f"sqlite:///{tmp_path / 'empty.db'}")
    at = _app(monkeypatch, f"sqlite:///{tmp_path / 'empty.db'}")
    assert "entropy-dash demo" in at.info[0].value
    at.switch_page("app_pages/ceiling.py").run()
    assert not at.exception and "No run has a fitted law" in at.info[0].value


@pytest.mark.browser
def test_ceiling_page_draws_chart_in_chromium(law_store, streamlit_app, browser, tmp_path):
    app = streamlit_app(law_store)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{app.url}/ceiling", wait_until="networkidle")
    page.wait_for_selector(".js-plotly-plot .scatterlayer .trace", timeout=60_000)
    page.wait_for_timeout(500)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator(".js-plotly-plot").count() == 2
    text = page.inner_text("body")
    assert "ceiling R(H=0)" in text and "0.9" in text
    shot = tmp_path / "ceiling.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    page.close()
