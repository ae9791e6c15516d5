"""The docker-compose deployment, tested without Docker: the compose file and Dockerfile say what they must,
and every service's command, with the compose file's own environment variables, runs here against the
PostgreSQL server the test session starts (roles from deploy/init-db.sh, schema from the migrations run by
the ingest role, mlflow server → ingest → report → the dashboard as the read-only role, started as a
service — no terminal, empty HOME — and read page by page in Chromium), with no password of .env or of the
tracking server's URL in any output, page, report or table; the dashboard's role really cannot write, and
it runs every read command and page after an ingest that left analyses stale."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import psycopg
import pytest
import requests
import yaml

from analysis.version import ANALYSIS_VERSION
from entropy_dash.demo_data import log_known_law
from tests.fixtures_servers import NO_JOB_RUNNER, STARTUP_S, free_port, stop, wait_http
from tests.service_checks import (
    ServiceDashboard,
    assert_no_secret,
    dump_tables,
    listening_addresses,
    page_texts,
    read_every_page,
    runs_query,
)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
VENV_BIN = Path(sys.executable).parent
ENV_EXAMPLE = dict(
    line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#"))
_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")

pytestmark = pytest.mark.postgres
TRACKER_PLANT = "Pl4nted-Tr4cker-Pw"  # the tracking server's password, in the source's URL only


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} substitution."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        val = env.get(name)
        if op == ":-" and not val:
            return arg
        if op in (":?", "?") and val is None:
            raise KeyError(f"{name}: {arg}")
        return val or ""

    return _VAR.sub(sub, value)


def service_env(name: str, env: dict[str, str], pg_port: int) -> dict[str, str]:
    """A service's environment from the compose file, with `postgres:5432` pointing at the test server."""
    out = {}
    for key, value in (COMPOSE["services"][name].get("environment") or {}).items():
        out[key] = interpolate(str(value), env).replace("@postgres:5432/", f"@127.0.0.1:{pg_port}/")
    return out


# ------------------------------------------------------------------------------------------ static checks
def test_compose_file_has_the_services_volumes_healthcheck_and_loopback_ports():
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "mlflow", "ingest", "dashboard"}
    assert set(COMPOSE["volumes"]) == {"pgdata", "mlartifacts", "reports"}
    pg = services["postgres"]
    assert "pgdata:/var/lib/postgresql/data" in pg["volumes"] and "ports" not in pg  # never published
    assert any(v.startswith("./deploy/init-db.sh:/docker-entrypoint-initdb.d/") for v in pg["volumes"])
    assert "pg_isready" in pg["healthcheck"]["test"]
    assert "mlartifacts:/mlartifacts" in services["mlflow"]["volumes"]
    assert "reports:/reports" in services["ingest"]["volumes"]
    for name in ("mlflow", "ingest", "dashboard"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["build"] == "." and services[name]["image"] == "entropy-dashboard:latest"
    assert services["ingest"]["command"][:3] == ["schedule", "--config", "/config/sources.toml"]
    dash = services["dashboard"]["command"]
    assert dash[0] == "dashboard" and "--no-browser" in dash
    assert dash[dash.index("--host") + 1] == "0.0.0.0"  # inside the container; published on loopback below
    # no password (nor a variable holding one) on any command line
    for name, service in services.items():
        for field in ("command", "entrypoint"):
            line = " ".join(map(str, service.get(field) or []))
            assert "PASSWORD" not in line and "://" not in line.replace("http://mlflow", ""), (name, line)
    # published ports: loopback only, with .env.example and with no .env at all
    for env in (ENV_EXAMPLE, {}):
        for name in ("dashboard", "mlflow"):
            (port,) = services[name]["ports"]
            assert interpolate(port, env).startswith("127.0.0.1:"), (name, port)
    # the roles: the dashboard reads, the ingest writes
    assert "//entropy_reader:" in services["dashboard"]["environment"]["ENTROPY_DASH_DB"]
    assert "//entropy_writer:" in services["ingest"]["environment"]["ENTROPY_DASH_DB"]
    # every variable the compose file uses is documented in .env.example
    used = set(_VAR.findall((ROOT / "docker-compose.yml").read_text()))
    assert {name for name, _, _ in used} <= set(ENV_EXAMPLE)
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):  # no silent empty superuser password
        interpolate(pg["environment"]["POSTGRES_PASSWORD"], {})
    config = tomllib.loads((ROOT / "deploy" / "sources.toml").read_text())
    assert config["report"]["out"] == "/reports" and config["source"][0]["uri"] == "http://mlflow:5000"


