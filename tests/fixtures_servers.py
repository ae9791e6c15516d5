"""Real servers for the test session: `mlflow server`, PostgreSQL (initdb + pg_ctl), Streamlit, Chromium.

Each starts on a free loopback port and is stopped at the end of the session. When a server's program is
missing the test fails, naming it (``make test`` installs them); nothing is skipped for a missing server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

VENV_BIN = Path(sys.executable).parent
#: how long a server may take to answer its health check: minutes on a 2-core machine running a second suite
STARTUP_S = 300.0


def missing(what: str) -> None:
    """A server or browser the tests need is not installed: fail, saying how to get it (never skip)."""
    pytest.fail(f"{what} is not installed: run `make test`, which installs it (or `make system-deps`)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered:\n{text}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# ------------------------------------------------------------------------------------------ MLflow
#: MLflow 3.x's server also starts a job runner and eight huey consumer processes for its GenAI jobs (nothing
#: this project asks of it): each imports MLflow and polls, seconds of CPU per server on a shared machine
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """``mlflow server`` of ``program`` (this venv's by default) with an SQLite backend under ``root``;
    ``extra`` arguments (``--app-name basic-auth``) and ``env`` are added to its command and environment
    (without the job runner: ``NO_JOB_RUNNER``)."""

    def __init__(self, root: Path, workers: int = 1, program: Path | None = None, extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.workers = workers
        self.program = program or VENV_BIN / "mlflow"
        self.extra, self.env = list(extra), env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "mlflow-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(self.program), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--default-artifact-root", str(self.root / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", str(self.workers), *self.extra]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.root, env={**os.environ, **NO_JOB_RUNNER, **(self.env or {})})
        wait_http(f"{self.url}/health", self.proc, STARTUP_S, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` (sqlite backend, 1 worker) on a loopback port, once per session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------------------------------------ PostgreSQL
def _pg_bindir() -> Path | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists():
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class PostgresServer:
    def __init__(self, root: Path, bindir: Path) -> None:
        self.root, self.bindir = root, bindir
        self.data = root / "data"
        self.sock = root / "sock"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *cmd: str) -> None:
        full = list(cmd)
        if self.as_root:  # initdb and postgres refuse to run as root
            full = ["runuser", "-u", "postgres", "--", *full]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.sock.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
                  "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, db: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server started from initdb in a temp dir, on a free loopback port."""
    bindir = _pg_bindir()
    if bindir is None:
        missing("PostgreSQL (Debian package postgresql)")
    # not under pytest's tmp dir: that is private to root, and the server runs as the postgres user
    root = Path(tempfile.mkdtemp(prefix="entropy-dash-pg-"))
    root.chmod(0o755)
    server = PostgresServer(root, bindir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database on the session's PostgreSQL server for one test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    name += f"_{free_port()}"
    return postgres_server.create_database(name)


# ------------------------------------------------------------------------------------------ Streamlit + Chromium
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Headless Debian Chromium driven by Playwright (its own browser download is never used)."""
    if not Path(CHROMIUM).exists():
        missing("Chromium (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class StreamlitApp:
    def __init__(self, db_url: str, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / f"streamlit-{self.port}.log"
        app = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
        env = {**os.environ, "ENTROPY_DASH_DB": db_url}
        cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_http(f"{self.url}/_stcore/health", self.proc, STARTUP_S, self.log)

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture
def streamlit_app(tmp_path: Path) -> Iterator[Callable[[str], StreamlitApp]]:
    """Factory: `streamlit run dashboard/app.py` on a loopback port against the given store URL."""
    apps: list[StreamlitApp] = []

    def start(db_url: str) -> StreamlitApp:
        app = StreamlitApp(db_url, tmp_path)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()
