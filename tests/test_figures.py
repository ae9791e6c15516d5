"""Pure builders of the dashboard: downsampling, smoothing, curves, figures and tables (no Streamlit)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analysis.headline import HeadlineSpan
from analysis.results import Failure
from dashboard.collapse_figure import (
    DETAIL_RUNS,
    WEBGL_TRACES,
    RunCurves,
    chart_points,
    collapse_figure,
    line_traces,
    marker_points,
)
from dashboard.compare_figures import laws_figure, lift_figure, scaling_figure
from dashboard.curves import choose_level, prepare_curve
from dashboard.smoothing import ema_debiased
from dashboard.sync_command import ingest_command, shown
from dashboard.tables import (
    backtest_text,
    ceiling_lift_table,
    runs_table,
    stage_text,
    tag_list,
)
from dashboard.text import md_text
from models.law import fit_law
from models.scaling import fit_scaling
from plots.colors import run_color
from plots.downsample import CHART_BUDGET, MAX_POINTS, downsample_index, trace_budget
from plots.run_figures import ceiling_figure, forecast_figure, residuals, residuals_figure
from plots.text import plotly_text
from tests import analyses

MARKUP = "<img src=x onerror=alert(1)>"


def _noisy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float)
    y = np.exp(-x / (n / 5)) + 0.05 * rng.standard_normal(n)
    y[n // 3] = 9.0  # a spike
    y[2 * n // 3] = -7.0  # a dip
    return x, y



def naive_points(fig: go.Figure) -> int:
    """Largest number of points in one trace of ``fig`` (to check the per-trace budget)."""
    return max((len(np.asarray(t.x)) for t in fig.data if t.x is not None), default=0)

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
    stage = analyses.stage(step=4_000, range=[3_500, 4_600], clear=True)
    collapse = analyses.collapse(verdict="collapsing", alarm=True, h_now=0.05, floor=0.03, projected_floor_step=26_000)
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


def _many(n_runs: int, smoothing: float = 0.0, steps: int = 20_000) -> list[RunCurves]:
    """``n_runs`` runs of ``steps`` steps, each curve prepared at the full per-trace cap (2,000 points): the
    figure alone must bring them within the chart's budget."""
    out = []
    for i in range(1, n_runs + 1):
        x, y = _noisy(steps, seed=i)
        stage = analyses.stage(step=4_000 + 10 * i, range=[3_500, 4_600], clear=i % 3 != 0)
        collapse = (analyses.collapse(verdict="collapsing", alarm=True, h_now=0.05, floor=0.03,
                                      projected_floor_step=26_000) if i % 2
                    else analyses.collapse(verdict="converging", alarm=False))
        out.append(RunCurves(i, f"run-{i}", prepare_curve(x, np.abs(y), smoothing=smoothing),
                             prepare_curve(x[::5], 1 - np.abs(y[::5]), smoothing=smoothing), group=None,
                             stage=stage, collapse=collapse))
    return out


@pytest.mark.parametrize("smoothing", [0.0, 0.9])
@pytest.mark.parametrize("n_runs", [1, 10, 100])
def test_collapse_figure_never_exceeds_the_chart_budget(n_runs, smoothing):
    runs = _many(n_runs, smoothing)
    fig = collapse_figure(runs)
    n_lines = line_traces(runs)
    assert n_lines == 2 * n_runs * (2 if smoothing else 1)
    per_trace = trace_budget(n_lines, marker_points(n_runs))
    assert chart_points(fig) <= CHART_BUDGET
    assert naive_points(fig) <= per_trace <= MAX_POINTS
    lines = [t for t in fig.data if t.mode in ("lines", "lines+markers") and t.name not in ("projected floor",)]
    assert len(lines) == n_lines
    if n_runs == 1:
        assert per_trace == MAX_POINTS and naive_points(fig) > 0.95 * MAX_POINTS  # a few runs: about 2,000
    if n_runs == 100:
        assert chart_points(fig) > 0.9 * CHART_BUDGET  # the budget is used, not wasted
        assert per_trace == (CHART_BUDGET - n_runs) // n_lines  # a few hundred per line
    webgl = {type(t).__name__ for t in fig.data}
    assert webgl == ({"Scattergl"} if n_lines > WEBGL_TRACES else {"Scatter"})
    go.Figure(fig.to_dict())  # built without plotly's validation: every property must still be valid


def test_webgl_above_the_trace_threshold_and_summary_markers_at_many_runs():
    few, many = _many(DETAIL_RUNS), _many(DETAIL_RUNS + 1)
    fig_few, fig_many = collapse_figure(few), collapse_figure(many)
    # few runs: a shaded range and a dashed line per clear stage on both panels, alarm and projection markers
    clear = sum(bool(r.stage.clear) for r in few)
    assert len(fig_few.layout.shapes) == 4 * clear
    assert sum(t.name == "projected floor" for t in fig_few.data) == sum(bool(r.collapse.alarm) for r in few)
    # many runs: no bands, one summary marker per run in a single trace
    assert len(fig_many.layout.shapes) == 0 and not any(t.name == "projected floor" for t in fig_many.data)
    (summary,) = [t for t in fig_many.data if t.name == "stage / collapse (one per run)"]
    assert len(summary.x) == len(many)
    for r, x, symbol, text in zip(sorted(many, key=lambda r: r.run_id), summary.x, summary.marker.symbol,
                                  summary.text, strict=True):
        want = "x" if r.collapse.alarm else "diamond" if r.stage.clear else "circle"
        assert symbol == want
        assert x == (r.stage.step if r.stage.clear else r.entropy.step[-1])
        assert f"(#{r.run_id})" in text and ("floor projected at step 26000" in text) == bool(r.collapse.alarm)
    # above the trace threshold every trace is WebGL, below none is
    n = WEBGL_TRACES // 2 + 1
    assert {type(t).__name__ for t in collapse_figure(_many(n, steps=2_000)).data} == {"Scattergl"}
    assert {type(t).__name__ for t in collapse_figure(_many(n - 1, steps=2_000)).data} == {"Scatter"}
    for fig in (fig_few, fig_many, collapse_figure(_many(2), log_y=True)):
        go.Figure(fig.to_dict())  # valid, though assembled without validation


