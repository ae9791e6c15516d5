"""Pure builders of the dashboard: downsampling, smoothing, curves, figures and tables (no Streamlit)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.collapse_figure import RunCurves, collapse_figure, naive_points
from dashboard.colors import run_color
from dashboard.compare_figures import laws_figure, lift_figure, scaling_figure
from dashboard.curves import prepare_curve
from dashboard.downsample import MAX_POINTS, downsample_index
from dashboard.figures import ceiling_figure, forecast_figure, residuals
from dashboard.smoothing import ema_debiased
from dashboard.sync_command import ingest_command, shown
from dashboard.tables import (
    backtest_text,
    ceiling_lift_table,
    filter_runs,
    forecast_text,
    runs_table,
    stage_text,
    tag_list,
)
from dashboard.text import md_text, plotly_text
from models.law import fit_law
from models.scaling import fit_scaling

MARKUP = "<img src=x onerror=alert(1)>"


def _noisy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float)
    y = np.exp(-x / (n / 5)) + 0.05 * rng.standard_normal(n)
    y[n // 3] = 9.0  # a spike
    y[2 * n // 3] = -7.0  # a dip
    return x, y


def test_downsampling_keeps_extremes_ends_and_budget():
    x, y = _noisy(50_000)
    idx = downsample_index(x, y)
    assert idx.size <= MAX_POINTS
    assert np.all(np.diff(idx) > 0)
    assert {0, x.size - 1, int(np.argmax(y)), int(np.argmin(y))} <= set(idx.tolist())
    assert y[idx].max() == y.max() and y[idx].min() == y.min()


def test_downsampling_leaves_short_series_alone():
    x, y = _noisy(1_500)
    assert np.array_equal(downsample_index(x, y), np.arange(1_500))


def test_ema_debiased_is_exact_on_a_constant_series():
    for w in (0.0, 0.3, 0.6, 0.9, 0.99, 0.999):
        out = ema_debiased(np.full(5_000, 0.73), w)
        np.testing.assert_allclose(out, 0.73, rtol=0, atol=1e-12)


def test_ema_debiased_matches_tensorboard_loop_and_skips_nan():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(300)
    y[[10, 11, 200]] = np.nan
    w = 0.8
    last, k, expected = 0.0, 0, []
    for v in y:  # TensorBoard's smoothing loop
        if not np.isfinite(v):
            expected.append(np.nan)
            continue
        last = last * w + (1 - w) * v
        k += 1
        expected.append(last / (1 - w**k))
    np.testing.assert_allclose(ema_debiased(y, w), expected, rtol=1e-10, atol=1e-12)
    assert ema_debiased(y, 0.8)[0] == pytest.approx(y[0])  # debiased: the first point is itself
    with pytest.raises(ValueError):
        ema_debiased(y, 1.0)


def test_prepare_curve_smooths_before_downsampling_and_maps_wall_time():
    x, y = _noisy(20_000)
    wall = 1.7e9 + 30.0 * x
    c = prepare_curve(x, y, wall, smoothing=0.9, x_axis="wall time")
    assert c.x_axis == "wall time" and c.n_total == 20_000
    assert c.x.size <= MAX_POINTS and c.smooth_x.size <= MAX_POINTS
    full = ema_debiased(y, 0.9)
    assert c.smooth_y.max() == pytest.approx(full.max()) and c.smooth_y.min() == pytest.approx(full.min())
    assert c.x_at(1000) == pytest.approx(1000 * 30 / 3600, rel=1e-6)
    assert c.x_at(30_000) == pytest.approx(30_000 * 30 / 3600, rel=1e-3)  # extrapolated past the end
    nowall = prepare_curve(x, y, np.full(x.size, np.nan), x_axis="wall time")
    assert nowall.x_axis == "step"  # falls back, and the page says so


def _run_curves(run_id: int, name: str, n: int = 20_000) -> RunCurves:
    x, y = _noisy(n, seed=run_id)
    h = prepare_curve(x, np.abs(y))
    r = prepare_curve(x[::10], 1 - np.abs(y[::10]))
    stage = {"step": 4_000, "range": [3_500, 4_600], "clear": True}
    collapse = {"verdict": "collapsing", "alarm": True, "h_now": 0.05, "floor": 0.03, "projected_floor_step": 26_000}
    return RunCurves(run_id, name, h, r, group="Qwen-7B", stage=stage, collapse=collapse)


def test_collapse_figure_budget_markers_and_literal_names():
    fig = collapse_figure([_run_curves(1, MARKUP), _run_curves(2, "b")], log_y=True)
    assert naive_points(fig) <= MAX_POINTS
    names = [t.name for t in fig.data if t.showlegend is not False and t.name]
    assert any(n == "&lt;img src=x onerror=alert(1)&gt; (#1)" for n in names)
    assert all("<img" not in (t.name or "") and "<img" not in str(t.meta or "") for t in fig.data)
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert len(fig.layout.shapes) >= 4  # a shaded range + a dashed line per run
    projected = [t for t in fig.data if t.name == "projected floor"]
    assert [float(t.x[-1]) for t in projected] == [26_000.0, 26_000.0]
    colours = {t.line.color for t in fig.data if t.name and t.name.endswith("(#2)") and t.mode == "lines"}
    assert colours == {run_color(2)}
    assert [t.legendgrouptitle.text for t in fig.data if t.legendgrouptitle.text] == ["Qwen-7B"]


def test_text_escaping():
    assert plotly_text(MARKUP) == "&lt;img src=x onerror=alert(1)&gt;"
    assert plotly_text("a & b") == "a &amp; b"
    assert md_text(MARKUP) == r"\<img src\=x onerror\=alert\(1\)\>"  # every markup character escaped
    assert md_text("*x*") == r"\*x\*"


def _law(h0: float = 1.2, b: float = 1.0, a: float = 0.3) -> dict:
    h = np.linspace(0.2, h0, 20)
    r = b - a * np.exp(h) + 0.002 * np.sin(np.arange(20))
    return fit_law(h, r).to_dict() | {"_h": h.tolist(), "_r": r.tolist()}


def test_ceiling_figure_and_residuals():
    law = _law()
    pairs = pd.DataFrame({"step": np.arange(20) * 5, "entropy": law["_h"], "performance": law["_r"]})
    fig = ceiling_figure(pairs, law, MARKUP, 3)
    star = fig.data[-1]
    assert star.y[0] == pytest.approx(law["ceiling"]) and star.x[0] == 0.0
    assert star.error_y.array[0] == pytest.approx(law["ceiling_hi"] - law["ceiling"])
    assert all("<img" not in (t.name or "") for t in fig.data)
    res = residuals(pairs, law)
    np.testing.assert_allclose(res["fitted"] + res["residual"], pairs["performance"])


def test_forecast_figure_draws_path_band_cutoff_warmup_and_finals():
    perf = pd.Series(np.linspace(0.2, 0.8, 30), index=np.arange(30) * 10)
    ps = np.linspace(195.0, 280.0, 10)
    path = {"steps": ps, "path": np.full(10, 0.7), "lo": np.full(10, 0.65), "hi": np.full(10, 0.75)}
    bt = {"predicted_final": 0.7, "interval": [0.65, 0.75], "observed_final": 0.79, "final_steps": [270, 280, 290],
          "label": "stacked: law 60%, saturating 40%"}
    fig = forecast_figure(perf, _law(), "r", 1, path=path, cutoff_step=195.0, backtest=bt, excluded_steps=[0])
    names = " | ".join(t.name or "" for t in fig.data)
    assert "headline 95% interval" in names and "headline forecast (stacked: law 60%, saturating 40%)" in names
    assert "predicted final mean 0.700 [0.650, 0.750]" in names and "observed final mean 0.790" in names
    assert "warm-up evaluations (excluded from the law)" in names
    assert any(s.x0 == 195.0 for s in fig.layout.shapes)
    live = {"predicted_final": 0.82, "interval": [0.78, 0.86], "horizon_step": 600, "label": "stacked: law 100%"}
    fig = forecast_figure(perf, _law(), "r", 1, path=path, cutoff_step=290.0, live=live)
    names = " | ".join(t.name or "" for t in fig.data)
    assert "forecast at the planned end (step 600) 0.820 [0.780, 0.860]" in names
    assert {s.x0 for s in fig.layout.shapes} >= {290.0, 600.0}


def test_runs_table_and_filters():
    law = _law()
    results = [
        {"run_id": 1, "run": MARKUP, "status": "ok", "reason": None, "law": law, "last_step": 100,
         "entropy_first": 1.2, "entropy_last": 0.2, "best_performance": 0.6, "last_performance": 0.58,
         "headroom": law["ceiling"] - 0.6, "stage": {"clear": True, "step": 40, "range": [35, 45]},
         "collapse": {"verdict": "collapsing", "alarm": True, "projected_floor_step": 150.0},
         "progress": "finished at step 100", "excluded_steps": [0, 10]},
        {"run_id": 2, "run": "no-entropy", "status": "skipped", "reason": "no entropy metric", "law": None},
    ]
    runs = pd.DataFrame({"id": [1, 2], "project": ["p", "q"], "model": ["7B", None], "algorithm": ["grpo", "ppo"],
                         "tags": [{"intervention": "none", "mlflow.runName": "x"}, {}]})
    fits = {1: {"backtest": {"error": -0.01, "predicted_final": 0.57, "observed_final": 0.58, "cutoff": 0.3},
                "forecast": None}}
    t = runs_table(results, runs, fits)
    assert t.loc[0, "run"] == MARKUP and t.loc[0, "ceiling"] == pytest.approx(law["ceiling"])
    assert t.loc[0, "stage"] == "plateau from step 40 [35–45]" and t.loc[0, "collapse"].startswith("collapsing")
    assert t.loc[0, "backtest error"] == -0.01 and t.loc[0, "tags"] == "intervention=none"
    assert t.loc[0, "state"] == "finished at step 100" and t.loc[0, "warm-up excluded"] == 2
    assert t.loc[1, "backtest"] == "no backtest yet" and np.isnan(t.loc[1, "ceiling"])
    assert list(filter_runs(t, runs, search="IMG")["id"]) == [1]
    assert list(filter_runs(t, runs, algorithms=["ppo"])["id"]) == [2]
    assert list(filter_runs(t, runs, tags=["intervention=none"])["id"]) == [1]
    assert list(filter_runs(t, runs, search=".*")["id"]) == []  # plain text, not a pattern
    assert tag_list({"mlflow.user": "u", "a": 1}) == ["a=1"]
    assert stage_text({"error": "x", "cause": "too_few_points"}) == "n/a (too_few_points)"
    assert backtest_text({"backtest": {"error": None, "reason": "no evaluation after the cutoff"}}) == \
        "no backtest: no evaluation after the cutoff"
    live = {"forecast": {"predicted_final": 0.8, "interval": [0.7, 0.9], "horizon_step": 600,
                         "label": "stacked: law 100%", "backtest_mae": 0.012, "backtest_n": 9}}
    assert forecast_text(live) == ("0.800 [0.700, 0.900] at step 600 (stacked: law 100%; backtest MAE 1.20 pt on 9 "
                                   "finished runs)")
    assert forecast_text({"forecast": None, "forecast_reason": "finished: no forecast, see its backtest"}).startswith(
        "finished")


def test_ceiling_lift_and_compare_figures():
    results = [{"run_id": i, "run": f"r{i}", "law": _law(b=1.0 + 0.02 * i)} for i in (1, 2, 3)]
    lift = ceiling_lift_table(results, 1)
    base = results[0]["law"]["ceiling"]
    for row in lift.itertuples():
        c = results[row.id - 1]["law"]
        assert row.lift == pytest.approx(c["ceiling"] - base)
        assert row.lift_lo < row.lift < row.lift_hi or row.id == 1
    assert lift_figure(lift).data[0].x.tolist() == pytest.approx(lift["lift"][1:].tolist())
    assert len(laws_figure(results).data) == 9
    pts = pd.DataFrame({"id": [1, 2, 3], "run": ["a", "b", MARKUP], "size": [0.5, 1.5, 7.0], "a": [0.3, 0.25, 0.2],
                        "b": [0.9, 1.0, 1.1]})
    fits = {c: fit_scaling(pts["size"], pts[c]) for c in ("a", "b")}
    fig = scaling_figure(pts, fits)
    assert fig.layout.xaxis.type == "log" and "ln(size)" in fig.layout.annotations[0].text
    assert "<img" not in json.dumps(fig.to_plotly_json(), default=str)
    assert isinstance(fig, go.Figure)


def test_sync_command_is_the_cli_ingest():
    cmd = ingest_command("mlflow", "http://u:***@h:5000", {"experiments": ["e1", "e2"]})
    assert cmd[-7:] == ["ingest", "mlflow", "http://u:***@h:5000", "--experiment", "e1", "--experiment", "e2"]
    assert shown(cmd) == "entropy-dash ingest mlflow 'http://u:***@h:5000' --experiment e1 --experiment e2"
    assert ingest_command("wandb", "/abs/dir", {})[-3:] == ["wandb", "--offline", "/abs/dir"]
    assert ingest_command("file", "/x.log", None)[-2:] == ["file", "/x.log"]  # the store: $ENTROPY_DASH_DB
