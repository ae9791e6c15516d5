"""`ingest mlflow` against a real `mlflow server` on loopback (and a direct store URI): the known law is
recovered, re-ingest adds nothing, new steps are fetched incrementally, bad input writes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from db import Store
from entropy_dash.cli import main
from entropy_dash.demo_data import log_known_law
from ingest.mlflow_source import MAX_POINTS_PER_RUN, MlflowSource
from ingest.sync import sync_source


def cli_json(capsys, *argv: str):
    code = main([*argv, "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


@pytest.fixture(scope="module")
def known_law(mlflow_server) -> str:
    """A run following R = -0.3 e^H + 1.2 with evaluation noise, logged as verl's MLflow logger would."""
    return log_known_law(mlflow_server.url, "known-law", a=0.3, b=1.2, steps=300, noise=0.004, seed=3)


def test_known_law_is_recovered_through_mlflow_server(mlflow_server, known_law, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = cli_json(capsys, "ingest", "mlflow", mlflow_server.url, "--experiment", "known-law", "--db", db)
    assert summary["runs"] == 1 and summary["points"] == 300 + 300 + 61  # entropy, train score, 61 evals
    (fit,) = cli_json(capsys, "fit", "--db", db)
    assert fit["run_id"] == 1 and fit["status"] == "ok" and fit["n"] == 61
    assert fit["a"] == pytest.approx(0.3, abs=0.01) and fit["b"] == pytest.approx(1.2, abs=0.01)
    assert fit["ceiling_ci"][0] < 0.9 < fit["ceiling_ci"][1]
    assert fit["a_se"] > 0 and fit["b_se"] > 0 and fit["r2"] > 0.98
    assert fit["performance_key"] == "val-core/known-law/acc/mean_at_1"
    (run,) = cli_json(capsys, "runs", "--db", db)
    assert run["run"].startswith("known-law") and run["entropy_key"] == "actor/entropy"
    assert (run["n_entropy"], run["n_performance"], run["last_step"]) == (300, 61, 300)
    assert run["source"] == f"mlflow {mlflow_server.url}"
    again = cli_json(capsys, "ingest", "mlflow", mlflow_server.url, "--experiment", "known-law", "--db", db)
    assert again["points"] == 0 and again["changed_runs"] == 0


def test_new_steps_are_fetched_incrementally_and_long_windows_are_split(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment("incremental")
    run = client.create_run(exp, run_name="long")
    n = MAX_POINTS_PER_RUN + 700  # more steps than one bulk-interval window returns
    now = int(time.time() * 1000)
    ms = [Metric("actor/entropy", float(1 - t / n), now + t, t) for t in range(1, n + 1)]
    ms += [Metric("val-core/x/acc/mean_at_1", float(t / n), now + t, t) for t in range(0, n + 1, 10)]
    for i in range(0, len(ms), 1000):
        client.log_batch(run.info.run_id, metrics=ms[i : i + 1000])
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    source = MlflowSource(mlflow_server.url, {"experiments": ["incremental"]})
    first = sync_source(store, source)
    assert first.points == n + len(range(0, n + 1, 10))
    s = store.series([1], ["actor/entropy"])
    assert len(s) == n and s["step"].is_monotonic_increasing and s["step"].iloc[-1] == n
    assert np.allclose(s["value"], 1 - s["step"] / n)  # every point, none sampled away
    # the trainer logs 50 more steps; only those are fetched and written
    client.log_batch(run.info.run_id, metrics=[Metric("actor/entropy", 0.0, now + n + t, n + t)
                                               for t in range(1, 51)])
    second = sync_source(store, MlflowSource(mlflow_server.url, {"experiments": ["incremental"]}))
    assert second.points == 50 and second.changed_run_ids == (1,)
    assert store.watermarks(first.source_id)[run.info.run_id]["actor/entropy"] == n + 50


def test_store_uri_works_like_a_server(tmp_path, capsys):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_known_law(tracking, "local", steps=60, noise=0.0)
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = cli_json(capsys, "ingest", "mlflow", tracking, "--db", db)
    assert summary["runs"] == 1
    (fit,) = cli_json(capsys, "fit", "--db", db)
    assert fit["a"] == pytest.approx(0.3, rel=1e-6) and fit["ceiling"] == pytest.approx(0.9, rel=1e-6)


def test_run_without_entropy_is_listed_with_reason_and_skipped_by_fit(mlflow_server, tmp_path, capsys):
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment("no-entropy")
    run = client.create_run(exp, run_name="sft-only")
    client.log_batch(run.info.run_id, metrics=[Metric("val-core/x/acc/mean_at_1", 0.5, 0, s) for s in range(3)]
                     + [Metric("train/loss", 1.0, 0, 1)])
    db = f"sqlite:///{tmp_path / 's.db'}"
    cli_json(capsys, "ingest", "mlflow", mlflow_server.url, "--experiment", "no-entropy", "--db", db)
    (row,) = cli_json(capsys, "runs", "--db", db)
    assert row["status"] == "skipped" and row["entropy_key"] is None
    assert row["reason"].startswith("no entropy metric (keys seen: ") and "train/loss" in row["reason"]
    assert row["unrecognised_keys"] == ["train/loss"]
    (fit,) = cli_json(capsys, "fit", "--db", db)
    assert fit["status"] == "skipped" and fit["a"] is None and "no entropy metric" in fit["reason"]


def test_unknown_experiment_and_unreachable_server_write_nothing(mlflow_server, tmp_path, capsys):
    db_file = tmp_path / "never.db"
    code = main(["ingest", "mlflow", mlflow_server.url, "--experiment", "does-not-exist", "--db",
                 f"sqlite:///{db_file}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: experiment 'does-not-exist' not found at MLflow {mlflow_server.url}"]
    code = main(["ingest", "mlflow", "http://127.0.0.1:9", "--db", f"sqlite:///{db_file}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: cannot reach MLflow tracking server http://127.0.0.1:9: connection refused"]
    assert not Path(db_file).exists()
