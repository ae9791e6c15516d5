"""``streamlit run`` of the dashboard on a free loopback port, with the options ``entropy-dash dashboard``
gives it: the server the page benchmarks time, and its memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's memory from /proc in MB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``streamlit run APP`` (the dashboard when ``app`` is None) against the store ``url``."""

    def __init__(self, url: str, log: Path, app: Path | None = None, env: dict[str, str] | None = None,
                 start_timeout: float = 180) -> None:
        import requests

        from entropy_dash.commands.serve import streamlit_command

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        cmd = streamlit_command("127.0.0.1", self.port)
        if app is not None:
            cmd[cmd.index("run") + 1] = str(app)
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, "ENTROPY_DASH_DB": url, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/_stcore/health", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"streamlit did not start; see {log}")

    def peak_mb(self) -> float:
        return proc_mb(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
