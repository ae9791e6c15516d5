"""`ingest mlflow` against a real `mlflow server` on loopback (and a direct store URI): the known law is
recovered, re-ingest adds nothing, new steps are fetched incrementally, bad input writes nothing; the
server, the SQLite store read with SQL and MLflow's own store give the same points, none sampled away; a
re-sync imports neither MLflow, pandas nor the models; ``--no-analyse`` leaves the analyses to the next
ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from db import Store
from entropy_dash.cli import main
from entropy_dash.demo_data import log_known_law
from ingest.mlflow_source import MAX_POINTS_PER_RUN, MlflowSource
from ingest.mlflow_store import TrackingStoreReader
from ingest.sync import sync_source

ROOT = Path(__file__).resolve().parents[1]


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


# ---------------------------------------------------------------------------------------------- three readers
def point_set(db_url: str) -> pd.DataFrame:
    """Every stored point keyed by the run's external id, sorted (run ids differ between stores)."""
    store = Store.open(db_url, create=False)
    runs = store.runs_frame()
    s = store.series(runs["id"].tolist())
    s["external_id"] = s["run_id"].map(dict(zip(runs["id"], runs["external_id"], strict=True)))
    cols = ["external_id", "key", "step", "value", "wall_time"]
    return s[cols].sort_values(cols[:3]).reset_index(drop=True)


@pytest.fixture(scope="module")
def tricky(mlflow_server) -> dict:
    """Runs a reader could get wrong: two values at every step (6,000 rows for 3,000 steps, so the server
    samples every full window), NaN and ±inf evaluations, steps from 0, and a deleted run."""
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment("tricky")
    now = int(time.time() * 1000)
    run = client.create_run(exp, run_name="doubled").info.run_id
    steps = 3000
    # entropies stay inside the plausible 0–20 nats (others are stored as missing values)
    ms = [Metric("actor/entropy", 5 + s / 1000, now + 2 * s, s) for s in range(steps)]
    ms += [Metric("actor/entropy", s / 1000, now + 2 * s + 1, s) for s in range(steps)]  # the later one wins
    val = [0.5, float("nan"), float("inf"), float("-inf"), 0.75]
    ms += [Metric("val-core/x/acc/mean_at_1", v, now + i, i * 10) for i, v in enumerate(val)]
    for i in range(0, len(ms), 1000):
        client.log_batch(run, metrics=ms[i : i + 1000])
    plain = client.create_run(exp, run_name="plain").info.run_id
    client.log_batch(plain, metrics=[Metric("actor/entropy", 1.0 / (s + 1), now + s, s) for s in range(1, 301)])
    gone = client.create_run(exp, run_name="deleted").info.run_id
    client.log_batch(gone, metrics=[Metric("actor/entropy", 0.5, now, 1)])
    client.delete_run(gone)
    return {"doubled": run, "plain": plain, "deleted": gone, "steps": steps}


def test_store_uri_read_with_sql_equals_the_server_point_for_point(mlflow_server, tricky, tmp_path, capsys):
    via_server = f"sqlite:///{tmp_path / 'server.db'}"
    via_sql = f"sqlite:///{tmp_path / 'sql.db'}"
    backend = f"sqlite:///{mlflow_server.root / 'mlflow.db'}"  # the very store the server serves
    a = cli_json(capsys, "ingest", "mlflow", mlflow_server.url, "--experiment", "tricky", "--db", via_server)
    b = cli_json(capsys, "ingest", "mlflow", backend, "--experiment", "tricky", "--db", via_sql)
    assert a["runs"] == b["runs"] == 2 and a["points"] == b["points"] == tricky["steps"] + 5 + 300
    got = point_set(via_server)
    pd.testing.assert_frame_equal(got, point_set(via_sql))
    assert tricky["deleted"] not in set(got["external_id"])
    h = got[(got["external_id"] == tricky["doubled"]) & (got["key"] == "actor/entropy")]
    assert h["step"].tolist() == list(range(tricky["steps"]))  # none sampled away
    assert (h["value"] == h["step"] / 1000).all()  # the later of the two values at each step
    r = got[got["key"] == "val-core/x/acc/mean_at_1"]["value"].tolist()
    # MLflow keeps ±inf as ±1.8e308 (finite): stored as missing values, as is any |value| ≥ 1e100
    assert r[0] == 0.5 and r[4] == 0.75 and all(np.isnan(v) for v in r[1:4])


