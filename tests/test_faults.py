"""Faults against real components: an ingest SIGKILLed half-way, the MLflow server stopped mid-sync, two
ingests of one source at once (SQLite and PostgreSQL), and re-ingest of files adding nothing.

The yardstick is always a clean ingest of the same source into a fresh store: after the fault and a rerun,
the store holds exactly its points (run, key, step, value, wall time), no more, no fewer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import ingest.sync as sync_module
from db import Store
from entropy_dash.cli import main
from entropy_dash.demo_data import log_known_law
from ingest.mlflow_source import MlflowSource
from tests.fixtures_servers import MlflowServer

ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
N_RUNS = 24  # runs in the experiment the SIGKILL and concurrency tests ingest
STEPS = 300  # each: 300 entropy + 300 train score + 61 validation points


def point_set(db_url: str) -> pd.DataFrame:
    """Every stored point keyed by the run's external id (run ids differ between stores), sorted."""
    store = Store.open(db_url, create=False)
    runs = store.runs_frame()
    if runs.empty:
        return pd.DataFrame(columns=["external_id", "key", "step", "value", "wall_time"])
    s = store.series(runs["id"].tolist())
    s["external_id"] = s["run_id"].map(dict(zip(runs["id"], runs["external_id"], strict=True)))
    cols = ["external_id", "key", "step", "value", "wall_time"]
    return s[cols].sort_values(cols[:3]).reset_index(drop=True)


def clean_ingest(tmp_path: Path, url: str, experiment: str) -> pd.DataFrame:
    db = f"sqlite:///{tmp_path / f'clean-{experiment}.db'}"
    assert main(["ingest", "mlflow", url, "--experiment", experiment, "--db", db, "--quiet"]) == 0
    return point_set(db)


def ingest_cmd(url: str, experiment: str, db: str) -> list[str]:
    return [ENTROPY_DASH, "ingest", "mlflow", url, "--experiment", experiment, "--db", db, "--quiet"]


@pytest.fixture(scope="module")
def sweep(mlflow_server) -> str:
    """24 runs following the law with different a, logged as verl's MLflow logger would."""
    for i in range(N_RUNS):
        log_known_law(mlflow_server.url, "faults-sweep", a=0.2 + 0.01 * i, b=1.1, steps=STEPS, noise=0.003, seed=i)
    return "faults-sweep"