def test_legend_lists_runs_for_a_few_and_groups_for_many():
    from dataclasses import replace

    from dashboard.collapse_figure import LEGEND_RUNS

    few = collapse_figure(_many(3, steps=2_000))
    assert sorted(t.name for t in few.data if t.showlegend) == ["run-1 (#1)", "run-2 (#2)", "run-3 (#3)"]
    many = _many(LEGEND_RUNS + 1, steps=2_000)
    fig = collapse_figure(many)
    assert fig.layout.showlegend is False and not any(t.showlegend for t in fig.data)  # hover names the run
    grouped = [replace(r, group=("7B", "1.5B")[r.run_id % 2]) for r in many]
    fig = collapse_figure(grouped)
    shown = [t for t in fig.data if t.showlegend and t.legendgroup.startswith("g:")]
    assert sorted(t.name for t in shown) == ["1.5B", "7B"] and fig.layout.legend.groupclick == "togglegroup"
    assert {t.legendgroup for t in fig.data if t.legendgroup.startswith("g:")} == {"g:1.5B", "g:7B"}


def test_choose_level_reads_the_coarsest_level_with_enough_points():
    levels = {1: 2_500, 2: 620, 3: 159}
    assert choose_level(levels, 2_000) == 1
    assert choose_level(levels, 499) == 2
    assert choose_level(levels, 100) == 3
    assert choose_level(levels, 5_000) is None and choose_level({}, 10) is None  # read every point
    with pytest.raises(ValueError, match="every stored point"):
        prepare_curve(np.arange(10.0), np.ones(10), smoothing=0.5, level=1)


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
        analyses.analysis(run_id=1, run=MARKUP, status="ok", reason=None, law=law, last_step=100,
                          entropy_first=1.2, entropy_last=0.2, best_performance=0.6, last_performance=0.58,
                          headroom=law["ceiling"] - 0.6, stage={"clear": True, "step": 40, "range": [35, 45]},
                          collapse={"verdict": "collapsing", "alarm": True, "projected_floor_step": 150.0},
                          progress="finished at step 100", excluded_steps=[0, 10]),
        analyses.analysis(run_id=2, run="no-entropy", status="skipped", reason="no entropy metric", law=None),
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
    assert tag_list({"mlflow.user": "u", "a": 1}) == ["a=1"]
    assert stage_text(Failure("x", "too_few_points")) == "n/a (too_few_points)"
    assert backtest_text({"backtest": {"error": None, "reason": "no evaluation after the cutoff"}}) == \
        "no backtest: no evaluation after the cutoff"


def test_ceiling_lift_and_compare_figures():
    results = [analyses.analysis(run_id=i, run=f"r{i}", law=_law(b=1.0 + 0.02 * i)) for i in (1, 2, 3)]
    lift = ceiling_lift_table(results, 1)
    base = results[0].law.ceiling
    for row in lift.itertuples():
        c = results[row.id - 1].law
        assert row.lift == pytest.approx(c.ceiling - base)
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
    assert ingest_command("wandb-offline", "/abs/dir", {})[-3:] == ["ingest", "wandb-offline", "/abs/dir"]
    assert ingest_command("wandb", "team/proj", {"keys": ["x"]})[-3:] == ["ingest", "wandb", "team/proj"]
    assert ingest_command("file", "/x.log", None)[-2:] == ["file", "/x.log"]  # the store: $ENTROPY_DASH_DB


def test_ceiling_residual_and_forecast_figures_keep_the_point_budget():
    n = 20_000
    steps = np.arange(n)
    h = 0.05 + 0.8 * np.exp(-steps / 4000)
    r = 1.1 - 0.3 * np.exp(h) + 0.01 * np.sin(steps / 7.0)
    pairs = pd.DataFrame({"step": steps, "entropy": h, "performance": r})
    law = fit_law(h, r).to_dict()
    fig = ceiling_figure(pairs, law, "long", 1)
    markers = next(t for t in fig.data if t.mode == "markers" and len(t.x) > 1)
    assert len(markers.x) <= MAX_POINTS and f"(n={n:,}".replace(",", "") in markers.name.replace(",", "")
    assert r.max() in set(markers.y) and r.min() in set(markers.y)  # extremes kept
    res_fig = residuals_figure(pairs, law, "long", 1)
    assert max(len(t.x) for t in res_fig.data) <= MAX_POINTS
    perf = pd.Series(r, index=steps)
    fc = forecast_figure(perf, law, "long", 1)
    assert max(len(t.x) for t in fc.data) <= MAX_POINTS


def test_headline_span_is_read_from_the_document_it_comes_from():
    live = {"from_step": 120, "horizon_step": 600, "predicted_final": 0.82}
    assert HeadlineSpan.of_live(live) == HeadlineSpan(True, 120.0, 600.0)
    row = {"cutoff_step": 90, "planned_end_step": None, "final_steps": [280, 290, 300]}
    assert HeadlineSpan.of_backtest(row) == HeadlineSpan(False, 90.0, 290.0)
    assert HeadlineSpan.of_backtest(row | {"planned_end_step": 400}).end == 400.0
    # a backtest row is never read as a live forecast, whatever keys ride along
    assert not HeadlineSpan.of_backtest(row | {"horizon_step": 600}).live
    with pytest.raises(KeyError):
        HeadlineSpan.of_live(row)
