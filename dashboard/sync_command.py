"""The Sources page's "sync now": ``entropy-dash ingest <kind> <uri>`` for a source, run in the background (a
subprocess running the same sync-then-analyse workflow as the CLI and the scheduler; the dashboard reads only
the command line of a kind from ``ingest.registry``), its progress and outcome read by polling.

The store's URL reaches the subprocess through ``ENTROPY_DASH_DB`` in its environment, never its command line;
a stored URI's masked password (``http://user:***@host``) is taken by the ingest from the environment
(``MLFLOW_TRACKING_PASSWORD``). One job per source at a time, shared by every browser session of this
dashboard process.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.masking import mask_secrets
from ingest import registry  # the source modules load at its first lookup, when a page shows a command

TIMEOUT_S = 1800


@dataclass(frozen=True)
class SyncOutcome:
    command: list[str]
    returncode: int | None  # None when it timed out or could not start
    stdout: str  # stdout and stderr of the command, interleaved, passwords masked
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class SyncJob:
    """One background ingest: its process and its output file."""

    source_id: int
    command: list[str]
    proc: subprocess.Popen | None
    output: Path
    started: float = field(default_factory=time.monotonic)
    outcome: SyncOutcome | None = None
    error: str = ""  # why it could not start

    @property
    def running(self) -> bool:
        return self.poll() is None

    @property
    def seconds(self) -> float:
        return (self.outcome.seconds if self.outcome else time.monotonic() - self.started)

    def tail(self, chars: int = 4000) -> str:
        try:
            with self.output.open("rb") as fh:
                fh.seek(max(0, self.output.stat().st_size - chars))
                text = fh.read().decode(errors="replace")
        except OSError:
            text = ""
        return mask_secrets((text + ("\n" + self.error if self.error else "")).strip())

    def poll(self, timeout: float = TIMEOUT_S) -> SyncOutcome | None:
        """The outcome once the process ended (None while it runs); a job past ``timeout`` is stopped."""
        if self.outcome is not None:
            return self.outcome
        code: int | None = None
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                if time.monotonic() - self.started <= timeout:
                    return None
                self.proc.kill()
                self.proc.wait()
                self.error = f"timed out after {timeout:.0f} s: stopped (the runs it wrote are complete)"
                code = None
        self.outcome = SyncOutcome(self.command, code, self.tail(), self.error, time.monotonic() - self.started)
        return self.outcome


_jobs: dict[int, SyncJob] = {}
_lock = threading.Lock()


def cli_prefix() -> list[str]:
    """The ``entropy-dash`` of this environment (the venv's script, else ``python -m entropy_dash.cli``)."""
    script = Path(sys.executable).with_name("entropy-dash")
    return [str(script)] if script.exists() else [sys.executable, "-m", "entropy_dash.cli"]


def ingest_command(kind: str, uri: str, options: Mapping[str, Any] | None) -> list[str]:
    """The CLI command that syncs one configured source again (with the options the CLI can express, as the
    source registry spells them); the store comes from ``ENTROPY_DASH_DB``."""
    return [*cli_prefix(), *registry.cli_args(kind, uri, options)]


def shown(command: list[str]) -> str:
    return shlex.join(["entropy-dash", *command[len(cli_prefix()):]])


def job(source_id: int) -> SyncJob | None:
    with _lock:
        return _jobs.get(source_id)


def start_sync(source_id: int, kind: str, uri: str, options: Mapping[str, Any] | None, db_url: str) -> SyncJob:
    """Start the ingest of a source in the background (or return the one already running for it)."""
    with _lock:
        current = _jobs.get(source_id)
        if current is not None and current.running:
            return current
        if current is not None:
            current.output.unlink(missing_ok=True)
        cmd = ingest_command(kind, uri, options)
        fd, name = tempfile.mkstemp(prefix=f"entropy-dash-sync-{source_id}-", suffix=".log")
        env = {**os.environ, "ENTROPY_DASH_DB": db_url}
        try:
            with os.fdopen(fd, "wb") as out:
                proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            new = SyncJob(source_id, cmd, proc, Path(name))
        except OSError as exc:
            new = SyncJob(source_id, cmd, None, Path(name), error=f"could not start: {exc}")
        _jobs[source_id] = new
        return new
