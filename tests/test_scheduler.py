"""`entropy-dash schedule`: a real scheduler process with a 1 s interval against the real mlflow server while
the test logs new steps; it catches up, re-fits, and stops cleanly on SIGTERM. Config errors name the file
and the key."""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from analysis.pipeline import KIND
from db import Store
from entropy_dash.cli import main
from entropy_dash.scheduler import load_config, parse_interval

ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
ENTROPY, VAL = "actor/entropy", "val-core/live/acc/mean_at_1"
DEADLINE_S = 60.0


def log_steps(client: MlflowClient, run_id: str, first: int, last: int) -> None:
    """Steps first..last of a run following R = -0.3 e^H + 1.2, validated every 5 steps."""
    now = int(time.time() * 1000)
    ms = []
    for s in range(first, last + 1):
        h = 0.1 + 1.1 * math.exp(-s / 40)
        ms.append(Metric(ENTROPY, h, now + s, s))
        if s % 5 == 0:
            ms.append(Metric(VAL, -0.3 * math.exp(h) + 1.2, now + s, s))
    client.log_batch(run_id, metrics=ms)


def wait_for(check, what: str, proc: subprocess.Popen):  # noqa: ANN001, ANN201 - a predicate and its value
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        assert proc.poll() is None, f"scheduler exited with {proc.returncode} while waiting for {what}"
        time.sleep(0.3)
    raise AssertionError(f"the store did not catch up within {DEADLINE_S:.0f} s: {what}")


