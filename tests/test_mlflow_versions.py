"""MLflow through what it promises, across the supported range (``mlflow>=3.0,<4``): the same runs logged to a
real ``mlflow server`` of the oldest 3.x that installs here (3.0.0, in ``.venv-mlflow-old``, made by
``make test``) and of the newest (this venv's) are ingested exactly alike, over REST and from their SQLite
stores; where a faster path MLflow does not promise is missing, the public one gives the same points and the
runs say so; credentials reach a server that requires them; a PostgreSQL backend store is read for real."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from db import Store
from entropy_dash.cli import main
from tests.fixtures_servers import MlflowServer, missing

ROOT = Path(__file__).resolve().parents[1]
OLDEST = ROOT / ".venv-mlflow-old" / "bin" / "mlflow"
EXPERIMENT = "versions"
ENTROPY, VAL, SCORE = "actor/entropy", "val-core/gsm8k/acc/mean_at_1", "critic/score/mean"
T0 = 1_700_000_000_000  # ms
STEPS = 3_000  # more than one request window (2,499 steps)
ADMIN_PASSWORD = "entropy-dash-test-pw-1"


def _runs() -> list[dict]:
    """Two runs following R = -a e^H + b, entropy every step, validation every 10, as verl logs them."""
    out = []
    for i, (a, b) in enumerate([(0.3, 1.2), (0.25, 1.1)]):
        metrics = []
        for s in range(1, STEPS + 1):
            h = 0.1 + 1.1 * math.exp(-s / 400)
            metrics.append({"key": ENTROPY, "value": round(h, 9), "timestamp": T0 + s, "step": s})
            metrics.append({"key": SCORE, "value": round(0.5 - 0.1 * h, 9), "timestamp": T0 + s, "step": s})
            if s % 10 == 0:
                metrics.append({"key": VAL, "value": round(-a * math.exp(h) + b, 9), "timestamp": T0 + s, "step": s})
        metrics.append({"key": VAL, "value": 0.5, "timestamp": T0 + 10_000, "step": 20})  # a duplicate step
        out.append({"name": f"grpo-{i}", "metrics": metrics,
                    "params": [{"key": "trainer/total_training_steps", "value": str(STEPS)},
                               {"key": "algorithm/adv_estimator", "value": "grpo"}]})
    return out


def log_over_rest(url: str, auth: tuple[str, str] | None = None) -> None:
    """The runs, logged through MLflow's public REST API (the same requests for every version)."""
    http = requests.Session()
    http.auth = auth

    def post(path: str, body: dict) -> dict:
        resp = http.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()

    exp = post("experiments/create", {"name": EXPERIMENT})["experiment_id"]
    for i, run in enumerate(_runs()):
        rid = post("runs/create", {"experiment_id": exp, "run_name": run["name"], "start_time": T0 + i})["run"]["info"]
        rid = rid["run_id"]
        post("runs/log-batch", {"run_id": rid, "params": run["params"]})
        for lo in range(0, len(run["metrics"]), 1000):
            post("runs/log-batch", {"run_id": rid, "metrics": run["metrics"][lo: lo + 1000]})
        post("runs/update", {"run_id": rid, "status": "FINISHED", "end_time": T0 + 99_999})


def log_with_client(tracking_uri: str) -> None:
    """The same runs through ``MlflowClient`` (for a store URI, where there is no server)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment(EXPERIMENT)
    for i, run in enumerate(_runs()):
        rid = client.create_run(exp, run_name=run["name"], start_time=T0 + i).info.run_id
        client.log_batch(rid, params=[Param(p["key"], p["value"]) for p in run["params"]])
        ms = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in run["metrics"]]
        for lo in range(0, len(ms), 1000):
            client.log_batch(rid, metrics=ms[lo: lo + 1000])
        client.set_terminated(rid, "FINISHED", end_time=T0 + 99_999)


def ingest_mlflow(uri: str, db: str, capsys, *extra: str) -> dict:
    capsys.readouterr()
    code = main(["ingest", "mlflow", uri, "--experiment", EXPERIMENT, "--db", db, "--json", "-q", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)



FALLBACK_NOTES = ("read through", "latest steps read from")  # the public paths' notes (ingest/mlflow_*.py)


def no_fallback(got: dict) -> bool:
    """No run says it was read through a public fallback (other notes, e.g. the duplicate step's, may be there)."""
    return not any(n.startswith(FALLBACK_NOTES) for r in got.values() for n in r["notes"])


def stored(db: str) -> dict:
    """Everything ingested, by run name: its info and each key's (step, value, wall time) rows."""
    store = Store.open(db)
    runs = store.runs_frame()
    out = {}
    for _, r in runs.iterrows():
        keys = {k: store.points(int(r["id"]), k) for k in (ENTROPY, VAL, SCORE)}
        out[r["name"]] = {"info": (r["project"], r["status"], r["state"], r["params"], r["planned_steps"],
                                   r["algorithm"]), "points": keys, "notes": list(r["notes"] or [])}
    return out


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want) == ["grpo-0", "grpo-1"]
    for name in want:
        assert got[name]["info"] == want[name]["info"]
        for key, arr in want[name]["points"].items():
            np.testing.assert_array_equal(got[name]["points"][key], arr, err_msg=f"{name} {key}")


