"""The fit rules on the real verl runs of ../shared/data, through the CLI's --json and the pages: the gsm8k+MATH
TensorBoard run (a format-learning jump at step 0, two benchmarks), game2048 runs (a constant score, no
learning), an empty run; and a saturated run whose law extrapolates above 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from db import Store
from db.records import RunData, RunInfo, Series
from entropy_dash.cli import main
from ingest.keys import resolve_roles

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
GSM8K = "val-core/openai/gsm8k/acc/mean@1"
MATH = "val-core/DigitalLearningGmbH/MATH-lighteval/acc/mean@1"


def _json(capsys, *argv: str):
    assert main([*argv, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tb_db(shared_data, tmp_path_factory) -> str:
    db = f"sqlite:///{tmp_path_factory.mktemp('tb') / 'store.db'}"
    assert main(["--db", db, "--quiet", "ingest", "tensorboard", str(shared_data / "verl-tensorboard")]) == 0
    return db


def test_gsm8k_run_ceiling_in_range_near_its_end_with_step_0_excluded_and_both_benchmarks(capsys, tb_db):
    fits = {f["run"].split("/")[-1]: f for f in _json(capsys, "fit", "--db", tb_db)}
    f = fits["trtllm-qwen2-7b-tp4-8gpus"]
    assert f["status"] == "ok" and f["performance_key"] == GSM8K
    assert f["excluded_steps"] == [0] and "step 0" in f["warmup"]["reason"] and "0.234" in f["warmup"]["reason"]
    final = 0.891  # the run's last gsm8k evaluation (step 130)
    assert 0.0 <= f["ceiling_ci"][0] <= f["ceiling"] <= f["ceiling_ci"][1] <= 1.0
    assert abs(f["ceiling"] - final) < 0.03 and f["r2"] > 0.5
    bench = {b["key"]: b for b in f["benchmarks"]}
    assert set(bench) == {GSM8K, MATH}
    assert bench[GSM8K]["status"] == "ok" and bench[GSM8K]["ceiling"] == pytest.approx(f["ceiling"])
    assert bench[MATH]["status"] == "degenerate" and bench[MATH]["reason"].startswith(
        "falling: from 0.547 at best (step 15) to 0.516 at the end")  # a fall is named, never "no learning"
    assert bench[MATH]["ceiling"] is None and bench[MATH]["r2"] is None
    assert f["headline_rule"] == "name"  # MATH is first by name but cannot be fitted: gsm8k heads the run
    kept = {x["run"].split("/")[-1]: x for x in _json(capsys, "fit", "--keep-warmup", "--db", tb_db)}
    k = kept["trtllm-qwen2-7b-tp4-8gpus"]
    assert k["excluded_steps"] == [] and k["r2"] < f["r2"] and k["ceiling_raw"] > f["ceiling_raw"]


def test_degenerate_and_empty_runs_get_reasons_never_r2_of_one(capsys, tb_db):
    fits = {f["run"].split("/")[-1]: f for f in _json(capsys, "fit", "--db", tb_db)}
    const = fits["trtllm-qwen2-7b-game2048-tp4-8gpus"]
    assert const["status"] == "degenerate"
    assert const["reason"] == "performance constant at -1.000 over 10 evaluations: nothing to fit"
    coder = fits["trtllm-qwen2.5-coder-7b-game2048-tp4-8gpus"]
    assert coder["status"] == "degenerate" and coder["reason"].startswith(
        "falling: from 1.000 at best (step 0) to -0.960")
    empty = fits["gptoss-20b-game2048-trtllm-tp4"]
    assert empty["status"] == "skipped" and "no entropy and no performance metric" in empty["reason"]
    for f in fits.values():
        assert f["r2"] != 1.0
        if f["status"] != "ok":
            assert f["a"] is None and f["ceiling"] is None and f["r2"] is None
    # the game's "acc" is −1 for a loss: no [0, 1] range assumed, and the reason says so
    assert "leave [0, 1]" in const["range"]["reason"] and const["range"]["lo"] is None
    runs = {r["run"].split("/")[-1]: r for r in _json(capsys, "runs", "--db", tb_db)}
    assert runs["trtllm-qwen2-7b-tp4-8gpus"]["benchmarks"] == [MATH, GSM8K]


def test_a_saturated_run_shows_the_bounded_ceiling_and_says_the_law_goes_above_1(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    store = Store.open(db)
    sid = store.source_id("file", "/synthetic")
    rng = np.random.default_rng(0)
    hs = np.arange(1, 301)
    h = 0.05 + 0.6 * np.exp(-hs / 60)
    ps = np.arange(0, 301, 10)
    r = np.clip(1.33 - 0.3 * np.exp(h[np.minimum(ps, 299)]) + rng.normal(0, 0.002, len(ps)), 0, 1)
    data = RunData(RunInfo("sat", "near-perfect", status="FINISHED"),
                   (Series.build("actor/entropy", hs, h), Series.build("val-core/x/acc/mean@1", ps, r)))
    store.write_run(sid, data, resolve_roles(data.all_keys()))
    (f,) = _json(capsys, "fit", "--db", db)
    assert f["status"] == "ok" and f["ceiling_raw"] > 1.0 and f["ceiling"] == 1.0
    assert f["ceiling_ci"][1] <= 1.0 and f["range"]["hi"] == 1.0
    assert any(flag.startswith("the law extrapolates above 1 (b − a = ") and "the run is already near perfect" in flag
               for flag in f["flags"])
    assert main(["--db", db, "fit"]) == 0
    assert "the law extrapolates above 1" in capsys.readouterr().out


def test_ceiling_page_marks_the_warmup_and_switches_benchmarks(monkeypatch, capsys, tb_db):
    fits = {f["run"].split("/")[-1]: f for f in _json(capsys, "fit", "--db", tb_db)}
    f = fits["trtllm-qwen2-7b-tp4-8gpus"]
    monkeypatch.setenv("ENTROPY_DASH_DB", tb_db)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = str(f["run_id"])
    at.run()
    at.switch_page("app_pages/ceiling.py").run()
    assert not at.exception, at.exception
    m = {x.label: x.value for x in at.metric}
    assert m["ceiling R(H=0)"] == f"{f['ceiling']:.4f}"
    assert any("1 warm-up evaluation(s) excluded (steps 0)" in i.value for i in at.info)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t.get("name", "") for t in fig["data"]]
    assert any(n.startswith("warm-up, excluded from the fit (n=1)") for n in names)
    bench = at.selectbox(key="c_bench")
    assert bench.value == GSM8K and set(bench.options) >= {"openai/gsm8k (headline)", "DigitalLearningGmbH/MATH-lighteval"}
    bench.set_value(MATH).run()
    assert not at.exception, at.exception
    assert any("falling: from 0.547" in w.value.replace("\\", "") and "no ceiling is shown" in w.value
               for w in at.warning)
    table = at.dataframe[-1].value.set_index("key")
    assert table.loc[MATH, "status"] == "degenerate" and table.loc[GSM8K, "ceiling"] == pytest.approx(f["ceiling"])
