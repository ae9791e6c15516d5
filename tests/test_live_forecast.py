"""A run still training, logged to a real MLflow server the way verl does (RUNNING, its config flattened into
params with ``trainer/total_training_steps``), beside finished runs: `ingest mlflow` → `fit --json` shows
where it will end with an interval, the method and its track record; `backtest` never uses it as finished;
the Runs and Ceiling pages show the same numbers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from streamlit.testing.v1 import AppTest

from entropy_dash.cli import main
from entropy_dash.demo_data import log_runs, mlflow_key
from entropy_dash.simulator import simulate, sized, val_key, verl_params

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PLANNED, SEEN = 160, 60


def _cli_json(capsys, *argv: str):
    assert main([*argv, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def live_store(mlflow_server, tmp_path_factory) -> tuple[str, str]:
    """Eight finished simulated runs and one stopped at step 60 of a planned 160, still RUNNING."""
    finished = [simulate(sized(size, seed=40 + i, steps=PLANNED, val_samples=4, lr=lr))
                for i, (size, lr) in enumerate([("0.5B", 0.5), ("1.5B", 0.5), ("7B", 0.5), ("1.5B", 0.25),
                                                ("1.5B", 1.0), ("0.5B", 0.25), ("7B", 0.25), ("1.5B", 0.5)])]
    finished = [replace(r, config=replace(r.config, name=f"{r.config.name}-{i}")) for i, r in enumerate(finished)]
    log_runs(finished, mlflow_server.url, "live")
    cfg = sized("1.5B", seed=99, steps=PLANNED, val_samples=4)
    sim = simulate(cfg)
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("live").experiment_id
    run_id = client.create_run(exp, run_name="still-training").info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in verl_params(cfg).items()])
    metrics = []
    for key, (steps, values) in sim.metrics.items():
        for s, v in zip(steps, values, strict=True):
            if s <= SEEN:
                metrics.append(Metric(mlflow_key(key), float(v), 1_700_000_000_000 + int(s) * 1000, int(s)))
    for i in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[i:i + 900])
    assert client.get_run(run_id).info.status == "RUNNING"
    db = f"sqlite:///{tmp_path_factory.mktemp('live') / 'store.db'}"
    return db, val_key(cfg.task)


def test_live_forecast_through_ingest_fit_backtest_and_pages(capsys, monkeypatch, live_store, mlflow_server):
    db, key = live_store
    summary = _cli_json(capsys, "ingest", "mlflow", mlflow_server.url, "--experiment", "live", "--db", db)
    assert summary["runs"] == 9
    runs = {r["run"]: r for r in _cli_json(capsys, "runs", "--db", db)}
    live = runs["still-training"]
    assert live["state"] == "running" and live["planned_steps"] == PLANNED and live["finished"] is False
    assert live["progress"] == f"in progress: step {SEEN} of {PLANNED}"
    assert all(r["finished"] and r["progress"] == f"finished at step {PLANNED} of {PLANNED}"
               for n, r in runs.items() if n != "still-training")

    fits = {f["run"]: f for f in _cli_json(capsys, "fit", "--db", db)}
    fc = fits["still-training"]["forecast"]
    assert fc["horizon_step"] == PLANNED and fc["from_step"] == SEEN
    assert fc["fraction_done"] == pytest.approx(SEEN / PLANNED, abs=0.01)
    # trained and judged at its own fraction: the replay's grid fractions around 37.5%, interpolated there
    assert fc["backtest_cutoff"] == fc["fraction_done"] and fc["trained_at"] == [0.35, 0.4]
    lo, hi = fc["interval"]
    assert 0.0 <= lo <= fc["predicted_final"] <= hi <= 1.0
    assert fc["method"] == "stacked" and sum(fc["weights"].values()) == pytest.approx(1.0)
    assert fc["predicted_final"] == pytest.approx(sum(w * fc["methods"][m] for m, w in fc["weights"].items()))
    assert fc["backtest_n"] == 8 and fc["rule"] == "finished runs" and fc["backtest_mae"] > 0
    assert fc["label"].startswith("stacked: ")
    assert fits["still-training"]["backtest"]["error"] is None
    assert "not finished" in fits["still-training"]["backtest"]["reason"]
    for name, f in fits.items():
        if name != "still-training":
            assert f["forecast"] is None and f["forecast_reason"] == "finished: no forecast, see its backtest"

    bt = _cli_json(capsys, "backtest", "--db", db)
    assert "still-training" not in {r["run"] for r in bt["runs"]}
    skipped = {s["run"]: s["reason"] for s in bt["skipped"]}
    assert skipped["still-training"].startswith(f"not finished (in progress: step {SEEN} of {PLANNED})")
    assert bt["summary"]["n_runs"] == 8
    # its track record: the replay's headline at 35% and 40% (each finished run cut there and sent down the
    # live path), interpolated at the run's own fraction
    rep = _cli_json(capsys, "backtest", "--cutoff", "0.35", "--cutoff", "0.4", "--db", db)
    (m0, c0), (m1, c1) = [(d["summary"]["scores"]["headline"]["mae"], d["summary"]["scores"]["headline"]["coverage"])
                          for d in rep["cutoffs"]]
    t = (fc["fraction_done"] - 0.35) / 0.05
    assert fc["backtest_mae"] == pytest.approx((1 - t) * m0 + t * m1)
    assert fc["coverage"] == pytest.approx((1 - t) * c0 + t * c1)
    assert fc["track_record"]["sentence"] == (f"replayed on 8 finished runs at {fc['fraction_done']:.0%}: MAE "
                                              f"{100 * fc['backtest_mae']:.2f} pt, coverage {fc['coverage']:.0%}")

    # the pages: the Runs table and the Ceiling page show the same forecast
    monkeypatch.setenv("ENTROPY_DASH_DB", db)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["still-training", "state"] == f"in progress: step {SEEN} of {PLANNED}"
    assert table.loc["still-training", "forecast"] == pytest.approx(fc["predicted_final"])
    assert table.loc["still-training", "forecast interval"] == f"{lo:.3f}–{hi:.3f}"
    assert table.loc["still-training", "forecast track record"] == fc["track_record"]["sentence"]
    live_id = fits["still-training"]["run_id"]
    at.query_params["run"] = str(live_id)
    at.switch_page("app_pages/ceiling.py").run()
    assert not at.exception, at.exception
    m = {x.label: x.value for x in at.metric}
    assert m["predicted final"] == f"{fc['predicted_final']:.4f}" and m["95% interval"] == f"{lo:.3f}–{hi:.3f}"
    assert m["track record (MAE)"] == f"{100 * fc['backtest_mae']:.2f} pt"
    assert any(f"Forecast to the planned end (step {PLANNED})" in h.value for h in at.subheader)
    from dashboard.text import md_text

    assert any(md_text(fc["track_record"]["sentence"]) in c.value for c in at.caption)