# ---------------------------------------------------------------------------------------------- SIGKILL
def test_ingest_killed_mid_way_then_rerun_gives_exactly_a_clean_ingest(mlflow_server, sweep, tmp_path):
    path = tmp_path / "killed.db"
    db = f"sqlite:///{path}"
    Store.open(db)
    proc = subprocess.Popen(ingest_cmd(mlflow_server.url, sweep, db), stderr=subprocess.PIPE, text=True)
    done = 0
    try:
        # let the ingest run in 10 ms slices; between slices it is stopped (possibly inside a transaction)
        # and the store is read; once it holds some but not all runs, the stopped process is SIGKILLed
        while proc.poll() is None:
            time.sleep(0.01)
            _stop(proc.pid)
            done = _stored_runs(path)
            if 0 < done < N_RUNS:
                os.kill(proc.pid, signal.SIGKILL)
                break
            os.kill(proc.pid, signal.SIGCONT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert 0 < done < N_RUNS
    partial = point_set(db)
    assert partial["external_id"].nunique() == done  # whole runs only
    assert len(partial) == done * (2 * STEPS + 61)

    rerun = subprocess.run(ingest_cmd(mlflow_server.url, sweep, db), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    pd.testing.assert_frame_equal(point_set(db), clean_ingest(tmp_path, mlflow_server.url, sweep))
    log = Store.open(db).sync_log_frame()
    assert list(log["status"]) == ["ok", "interrupted"]  # the rerun saw the killed job's process was gone
    assert "ended before it finished" in log["error"].iloc[1]
    assert log["points"].iloc[0] == (N_RUNS - done) * (2 * STEPS + 61)


def _stop(pid: int) -> None:
    """SIGSTOP and wait until the kernel reports the process stopped (no write can land after this)."""
    os.kill(pid, signal.SIGSTOP)
    stat = Path(f"/proc/{pid}/stat")
    while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z"):
        time.sleep(0.001)


def _stored_runs(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


# ---------------------------------------------------------------------------------------------- server stops
def test_mlflow_server_stopped_mid_sync_is_logged_and_the_next_run_completes(tmp_path, monkeypatch, capsys):
    server = MlflowServer(tmp_path)
    server.start()
    try:
        for i in range(3):
            log_known_law(server.url, "stopping", a=0.25 + 0.05 * i, b=1.2, steps=200, seed=i)
        db = f"sqlite:///{tmp_path / 'store.db'}"
        real = MlflowSource._bulk_interval
        calls = []

        def stop_after_first_call(self, *args, **kwargs):  # noqa: ANN001, ANN202 - wraps the real method
            if calls:  # the first key's points came back; the server goes away before the second key
                server.stop()
            calls.append(args)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(MlflowSource, "_bulk_interval", stop_after_first_call)
        monkeypatch.setattr(sync_module, "time", SimpleNamespace(sleep=lambda s: None))  # no backoff waits
        code = main(["ingest", "mlflow", server.url, "--experiment", "stopping", "--db", db, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2
        assert f"error: cannot reach MLflow tracking server {server.url}: connection refused" in err
        log = Store.open(db).sync_log_frame()
        assert list(log["status"]) == ["error"]
        assert log["error"].iloc[0] == f"cannot reach MLflow tracking server {server.url}: connection refused"
        # windows are fetched concurrently: every request after the first found the server gone
        assert len(calls) >= 2 and server.proc.poll() is not None

        monkeypatch.undo()
        server.start()  # same port, same backend store
        assert main(["ingest", "mlflow", server.url, "--experiment", "stopping", "--db", db, "--quiet"]) == 0
        after = point_set(db)
        assert len(after) == 3 * (2 * 200 + 41)
        pd.testing.assert_frame_equal(after, clean_ingest(tmp_path, server.url, "stopping"))
        assert list(Store.open(db).sync_log_frame()["status"]) == ["ok", "error"]
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- concurrency
def _two_at_once(url: str, experiment: str, db: str) -> None:
    procs = [subprocess.Popen(ingest_cmd(url, experiment, db), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


def _assert_one_copy(db: str, expected: pd.DataFrame) -> None:
    got = point_set(db)
    assert not got.duplicated(["external_id", "key", "step"]).any()
    pd.testing.assert_frame_equal(got, expected)
    store = Store.open(db, create=False)
    assert len(store.sources_frame()) == 1 and len(store.runs_frame()) == N_RUNS
    assert set(store.sync_log_frame()["status"]) == {"ok"}


def test_two_ingests_at_once_on_sqlite(mlflow_server, sweep, tmp_path):
    db = f"sqlite:///{tmp_path / 'twice.db'}"
    _two_at_once(mlflow_server.url, sweep, db)
    _assert_one_copy(db, clean_ingest(tmp_path, mlflow_server.url, sweep))


@pytest.mark.postgres
def test_two_ingests_at_once_on_postgres(mlflow_server, sweep, postgres_url, tmp_path):
    _two_at_once(mlflow_server.url, sweep, postgres_url)
    _assert_one_copy(postgres_url, clean_ingest(tmp_path, mlflow_server.url, sweep))


# ---------------------------------------------------------------------------------------------- re-ingest
def _ingest_file(capsys, path: Path, db: str) -> dict:
    import json

    code = main(["ingest", "file", str(path), "--db", db, "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_reingest_of_a_csv_adds_nothing(tmp_path, capsys):
    csv = tmp_path / "metrics.csv"
    rows = ["run,key,step,value,wall_time"]
    for run in ("a", "b"):
        rows += [f"{run},actor/entropy,{s},{1 / (s + 1)},{1000 + s}" for s in range(1, 101)]
        rows += [f"{run},val-core/x/acc/mean@1,{s},{s / 100},{1000 + s}" for s in range(0, 101, 10)]
    csv.write_text("\n".join(rows) + "\n")
    db = f"sqlite:///{tmp_path / 's.db'}"
    first = _ingest_file(capsys, csv, db)
    assert (first["runs"], first["points"]) == (2, 2 * (100 + 11))
    before = point_set(db)
    again = _ingest_file(capsys, csv, db)  # unchanged: not even opened
    assert (again["runs"], again["points"], again["changed_runs"], again["unchanged_files"]) == (0, 0, 0, 1)
    pd.testing.assert_frame_equal(point_set(db), before)


@pytest.mark.parametrize("prefix", ["Qwen2.5-0.5B-bsz256_2-prompt1024", "Qwen2.5-0.5B-bsz256_2-prompt512"])
def test_reingest_of_real_verl_logs_adds_nothing(verl_logs, prefix, tmp_path, capsys):
    (log,) = [p for p in verl_logs if p.name.startswith(prefix)]
    db = f"sqlite:///{tmp_path / 's.db'}"
    first = _ingest_file(capsys, log, db)
    assert first["runs"] == 1 and first["points"] > 0
    keys = Store.open(db).run_keys().set_index("key")
    entropy = keys[keys["role"] == "entropy"]
    val = keys.loc[[k for k in keys.index if k.startswith("val")]]
    assert entropy["n"].tolist() == [435]
    assert val["n"].max() == 45  # 43 validations in the loop + the initial and the final one
    again = _ingest_file(capsys, log, db)
    assert (again["runs"], again["points"], again["changed_runs"], again["unchanged_files"]) == (0, 0, 0, 1)