def test_schedule_catches_up_with_a_live_run_and_stops_on_sigterm(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment("sched-live")
    run_id = client.create_run(exp, run_name="live").info.run_id
    log_steps(client, run_id, 1, 60)
    db_path = tmp_path / "store.db"
    cfg = tmp_path / "sources.toml"
    cfg.write_text(f'db = "sqlite:///{db_path.name}"\n\n[[source]]\nkind = "mlflow"\nuri = "{mlflow_server.url}"\n'
                   f'experiments = ["sched-live"]\nevery = "1s"\n')
    proc = subprocess.Popen([ENTROPY_DASH, "schedule", "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    try:
        def caught_up(n: int):  # noqa: ANN202 - the stored analysis once it covers n entropy points
            if not db_path.exists():
                return None
            store = Store.open(f"sqlite:///{db_path}", create=False) if _ready(db_path) else None
            if store is None:
                return None
            a = store.analyses_frame(KIND)
            if a.empty or a["result"].iloc[0].get("n_entropy") != n:
                return None
            return a["result"].iloc[0]

        first = wait_for(lambda: caught_up(60), "60 entropy points analysed", proc)
        assert first["status"] == "ok" and first["law"]["n"] == 12
        for lo in (61, 81, 101):  # the trainer goes on while the scheduler runs
            log_steps(client, run_id, lo, lo + 19)
        last = wait_for(lambda: caught_up(120), "120 entropy points analysed", proc)
        assert last["law"]["n"] == 24 and last["law"]["a"] == pytest.approx(0.3, abs=0.05)
        store = Store.open(f"sqlite:///{db_path}", create=False)
        assert store.series([1], [ENTROPY])["step"].tolist() == list(range(1, 121))
        runs = store.runs_frame()
        analysed_at = store.analyses_frame(KIND)["data_version"].iloc[0]
        assert analysed_at == runs["data_version"].iloc[0] >= 2  # re-fitted after the new points
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err and "scheduler stopped" in err
    log = Store.open(f"sqlite:///{db_path}", create=False).sync_log_frame()
    assert len(log) >= 2 and "running" not in set(log["status"])
    assert log["points"].sum() == 120 + 24


def _ready(db_path: Path) -> bool:
    """The scheduler created the schema (the test must not race it by migrating itself)."""
    import sqlite3

    with sqlite3.connect(db_path, timeout=10) as conn:
        return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'analyses'").fetchone()[0])


def test_once_runs_every_source(tmp_path, monkeypatch):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.csv").write_text("key,step,value\nactor/entropy,1,0.5\nactor/entropy,2,0.4\n")
    cfg = tmp_path / "sources.toml"
    cfg.write_text('db = "sqlite:///s.db"\n[[source]]\nkind = "file"\nuri = "logs"\n'
                   '[[source]]\nkind = "file"\nuri = "logs/a.csv"\nroles = { "actor/entropy" = "entropy" }\n')
    monkeypatch.delenv("ENTROPY_DASH_DB", raising=False)
    assert main(["schedule", "--config", str(cfg), "--once"]) == 0
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}", create=False)  # db is relative to the config file
    assert list(store.sync_log_frame()["status"]) == ["ok", "ok"] and store.count_points() == 4


def test_once_writes_a_report_only_after_changes_and_keeps_the_newest(tmp_path):
    csv = tmp_path / "a.csv"
    cfg = tmp_path / "sources.toml"
    cfg.write_text('[[source]]\nkind = "file"\nuri = "a.csv"\n[report]\nout = "reports"\nformats = ["md", "json"]\n'
                   'keep = 2\n')
    db = f"sqlite:///{tmp_path / 's.db'}"
    written = []
    for n in range(1, 5):
        csv.write_text("key,step,value\n" + "".join(f"actor/entropy,{s},0.5\n" for s in range(1, n + 1)))
        assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 0
        written.append(sorted((tmp_path / "reports").iterdir())[-1].name)
    assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 0  # nothing new: no report
    kept = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert len(set(written)) == 4 and kept == written[-2:]
    assert sorted(p.name for p in (tmp_path / "reports" / kept[-1]).iterdir()) == ["report.json", "report.md"]


def test_once_with_the_real_report_writer(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="entropy_dash.scheduler")
    (tmp_path / "a.csv").write_text("key,step,value\nactor/entropy,1,0.5\nactor/entropy,2,0.4\n")
    cfg = tmp_path / "sources.toml"
    cfg.write_text('[[source]]\nkind = "file"\nuri = "a.csv"\n[report]\nout = "reports"\nformats = ["md", "json"]\n'
                   'keep = 1\n')
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 0
    (folder,) = (tmp_path / "reports").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "report.md"]
    assert f"report written to {folder}" in caplog.text


@pytest.mark.parametrize(("body", "key", "what"), [
    ('[[source]]\nkind = "mlflow"\nuri = "http://x"\nevery = "5 minutes"\n', "every", "not an interval"),
    ('[[source]]\nkind = "mlflow"\nuri = "http://x"\nevery = "0s"\n', "every", "not a positive interval"),
    ('[[source]]\nkind = "neptune"\nuri = "http://x"\nevery = "5m"\n', "kind", "unknown source kind 'neptune'"),
    ('[[source]]\nkind = "mlflow"\nevery = "5m"\n', "uri", "missing"),
    ('[[source]]\nkind = "mlflow"\nuri = "http://x"\ncron = "every day"\n', "cron", "not a crontab line"),
    ('[[source]]\nkind = "mlflow"\nuri = "http://x"\n', "every", "missing"),
    ('[[source]]\nkind = "file"\nuri = "x"\nevery = "5m"\nexperiments = ["a"]\n', "experiments", "unknown for a file"),
    ('[[source]]\nkind = "mlflow"\nuri = "http://x"\nevery = 60\nroles = { "h" = "entropie" }\n', "roles",
     "'entropie'"),
])
def test_config_errors_name_the_file_the_source_and_the_key(tmp_path, capsys, body, key, what):
    cfg = tmp_path / "sources.toml"
    cfg.write_text('[[source]]\nkind = "file"\nuri = "."\nevery = "1h"\n\n' + body)
    code = main(["schedule", "--config", str(cfg), "--db", f"sqlite:///{tmp_path / 's.db'}"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert line.startswith(f"error: {cfg}, source #2, key {key!r}: ") and what in line
    assert not (tmp_path / "s.db").exists()


def test_config_file_level_errors(tmp_path, capsys):
    cfg = tmp_path / "sources.toml"
    for text, what in [("db = \n", "not valid TOML"), ("db = 'sqlite:///x.db'\n", "no [[source]] tables"),
                       ('[[source]]\nkind="file"\nuri="."\nevery="1m"\n[report]\nformats=["pdf"]\nout="r"\n',
                        "[report], key 'formats'")]:
        cfg.write_text(text)
        assert main(["schedule", "--config", str(cfg)]) == 2
        assert what in capsys.readouterr().err
    assert main(["schedule", "--config", str(tmp_path / "missing.toml")]) == 2
    assert f"{tmp_path / 'missing.toml'}: no such config file" in capsys.readouterr().err


def test_schedule_config_values_and_the_readme_example(tmp_path):
    assert [parse_interval(v) for v in (90, "30s", "5m", "1.5h", "1d", "2")] == [90, 30, 300, 5400, 86400, 2]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Scheduled ingestion", 1)[1]
    cfg = tmp_path / "sources.toml"
    cfg.write_text(section.split("```toml", 1)[1].split("```", 1)[0])
    loaded = load_config(cfg)
    assert [s.kind for s in loaded.sources][:1] == ["mlflow"] and loaded.report is not None
    assert loaded.sources[0].options["runs"] and loaded.sources[0].every == 300
