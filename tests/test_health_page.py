"""The Health page: the runs × detectors grid shows the stored severities, picking a cell shows that finding's
sentence, evidence and advice, and the page draws its curves with the steps shaded in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis.payloads import fit_payload
from analysis.pipeline import current_results
from db import Store
from entropy_dash.cli import main
from models.health import RANK
from tests.service_checks import wait_drawn

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def tb_store(tmp_path_factory, shared_data: Path) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('health') / 'store.db'}"
    assert main(["--db", url, "-q", "ingest", "tensorboard", str(shared_data / "verl-tensorboard")]) == 0
    return url


def _fits(url: str) -> dict[int, dict]:
    store = Store.open(url, create=False)
    return {r["run_id"]: r for r in fit_payload(store, current_results(store))}


def test_health_grid_and_a_picked_finding_equal_the_stored_findings(monkeypatch, tb_store):
    monkeypatch.setenv("ENTROPY_DASH_DB", tb_store)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/health.py").run()
    assert not at.exception, at.exception
    fits = _fits(tb_store)
    grid = at.dataframe[0].value
    math = next(i for i, f in fits.items() if f["run"].endswith("trtllm-qwen2-7b-tp4-8gpus"))
    row = grid.loc[f"{fits[math]['run']} (#{math})"]
    assert row["reward_eval_divergence"] == "critical" and row["entropy_collapse"] == "warn"
    assert at.selectbox(key="h_run").value == math  # the worst run first
    shown = at.markdown[0].value.replace("\\", "")
    assert "MATH-lighteval fell from 0.547 at step 15" in shown
    # pick the game2048 run's divergence cell: its constant score is degenerate, not reward hacking
    game = next(i for i, f in fits.items() if f["run"].endswith("trtllm-qwen2-7b-game2048-tp4-8gpus"))
    at.selectbox(key="h_run").set_value(game).run()
    findings = sorted(fits[game]["health"], key=lambda f: -RANK[f["severity"]])
    j = next(k for k, f in enumerate(findings) if f["detector"] == "reward_eval_divergence")
    at.selectbox(key="h_finding").set_value(j).run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "constant at -1.000" in text and "not evidence of reward hacking" in text
    ev = at.dataframe[1].value
    assert dict(zip(ev["evidence"], ev["value"], strict=True))["degenerate"] == "constant"


@pytest.mark.browser
def test_health_page_draws_in_chromium(tb_store, streamlit_app, browser, tmp_path):
    app = streamlit_app(tb_store)
    page = browser.new_page(viewport={"width": 1500, "height": 2200})
    page.goto(f"{app.url}/health", wait_until="networkidle")
    # its script run ended and the worst finding's sentence shown, then its figure's traces drawn (plotly
    # draws all the traces of a figure in one call) — no fixed wait
    wait_drawn(page, "Health", ["MATH-lighteval fell from 0.547", "Do this", "shaded: steps 15–130"])
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length > 0",
                           timeout=120_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    text = page.inner_text("body")
    assert "Health" in text and "MATH-lighteval fell from 0.547" in text and "Do this" in text
    assert "shaded: steps 15–130" in text
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() == 2  # train reward and MATH
    assert page.locator(".js-plotly-plot .shapelayer path").count() >= 2  # the shaded step range, per panel
    page.screenshot(path=str(tmp_path / "health.png"))
    assert (tmp_path / "health.png").stat().st_size > 20_000
    page.close()