def test_dockerfile_is_slim_non_root_pinned_and_runs_entropy_dash():
    text = (ROOT / "Dockerfile").read_text()
    instr = [(m.group(1).upper(), m.group(2).strip()) for m in
             re.finditer(r"^(\w+)\s+(.*?)(?<!\\)$", text.replace("\\\n", " "), re.M) if not m.group(0).startswith("#")]
    first = dict(instr)
    assert first["FROM"] == "python:3.11-slim"
    users = [v for k, v in instr if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(k == "RUN" and "-c constraints.txt" in v for k, v in instr)
    entrypoint = json.loads(first["ENTRYPOINT"])
    cmd = json.loads(first["CMD"])
    assert cmd[0] == "dashboard" and "--no-browser" in cmd and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert "STREAMLIT_" not in text  # the command runs Streamlit headless itself
    # every package of the project is in the image
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = {v.split()[0] for k, v in instr if k == "COPY"}
    assert {p.rstrip("*") for p in packages["include"]} <= copied, copied
    # the entrypoint is deploy/entrypoint.sh, which ends by exec-ing entropy-dash with the arguments
    (copy,) = [v for k, v in instr if k == "COPY" and v.startswith("deploy/entrypoint.sh")]
    assert copy.split()[1].endswith("/" + entrypoint[0])
    script = (ROOT / "deploy" / "entrypoint.sh").read_text()
    assert script.rstrip().splitlines()[-1] == 'exec entropy-dash "$@"'
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".env", ".git"} <= set(ignored)