def test_other_store_uris_go_through_mlflows_store_with_the_same_result(mlflow_server, tricky, tmp_path):
    backend = f"sqlite:///{mlflow_server.root / 'mlflow.db'}"
    sql = MlflowSource(backend, {"experiments": ["tricky"]})
    store_path = MlflowSource(backend, {"experiments": ["tricky"]})
    store_path._reader = TrackingStoreReader(backend, backend)  # what a postgresql:// or file: store URI gets
    dbs = [f"sqlite:///{tmp_path / name}" for name in ("sql.db", "mlflow-store.db")]
    for db, source in zip(dbs, (sql, store_path), strict=True):
        sync_source(Store.open(db), source)
    pd.testing.assert_frame_equal(point_set(dbs[0]), point_set(dbs[1]))
    assert len(point_set(dbs[1])) == tricky["steps"] + 5 + 300


def test_a_missing_sqlite_store_is_an_error_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "mlflow.db"
    code = main(["ingest", "mlflow", f"sqlite:///{missing}", "--db", f"sqlite:///{tmp_path / 's.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: no MLflow store at sqlite:///{missing}: {missing} does not exist"]
    assert not missing.parent.exists() and not (tmp_path / "s.db").exists()


# ---------------------------------------------------------------------------------------------- start-up, analyses
def _ingest_modules(*argv: str) -> dict:
    """Run the CLI in a fresh interpreter; which heavy packages did it import?"""
    code = ("import json, sys\nfrom entropy_dash.cli import main\ncode = main(sys.argv[1:])\n"
            "heavy = ('mlflow', 'pandas', 'alembic', 'scipy', 'plotly', 'streamlit', 'analysis.pipeline', 'models.law')\n"
            "print(json.dumps({'code': code, 'imported': [m for m in heavy if m in sys.modules]}), file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, *argv, "--quiet"], capture_output=True, text=True, env=env,
                         timeout=300)
    return json.loads(out.stderr.strip().splitlines()[-1])


def test_ingest_imports_only_what_it_uses(mlflow_server, known_law, tmp_path):
    for uri in (mlflow_server.url, f"sqlite:///{mlflow_server.root / 'mlflow.db'}"):
        db = f"sqlite:///{tmp_path / 'imports.db'}"
        argv = ("ingest", "mlflow", uri, "--experiment", "known-law", "--db", db)
        first = _ingest_modules(*argv)  # new points: the analyses need pandas and the models
        assert first["code"] == 0 and "mlflow" not in first["imported"] and "analysis.pipeline" in first["imported"]
        again = _ingest_modules(*argv)  # nothing new: neither MLflow, pandas, alembic nor the models
        assert again == {"code": 0, "imported": []}
        Path(tmp_path / "imports.db").unlink()


def test_no_analyse_stores_points_only_and_the_next_ingest_analyses_them(mlflow_server, known_law, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    args = ("ingest", "mlflow", mlflow_server.url, "--experiment", "known-law", "--db", db)
    first = cli_json(capsys, *args, "--no-analyse")
    assert (first["points"], first["changed_runs"], first["analysed"]) == (661, 1, 0)
    assert Store.open(db).analyses_frame().empty
    again = cli_json(capsys, *args)
    assert (again["points"], again["changed_runs"], again["analysed"]) == (0, 0, 1)
    (fit,) = cli_json(capsys, "fit", "--db", db)
    assert fit["status"] == "ok" and fit["a"] == pytest.approx(0.3, abs=0.01)
    assert cli_json(capsys, *args)["analysed"] == 0