@pytest.fixture(scope="module")
def oldest_server(tmp_path_factory) -> Iterator[MlflowServer]:
    if not OLDEST.exists():
        missing(f"the oldest supported MLflow ({OLDEST})")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-oldest"), program=OLDEST)
    server.start()
    log_over_rest(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def newest_server(mlflow_server) -> MlflowServer:
    """The session's `mlflow server` (this venv's MLflow), with the runs in an experiment of their own."""
    log_over_rest(mlflow_server.url)
    return mlflow_server


@pytest.fixture(scope="module")
def reference(newest_server, tmp_path_factory) -> dict:
    """The runs as ingested from the newest server over REST: what every other path must give."""
    db = f"sqlite:///{tmp_path_factory.mktemp('ref') / 's.db'}"
    code = main(["ingest", "mlflow", newest_server.url, "--experiment", EXPERIMENT, "--db", db, "-q", "--no-analyse"])
    assert code == 0
    return stored(db)


def test_the_two_servers_are_the_oldest_and_the_newest_mlflow(oldest_server, newest_server):
    assert requests.get(f"{oldest_server.url}/version", timeout=10).text == "3.0.0"
    newest = (ROOT / "constraints.txt").read_text().split("\nmlflow==", 1)[1].split()[0]
    assert requests.get(f"{newest_server.url}/version", timeout=10).text == newest


def test_oldest_and_newest_servers_ingest_the_same_runs_exactly(oldest_server, reference, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = ingest_mlflow(oldest_server.url, db, capsys)
    assert summary["runs"] == 2 and summary["points"] == 2 * (STEPS * 2 + STEPS // 10)  # the duplicate: one row
    got = stored(db)
    assert_same(got, reference)
    assert got["grpo-0"]["points"][VAL][1, 1] == 0.5  # step 20: the later of the duplicate values wins
    assert got["grpo-0"]["info"][4] == STEPS and got["grpo-0"]["info"][5] == "grpo"
    assert no_fallback(got)  # the fast route answered: no fallback
    assert ingest_mlflow(oldest_server.url, db, capsys)["points"] == 0  # incremental: nothing new


def test_sqlite_stores_of_both_versions_are_read_with_sql(oldest_server, newest_server, reference, tmp_path,
                                                          capsys):
    for server in (oldest_server, newest_server):
        db = f"sqlite:///{tmp_path / (server.root.name + '.db')}"
        ingest_mlflow(f"sqlite:///{server.root / 'mlflow.db'}", db, capsys, "--no-analyse")
        got = stored(db)
        assert_same(got, reference)
        assert no_fallback(got), server.root  # a known revision: SQL, no note


def test_a_store_revision_not_known_is_read_through_mlflowclient(newest_server, reference, tmp_path, capsys,
                                                                 monkeypatch):
    import ingest.mlflow_sql

    monkeypatch.setattr(ingest.mlflow_sql, "KNOWN_REVISIONS", frozenset())
    copy = tmp_path / "mlflow.db"
    shutil.copy(newest_server.root / "mlflow.db", copy)
    db = f"sqlite:///{tmp_path / 's.db'}"
    ingest_mlflow(f"sqlite:///{copy}", db, capsys, "--no-analyse")
    got = stored(db)
    assert_same(got, reference)
    assert any(n.startswith("read through MlflowClient, not with SQL: its schema revision 'dc11669786a5' is not one")
               for n in got["grpo-0"]["notes"])


def test_without_the_ui_route_the_public_rest_api_gives_the_same_points(oldest_server, reference, tmp_path, capsys,
                                                                        monkeypatch):
    import ingest.mlflow_rest

    monkeypatch.setattr(ingest.mlflow_rest, "BULK_INTERVAL", "/ajax-api/2.0/mlflow/metrics/no-such-route")
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = ingest_mlflow(oldest_server.url, db, capsys, "--no-analyse")
    got = stored(db)
    assert_same(got, reference)
    note = "read through MLflow's public REST API (metrics/get-history): the server does not answer"
    assert all(any(n.startswith(note) for n in r["notes"]) for r in got.values())
    assert any(note in n for n in summary["notes"])
    capsys.readouterr()
    assert main(["runs", "--db", db]) == 0  # `runs` shows each run's notes


def test_credentials_reach_a_server_that_requires_them(reference, tmp_path, capsys, monkeypatch):
    server = MlflowServer(tmp_path / "auth", extra=("--app-name", "basic-auth"),
                          env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
                               "MLFLOW_FLASK_SERVER_SECRET_KEY": "entropy-dash-tests"})
    server.root.mkdir()
    server.start()
    try:
        log_over_rest(server.url, auth=("admin", ADMIN_PASSWORD))
        db = f"sqlite:///{tmp_path / 's.db'}"
        for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        code = main(["ingest", "mlflow", server.url, "--experiment", EXPERIMENT, "--db", db, "-q"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(f"error: MLflow {server.url} refused ") and "(HTTP 401)" in err
        assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in err
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        assert main(["ingest", "mlflow", server.url, "--experiment", EXPERIMENT, "--db", db, "-q"]) == 2
        assert "(HTTP 401)" in capsys.readouterr().err
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        ingest_mlflow(server.url, db, capsys, "--no-analyse")
        assert_same(stored(db), reference)
        assert ADMIN_PASSWORD not in json.dumps(Store.open(db).sources_frame().astype(str).to_dict())
    finally:
        server.stop()


def test_a_postgresql_backend_store_is_read_for_real(postgres_server, reference, tmp_path, capsys):
    backend = postgres_server.create_database("mlflow_backend")
    log_with_client(backend)
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = ingest_mlflow(backend, db, capsys, "--no-analyse")
    assert summary["runs"] == 2
    got = stored(db)
    assert_same(got, reference)
    assert no_fallback(got)  # MLflow 3.17's store has the bulk-interval reader