# ------------------------------------------------------------------------------------------ services on PostgreSQL
@pytest.fixture
def deployment(postgres_server):
    """A fresh deployment for each test: the deployment's databases dropped if an earlier test made them, then
    deploy/init-db.sh run against the session's server (twice: it is idempotent), as the postgres image would
    run it on a new volume; the environment is .env.example's. No test sees another's runs."""
    with psycopg.connect(host="127.0.0.1", port=postgres_server.port, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        for db in ("entropy_dash", "mlflow"):
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    env = {**ENV_EXAMPLE, "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"}
    run_env = {**os.environ, **env, "PGHOST": "127.0.0.1", "PGPORT": str(postgres_server.port)}
    for _ in range(2):
        done = subprocess.run(["bash", str(ROOT / "deploy" / "init-db.sh")], env=run_env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    return {"env": env, "port": postgres_server.port, "superuser_url": postgres_server.url("entropy_dash")}


def run_service(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A service's command through the image's entrypoint script, with the venv's `entropy-dash` on PATH."""
    full_env = {**os.environ, **env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.run(["sh", str(ROOT / "deploy" / "entrypoint.sh"), *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.browser
def test_services_run_on_postgres_mlflow_ingest_report_dashboard(deployment, browser, tmp_path):
    env, port = deployment["env"], deployment["port"]
    outputs: dict[str, str] = {}

    # mlflow: the compose command on the mlflow database, as the mlflow role
    ml = COMPOSE["services"]["mlflow"]
    ml_port = free_port()
    args = [*ml["entrypoint"], *ml["command"]]
    args[args.index("--port") + 1] = str(ml_port)
    args[args.index("--host") + 1] = "127.0.0.1"  # in the container it listens on all interfaces
    args[args.index("--artifacts-destination") + 1] = str(tmp_path / "mlartifacts")
    args[args.index("--workers") + 1] = "1"
    ml_env = service_env("mlflow", env, port)
    assert ml_env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://mlflow:")
    log = tmp_path / "mlflow.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(VENV_BIN / args[0]), *args[1:]], env={**os.environ, **NO_JOB_RUNNER, **ml_env},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{ml_port}"
        wait_http(f"{url}/health", proc, STARTUP_S, log)
        # other containers reach it as http://mlflow:5000: that Host header is allowed, others are not
        api = f"{url}/api/2.0/mlflow/experiments/search?max_results=5"
        assert requests.get(api, headers={"Host": "mlflow:5000"}, timeout=10).status_code == 200
        assert requests.get(api, headers={"Host": "evil.example"}, timeout=10).status_code in (400, 403)
        log_known_law(url, "deploy", a=0.3, b=1.2, steps=120, noise=0.003, seed=1)
        log_known_law(url, "deploy", a=0.2, b=1.0, steps=120, noise=0.003, seed=2)

        # ingest: the compose command, config = deploy/sources.toml pointed at this server (through a URL with
        # credentials, as for a tracking server with a login) and a local folder
        tracked = url.replace("http://", f"http://tracker:{TRACKER_PLANT}@")
        config = (ROOT / "deploy" / "sources.toml").read_text()
        config = config.replace("http://mlflow:5000", tracked).replace('"/reports"', f'"{tmp_path / "reports"}"')
        (tmp_path / "sources.toml").write_text(config)
        ingest = COMPOSE["services"]["ingest"]["command"]
        ingest = [a.replace("/config/sources.toml", str(tmp_path / "sources.toml")) for a in ingest]
        writer = service_env("ingest", env, port)
        assert writer["ENTROPY_DASH_MIGRATE"] == "1"
        done = run_service([*ingest, "--once"], writer)
        outputs["ingest"] = done.stdout + done.stderr
        assert done.returncode == 0, done.stderr
        done = run_service(["--debug", *ingest, "--once"], writer)
        outputs["ingest --debug"] = done.stdout + done.stderr
        assert done.returncode == 0, done.stderr
    finally:
        stop(proc)

    reader = service_env("dashboard", env, port)
    # report: as the read-only role (analyses are fresh, so nothing needs writing); equal to the CLI's numbers
    done = run_service(["report", "--out", str(tmp_path / "report")], reader)
    outputs["report"] = done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    fit = run_service(["fit", "--json", "--quiet"], writer)
    assert fit.returncode == 0, fit.stderr
    assert doc["fit"] == json.loads(fit.stdout) and len(doc["fit"]) == 2
    assert all(f["status"] == "ok" for f in doc["fit"])
    assert doc["store"].startswith("postgresql+psycopg://entropy_reader:***@")  # password hidden
    assert {r["source"] for r in doc["runs"]} == {f"mlflow http://tracker:***@127.0.0.1:{ml_port}"}
    for args in (["runs", "--json"], ["--debug", "fit", "--json"], ["--debug", "backtest", "--json"]):
        done = run_service(args, reader)
        outputs[" ".join(args)] = done.stdout + done.stderr
        assert done.returncode == 0, done.stderr
    backtest = json.loads(done.stdout)  # logs go to stderr, the document to stdout

    # dashboard: the service's own command as a service manager starts it — its own session, stdin from
    # /dev/null, an empty HOME — as the read-only role; bound to loopback here (every interface in the container)
    dash = COMPOSE["services"]["dashboard"]["command"]
    dash = ["{port}" if a == "8501" else a for a in dash]
    dash[dash.index("--host") + 1] = "127.0.0.1"
    app = ServiceDashboard(dash, reader, tmp_path, entrypoint=ROOT / "deploy" / "entrypoint.sh")
    try:
        assert listening_addresses(app.port) == {"127.0.0.1"}
        pages = read_every_page(browser, app.url, runs_query(doc["fit"]),
                                expect=page_texts(doc["fit"], backtest, ["read-only", "Sync log"]))
    finally:
        app.stop()
    assert all(f["run"] in pages["runs"] for f in doc["fit"])
    assert "read-only" in pages["sources"] and "entropy-dash schedule" in pages["sources"]
    assert "sync now" not in pages["sources"].split("Sync log")[0].split("Sync now", 1)[1]  # no button
    assert f"http://tracker:***@127.0.0.1:{ml_port}" in pages["sources"]
    outputs["dashboard"] = app.output()
    assert f"dashboard: {app.url}" in outputs["dashboard"] and not app.opened()  # --no-browser

    # no password of .env nor of the tracking server's URL anywhere
    secrets = [TRACKER_PLANT, *(v for k, v in env.items() if k.endswith("PASSWORD") and v)]
    assert len(secrets) == 5
    for name, out in {**outputs, **{f"page {k}": v for k, v in pages.items()}}.items():
        assert_no_secret(out, secrets, name)
    for path in [*(tmp_path / "report").rglob("*"), *(tmp_path / "reports").rglob("*")]:
        if path.is_file():
            assert_no_secret(path.read_text(errors="replace"), secrets, str(path))
    tables = dump_tables(deployment["superuser_url"])
    assert "tracker:***@" in tables
    assert_no_secret(tables, secrets, "the store's tables")


def _reader_conn(port: int, password: str) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=port, dbname="entropy_dash", user="entropy_reader",
                           password=password, autocommit=True)


def test_dashboard_role_cannot_write(deployment, verl_logs):
    env, port = deployment["env"], deployment["port"]
    writer = service_env("ingest", env, port)
    done = run_service(["ingest", "file", str(verl_logs[0]), "--quiet"], writer)  # schema and one run, by the writer
    assert done.returncode == 0, done.stderr
    with _reader_conn(port, env["ENTROPY_DASH_READER_PASSWORD"]) as conn:
        # it reads every table the writer filled
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM metric_points").fetchone()[0] > 400  # 435 steps of entropy …
        assert conn.execute("SELECT count(*) FROM analyses").fetchone()[0] >= 1
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
        # its sessions start read-only …
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO metric_keys (name, role) VALUES ('x', 'other')")
        # … and switching that off gains nothing: the privileges are not there
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        for sql in ("INSERT INTO metric_keys (name, role) VALUES ('x', 'other')",
                    "UPDATE runs SET name = 'x'", "DELETE FROM analyses",
                    "CREATE TABLE evil (id int)", "CREATE TEMP TABLE evil (id int)",
                    "DROP TABLE metric_points", "TRUNCATE sync_log", "ALTER TABLE runs ADD COLUMN evil int"):
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)) as exc:
                conn.execute(sql)
            assert isinstance(exc.value, psycopg.errors.InsufficientPrivilege), sql
            assert "permission denied" in str(exc.value) or "must be owner" in str(exc.value), sql
    # the CLI as the reader: reads work, an ingest fails and leaves nothing behind
    reader = service_env("dashboard", env, port)
    before = run_service(["runs", "--json", "--quiet"], reader)
    assert before.returncode == 0, before.stderr
    done = run_service(["ingest", "file", str(verl_logs[0]), "--quiet"], reader)
    assert done.returncode != 0 and "read-only" in done.stderr, done.stderr
    assert run_service(["runs", "--json", "--quiet"], reader).stdout == before.stdout


def test_read_only_role_reads_runs_whose_analyses_are_stale(deployment, verl_logs, browser, tmp_path):
    """After an ingest, new points arrive that no analysis has seen yet (written straight into the store, as
    a sync stopped before its analyses would leave them): the read-only role still runs every read command
    and every page."""
    import numpy as np

    from db import Store
    from db.records import RunData, RunInfo, Series

    env, port = deployment["env"], deployment["port"]
    writer = service_env("ingest", env, port)
    done = run_service(["ingest", "file", str(verl_logs[0]), "--quiet"], writer)
    assert done.returncode == 0, done.stderr
    store = Store.open(writer["ENTROPY_DASH_DB"], create=False)
    runs = store.runs_frame()
    run = runs[runs["source_kind"] == "file"].iloc[0]
    keys = store.run_keys([int(run["id"])])
    roles = {k: r for k, r in zip(keys["key"], keys["role"], strict=True) if r in ("entropy", "performance")}
    assert sorted(roles.values()) == ["entropy", "performance"]
    last = int(keys["last_step"].max())
    steps = np.arange(last + 1, last + 11)
    series = tuple(Series.build(k, steps, np.linspace(0.3, 0.29, 10) if r == "entropy" else np.full(10, 0.6),
                                1.8e9 + steps) for k, r in roles.items())
    res = store.write_run(int(run["source_id"]), RunData(RunInfo(run["external_id"], run["name"],
                                                                 project=run["project"]), series), roles)
    assert res.run_id == int(run["id"]) and res.points == 20
    assert int(run["id"]) in store.stale_runs("summary", ANALYSIS_VERSION)

    reader = service_env("dashboard", env, port)
    docs = {}
    for args in (["runs", "--json"], ["fit", "--json"], ["backtest", "--json"],
                 ["report", "--out", str(tmp_path / "report")]):
        done = run_service([*args, "--quiet"], reader)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args)} as the read-only role: exit {done.returncode}\n{done.stderr[-2500:]}")
        docs[args[0]] = done.stdout
    assert int(run["id"]) in store.stale_runs("summary", ANALYSIS_VERSION)  # nothing was written by the reads
    fit, backtest = json.loads(docs["fit"]), json.loads(docs["backtest"])
    (row,) = json.loads(docs["runs"])
    (h_key,) = [k for k, r in roles.items() if r == "entropy"]
    assert row["run_id"] == int(run["id"]) and row["n_entropy"] == len(store.points(int(run["id"]), h_key))
    assert row["n_entropy"] > 10 and int(store.points(int(run["id"]), h_key)[-1, 0]) == last + 10  # new points seen
    app = ServiceDashboard(["dashboard", "--port", "{port}", "--no-browser"], reader, tmp_path)
    try:
        pages = read_every_page(browser, app.url, runs_query(fit), expect=page_texts(fit, backtest, ["read-only"]))
    finally:
        app.stop()
    assert str(run["name"]) in pages["runs"] and "read-only" in pages["sources"]
