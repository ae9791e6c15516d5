"""The Sources page's "sync now": run ``entropy-dash ingest <kind> <uri> --db URL --quiet`` for a source in a
subprocess (the dashboard never imports ``ingest``) and report its outcome."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 1800


@dataclass(frozen=True)
class SyncOutcome:
    command: list[str]
    returncode: int | None  # None when it timed out or could not start
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def cli_prefix() -> list[str]:
    """The ``entropy-dash`` of this environment (the venv's script, else ``python -m entropy_dash.cli``)."""
    script = Path(sys.executable).with_name("entropy-dash")
    return [str(script)] if script.exists() else [sys.executable, "-m", "entropy_dash.cli"]


def ingest_command(kind: str, uri: str, options: Mapping[str, Any] | None, db_url: str) -> list[str]:
    """The CLI command that syncs one configured source again (with the options the CLI can express)."""
    opts = dict(options or {})
    args = ["ingest", kind]
    if kind == "mlflow":
        args.append(uri)
        for exp in opts.get("experiments") or []:
            args += ["--experiment", str(exp)]
        if opts.get("all_keys"):
            args.append("--all-keys")
    elif kind == "wandb":
        args += ["--offline", uri] if Path(uri).is_absolute() else [uri]
    else:  # tensorboard DIR, file PATH
        args.append(uri)
    return [*cli_prefix(), *args, "--db", db_url, "--quiet"]


def run_sync(kind: str, uri: str, options: Mapping[str, Any] | None, db_url: str,
             timeout: float = TIMEOUT_S) -> SyncOutcome:
    cmd = ingest_command(kind, uri, options, db_url)
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return SyncOutcome(cmd, None, _s(exc.stdout), _s(exc.stderr) + f"\ntimed out after {timeout:.0f} s",
                           time.monotonic() - start)
    except OSError as exc:
        return SyncOutcome(cmd, None, "", f"could not start: {exc}", time.monotonic() - start)
    return SyncOutcome(cmd, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def _s(v: str | bytes | None) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else (v or "")
