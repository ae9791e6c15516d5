"""Session fixtures: the shared real logs, temporary stores, and (in tests/fixtures_servers.py) the real
servers — an `mlflow server` on loopback, a PostgreSQL server from initdb, headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from db import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytest_plugins = ["tests.fixtures_servers"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real verl logs. Absent in a user's clone (skip, saying so); required under CI."""
    if not SHARED_DATA.is_dir():
        if IN_CI:
            pytest.fail(f"CI=true but the shared real-data folder {SHARED_DATA} is missing")
        pytest.skip(f"real training logs not available: {SHARED_DATA} is missing (it exists only beside the "
                    "project's own checkout; CI has it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def verl_logs(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "verl-console").glob("*.log"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(sqlite_url: str) -> Store:
    return Store.open(sqlite_url)
