"""The live forecast on the path users take: runs logged to a real `mlflow server` as verl's MLflow logger
writes them (keys with ``@`` as ``_at_``, ``trainer/total_training_steps`` as a param), half finished, half
still RUNNING and cut at fractions off the replay grid (23%, 37%, 61%), several seeds. Each live forecast lands
within a few replayed errors of where the run really ended, its quoted track record is the replay's at its own
fraction, no method far off the others carries weight, and the intervals cover at about the promised rate."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from entropy_dash.cli import main
from entropy_dash.demo_data import log_runs, mlflow_key
from entropy_dash.simulator import simulate, sized, val_key, verl_params
from models.backtest import bracket

PLANNED = 160
CUTS = (0.23, 0.37, 0.61)
SEEDS = (7, 8)


def _cli_json(capsys, *argv: str):
    assert main([*argv, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def replay_store(mlflow_server, tmp_path_factory):
    """Eight finished simulated runs; six RUNNING ones seen up to 23%, 37% and 61% of a planned 160 steps."""
    plans = [("0.5B", 0.5), ("1.5B", 0.5), ("7B", 0.5), ("1.5B", 0.25), ("1.5B", 1.0), ("0.5B", 0.25),
             ("7B", 0.25), ("1.5B", 0.75)]
    finished = [simulate(sized(size, seed=200 + i, steps=PLANNED, val_samples=4, lr=lr))
                for i, (size, lr) in enumerate(plans)]
    finished = [replace(r, config=replace(r.config, name=f"done-{i}")) for i, r in enumerate(finished)]
    log_runs(finished, mlflow_server.url, "replay")
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name("replay").experiment_id
    truth = {}
    for seed in SEEDS:
        for k, cut in enumerate(CUTS):
            cfg = sized(("0.5B", "1.5B", "7B")[k], seed=300 + 10 * seed + k, steps=PLANNED, val_samples=4,
                        lr=(0.25, 0.5, 1.0)[(seed + k) % 3])
            sim = simulate(cfg)
            name = f"live-{seed}-{round(100 * cut)}"
            seen = int(round(cut * PLANNED))
            run_id = client.create_run(exp, run_name=name).info.run_id
            client.log_batch(run_id, params=[Param(p, str(v)) for p, v in verl_params(cfg).items()])
            metrics = [Metric(mlflow_key(key), float(v), 1_700_000_000_000 + int(s) * 1000, int(s))
                       for key, (steps, values) in sim.metrics.items()
                       for s, v in zip(steps, values, strict=True) if s <= seen]
            for i in range(0, len(metrics), 900):
                client.log_batch(run_id, metrics=metrics[i:i + 900])
            steps, values = sim.metrics[val_key(cfg.task)]
            truth[name] = (float(np.mean(np.asarray(values)[-3:])), cut)  # what it will end at
    db = f"sqlite:///{tmp_path_factory.mktemp('replay') / 'store.db'}"
    return db, truth


def test_live_forecasts_off_the_grid_hold_their_replayed_track_record(capsys, replay_store, mlflow_server):
    db, truth = replay_store
    summary = _cli_json(capsys, "ingest", "mlflow", mlflow_server.url, "--experiment", "replay", "--db", db)
    assert summary["runs"] == 8 + len(truth)
    fits = {f["run"]: f for f in _cli_json(capsys, "fit", "--db", db)}
    covered, errors = [], []
    for name, (final, cut) in truth.items():
        f = fits[name]
        assert f["finished"] is False and f["state"] == "running"
        fc = f["forecast"]
        assert fc is not None, f["forecast_reason"]
        lo_f, hi_f, _ = bracket(fc["fraction_done"])
        assert fc["trained_at"] == [lo_f, hi_f] and lo_f <= fc["fraction_done"] <= hi_f
        assert fc["fraction_done"] == pytest.approx(cut, abs=0.02)
        rec = fc["track_record"]
        assert rec["n"] == 8 and rec["fraction"] == fc["fraction_done"] and fc["backtest_mae"] == rec["mae"]
        assert rec["sentence"].startswith(f"replayed on 8 finished runs at {fc['fraction_done']:.0%}: MAE ")
        lo, hi = fc["interval"]
        assert 0.0 <= lo <= fc["predicted_final"] <= hi <= 1.0
        # no method carrying weight lies far outside the others (the cross-run model included)
        weighted = [fc["methods"][m] for m in fc["weights"]]
        assert max(weighted) - min(weighted) < 0.25, fc
        err = fc["predicted_final"] - final
        errors.append(err)
        # within a few replayed errors of the truth (the replay's MAE at this fraction; at least 1 pt)
        assert abs(err) <= 4 * max(rec["mae"], 0.01), (name, fc["predicted_final"], final, rec)
        covered.append(lo <= final <= hi)
    # promised 95%: with 6 runs at least 5 must be covered (P(≤ 4 of 6) is 3% for a calibrated interval)
    assert sum(covered) >= len(covered) - 1, (covered, errors)

    # stored at write time; a command about one run reads that run's rows, never refits across runs
    from analysis import forecasting
    from analysis.pipeline import cross_run_is_current
    from db import Store

    assert cross_run_is_current(Store.open(db, create=False))

    def refit(*_a, **_k):
        raise AssertionError("a read refitted across runs")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forecasting, "cross_run", refit)
        mp.setattr(forecasting, "backtest_at", refit)
        one = _cli_json(capsys, "fit", "--run", "live-7-37", "--db", db)
        assert len(one) == 1 and one[0]["forecast"] == fits["live-7-37"]["forecast"]
    # the replay is a view: stored at write time, the backtest at 35% matches what the track record used
    bt = _cli_json(capsys, "backtest", "--cutoff", "0.35", "--db", db)
    assert bt["summary"]["n_runs"] == 8 and not {r["run"] for r in bt["runs"]} & set(truth)
