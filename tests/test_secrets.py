"""Secrets never leave the environment: the masking helpers, the credentials of a tracking-server URL, and a
planted password searched for in every output on SQLite — each command's stdout and stderr (also with
--debug), the scheduler's log on retries, a mistyped --db, reports, the dashboard's own output and every page
in Chromium (including a "sync now" run from the Sources page) and every row of every table.
(PostgreSQL, with the deployment's roles: tests/test_deploy.py.)"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from db import Store
from db.masking import MaskingFilter, env_secrets, mask_secrets, mask_url, url_password
from entropy_dash.demo_data import log_known_law
from ingest.credentials import split_credentials
from tests.fixtures_servers import free_port
from tests.service_checks import (
    ServiceDashboard,
    assert_no_secret,
    dump_tables,
    listening_addresses,
    page_texts,
    read_every_page,
    runs_query,
)

PLANT = "Pl4nted-Tr4cker-Pw"  # the tracking server's password, in the URL only
DB_PLANT = "Pl4nted-Db-Pw"  # the password of mistyped database URLs
SECRETS = [PLANT, DB_PLANT]
VENV_BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------ helpers, unit
@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://reader:s3cret@db:5432/entropy_dash", "postgresql://reader:***@db:5432/entropy_dash"),
    ("postgresql+psycopg://u:p@ss@h/db?sslmode=require", "postgresql+psycopg://u:***@h/db?sslmode=require"),
    ("http://user:pw@tracker:5000", "http://user:***@tracker:5000"),
    ("postgresql://u@h/db?password=zz&x=1", "postgresql://u@h/db?password=***&x=1"),
    ("http://tracker:5000/path", "http://tracker:5000/path"),
    ("http://user:***@tracker", "http://user:***@tracker"),
    ("sqlite:////tmp/store.db", "sqlite:////tmp/store.db"),
    ("/data/runs/verl.log", "/data/runs/verl.log"),
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked
    assert mask_url(masked) == masked  # idempotent


def test_mask_secrets_in_free_text_and_env_values(monkeypatch):
    line = ("cannot reach http://a:b3@h:1/health (refused); retry with postgresql://w:x%40y@db/e; "
            "mail me@example.org; host=db password=hunter22 user=w")
    assert mask_secrets(line, ()) == ("cannot reach http://a:***@h:1/health (refused); retry with "
                                      "postgresql://w:***@db/e; mail me@example.org; host=db password=*** user=w")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123456")
    monkeypatch.setenv("ENTROPY_DASH_DB", "postgresql://r:envpass99@db/e")
    assert {"tok-123456", "envpass99"} <= set(env_secrets())
    assert mask_secrets("Bearer tok-123456 and envpass99") == "Bearer *** and ***"
    assert url_password("http://u:p%40ss@h") == "p@ss" and url_password("http://u:***@h") is None


def test_logging_filter_masks_message_args_and_traceback():
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(handler.format(r))  # type: ignore[method-assign]
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("test-masking")
    logger.addHandler(handler)
    try:
        logger.warning("sync of %s failed", "http://u:topsecret1@h")
        try:
            raise RuntimeError("API request to http://u:topsecret1@h/api failed")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    assert records[0] == "sync of http://u:***@h failed"
    assert "topsecret1" not in records[1] and "http://u:***@h/api" in records[1] and "Traceback" in records[1]


def test_tracking_url_credentials_connect_but_are_never_shown(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    opts: dict = {}
    assert split_credentials("http://u:pw%2F1@h:5000", opts) == ("http://u:***@h:5000", "http://u:pw%2F1@h:5000")
    assert opts == {"password": "pw/1"}  # kept for a retry of the same source (never stored: ingest.sync)
    # a retry gets the masked URI back, with those options
    assert split_credentials("http://u:***@h:5000", opts)[1] == "http://u:pw%2F1@h:5000"
    # a stored, masked URI (e.g. "sync now"): the password comes from the environment
    assert split_credentials("http://u:***@h:5000", {})[1] == "http://u@h:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "from-env")
    assert split_credentials("http://u:***@h:5000", {}) == ("http://u:***@h:5000", "http://u:from-env@h:5000")
    assert split_credentials("http://h:5000", {}) == ("http://h:5000", "http://h:5000")


def test_store_keeps_uris_and_errors_masked_and_masks_rows_written_before(sqlite_url):
    store = Store.open(sqlite_url)
    sid = store.source_id("mlflow", "http://u:secretpw@h:5000")
    assert store.sources_frame()["uri"].tolist() == ["http://u:***@h:5000"]
    assert store.source_id("mlflow", "http://u:otherpw@h:5000") == sid  # same source, whatever the password
    log_id = store.start_sync(sid)
    store.finish_sync(log_id, runs=0, points=0, error="cannot reach http://u:secretpw@h:5000: refused")
    # rows written by an older version, password in clear
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO sources (kind, uri, options, created_at) "
                          "VALUES ('mlflow', 'http://v:oldsecret@g', '{}', CURRENT_TIMESTAMP)"))
        conn.execute(text("UPDATE sync_log SET error = 'http://v:oldsecret@g: refused' WHERE id = 1"))
    assert "oldsecret" not in store.sources_frame().to_string() + store.sync_log_frame().to_string()
    old = store.source_id("mlflow", "http://v:oldsecret@g")  # the next ingest rewrites the stored URI masked
    assert "oldsecret" not in store.sources_frame().to_string() and old == 2
    assert "secretpw" not in dump_tables(sqlite_url).replace("oldsecret", "")
    assert store.sync_log_frame()["error"].iloc[0] == "http://v:***@g: refused"


# ------------------------------------------------------------------------------------------ everything, SQLite
def _cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "entropy-dash"), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


@pytest.mark.browser
@pytest.mark.mlflow_server
def test_planted_password_appears_nowhere(mlflow_server, browser, tmp_path):
    log_known_law(mlflow_server.url, "secrets", a=0.3, b=1.2, steps=100, noise=0.003, seed=3)
    log_known_law(mlflow_server.url, "secrets", a=0.2, b=1.0, steps=100, noise=0.003, seed=4)
    tracked = mlflow_server.url.replace("http://", f"http://tracker:{PLANT}@")
    dead = f"http://tracker:{PLANT}@127.0.0.1:{free_port()}"
    db = f"sqlite:///{tmp_path / 'store.db'}"
    outputs: dict[str, str] = {}

    def run(name: str, *args: str, code: int = 0) -> subprocess.CompletedProcess:
        for debug in ((), ("--debug",)):
            done = _cli(*debug, *args)
            outputs[f"{name}{' --debug' if debug else ''}"] = done.stdout + done.stderr
            assert done.returncode == code, (name, debug, done.stdout, done.stderr)
        return done

    run("init", "init", "--db", db)
    first = _cli("ingest", "mlflow", tracked, "--experiment", "secrets", "--db", db)
    outputs["ingest"] = first.stdout + first.stderr
    assert first.returncode == 0, first.stderr
    assert f"mlflow http://tracker:***@127.0.0.1:{mlflow_server.port}: 2 runs" in first.stdout
    run("ingest again", "ingest", "mlflow", tracked, "--experiment", "secrets", "--db", db, "--json")
    # the unreachable server's retries wait 1 + 2 + 4 s (twice: with and without --debug) beside the reads
    # below: it adds a source with no runs and a failed sync_log row, which none of them shows
    with ThreadPoolExecutor(1) as pool:
        dead_ingest = pool.submit(run, "ingest unreachable", "ingest", "mlflow", dead, "--db", db, code=2)
        runs = json.loads(run("runs", "runs", "--json", "--db", db).stdout)
        assert {r["source"] for r in runs} == {f"mlflow http://tracker:***@127.0.0.1:{mlflow_server.port}"}
        run("runs text", "runs", "--db", db)
        fit = json.loads(run("fit", "fit", "--json", "--db", db).stdout)
        backtest = json.loads(run("backtest", "backtest", "--json", "--db", db).stdout)
        run("scaling", "scaling", "--json", "--db", db)
        run("report", "report", "--out", str(tmp_path / "report"), "--db", db)
        for bad in (f"postgresql://u:{DB_PLANT}@127.0.0.1:54x2/db", f"mysql://u:{DB_PLANT}@127.0.0.1/db",
                    f"postgresql://u:{DB_PLANT}@127.0.0.1:{free_port()}/db"):
            done = run(f"mistyped --db {bad}", "runs", "--db", bad, code=2)
            assert "u:***@127.0.0.1" in done.stderr.splitlines()[-1], done.stderr
        unreachable = dead_ingest.result()
    assert "error: cannot reach MLflow tracking server http://tracker:***@127.0.0.1:" in unreachable.stderr
    # the scheduler: the tracked source, and a dead one retried with backoff then logged in sync_log
    config = tmp_path / "sources.toml"
    config.write_text(f'[[source]]\nkind = "mlflow"\nuri = "{tracked}"\nexperiments = ["secrets"]\nevery = "1h"\n\n'
                      f'[[source]]\nkind = "mlflow"\nuri = "{dead}"\nevery = "1h"\n\n'
                      f'[report]\nout = "{tmp_path / "scheduled"}"\n')
    # the dashboard as a service, browser wanted: no prompt, opens the loopback URL once it answers; it starts
    # while the scheduler's retries wait, and its pages are read once the scheduler is done
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(ServiceDashboard, ["--db", db, "dashboard", "--port", "{port}"], {}, tmp_path)
        try:
            sched = run("schedule", "schedule", "--config", str(config), "--once", "--db", db, code=1)
        except BaseException:
            with contextlib.suppress(Exception):
                starting.result().stop()
            raise
        dash = starting.result()
    try:
        assert "retry 3/3" in sched.stderr and "source #2 (mlflow http://tracker:***@127.0.0.1:" in sched.stderr
        store = Store.open(db, create=False)
        errors = store.sync_log_frame()["error"].dropna().tolist()
        assert any("cannot reach MLflow tracking server http://tracker:***@" in e for e in errors), errors
        assert listening_addresses(dash.port) == {"127.0.0.1"}
        pages = read_every_page(browser, dash.url, runs_query(fit), expect=page_texts(fit, backtest, ["Sync log"]))
        page = browser.new_page()
        page.goto(f"{dash.url}/sources", wait_until="networkidle")
        page.get_by_role("button", name="sync now").click()
        page.get_by_text("sync finished").wait_for(timeout=180_000)  # the masked URI + the environment
        pages["sources after sync now"] = page.inner_text("body") + page.content()
        assert "http://tracker:***@127.0.0.1" in pages["sources after sync now"]
        page.close()
        assert dash.opened() == [dash.url]
    finally:
        dash.stop()
    outputs["dashboard"] = dash.output()
    assert f"dashboard: {dash.url}" in outputs["dashboard"] and "Network URL" not in outputs["dashboard"]
    assert "Email" not in outputs["dashboard"] and not any(dash.home.iterdir())  # no prompt, nothing written

    for name, out in {**outputs, **{f"page {k}": v for k, v in pages.items()}}.items():
        assert_no_secret(out, SECRETS, name)
    for folder in (tmp_path / "report", tmp_path / "scheduled"):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files, folder
        for path in files:
            assert_no_secret(path.read_text(errors="replace"), SECRETS, str(path))
    tables = dump_tables(db)
    assert "tracker:***@" in tables
    assert_no_secret(tables, SECRETS, "the store's tables")
