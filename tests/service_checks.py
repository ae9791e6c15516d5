"""What the service tests look at: the dashboard started as a service (no terminal, empty HOME), every page
read in Chromium, which addresses a port listens on, and every row of every table of a store — each searched
for planted passwords."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from sqlalchemy import MetaData, create_engine, select

from tests.fixtures_servers import free_port, wait_http

PAGES = ("runs", "collapse", "ceiling", "compare", "sources")
TITLES = {"runs": "Runs", "collapse": "Collapse", "ceiling": "Ceiling", "compare": "Compare", "sources": "Sources"}
VENV_BIN = Path(sys.executable).parent


def assert_no_secret(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a planted password appears in {where}: …{_around(text, secret)}…"


def _around(text: str, secret: str) -> str:
    i = text.index(secret)
    return text[max(0, i - 80): i + len(secret) + 40].replace(secret, "<PLANTED>")


class ServiceDashboard:
    """``entropy-dash … dashboard`` started as a service manager would: its own session (no controlling
    terminal), stdin from /dev/null, HOME an empty folder (no ~/.streamlit), output to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], root: Path, *, port: int | None = None,
                 entrypoint: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = root / f"home-{self.port}"
        self.home.mkdir()
        self.log = root / f"dashboard-{self.port}.log"
        self.browser_log = root / f"browser-{self.port}.txt"
        # the BROWSER command webbrowser runs: it records the URL it was asked to open
        opener = root / f"open-browser-{self.port}.sh"
        opener.write_text(f'#!/bin/sh\necho "$1" >> "{self.browser_log}"\n')
        opener.chmod(0o755)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "DISPLAY", "WAYLAND"))}
        full_env.update(env)
        full_env.update({"HOME": str(self.home), "BROWSER": str(opener),
                         "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
        args = [a.replace("{port}", str(self.port)) for a in args]
        cmd = ["sh", str(entrypoint), *args] if entrypoint else [str(VENV_BIN / "entropy-dash"), *args]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=full_env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{self.url}/_stcore/health", self.proc, 180, self.log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def opened(self) -> list[str]:
        return self.browser_log.read_text().split() if self.browser_log.exists() else []

    def stop(self) -> None:
        from tests.fixtures_servers import stop

        stop(self.proc)


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def read_every_page(browser, base_url: str, query: str = "") -> dict[str, str]:  # noqa: ANN001 - playwright
    """Each page once it has drawn (title shown, no spinner left): its visible text, its HTML, and every
    message the server sent it over the websocket (tables are drawn on a canvas: their cells are only in
    those messages, as Arrow data with plain UTF-8 strings)."""
    out = {}
    page = browser.new_page(viewport={"width": 1500, "height": 2200})
    frames: list[str] = []

    def on_socket(ws) -> None:  # noqa: ANN001 - playwright WebSocket
        ws.on("framereceived", lambda payload: frames.append(
            payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload))

    page.on("websocket", on_socket)
    try:
        for name in PAGES:
            frames.clear()
            page.goto(f"{base_url}/{name}{query}", wait_until="networkidle")
            page.wait_for_function(
                "([t]) => [...document.querySelectorAll('h1')].some(h => h.innerText.includes(t))",
                arg=[TITLES[name]], timeout=90_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stSpinner\"]')", timeout=90_000)
            page.wait_for_timeout(1000)
            assert page.locator('[data-testid="stException"]').count() == 0, (name, page.inner_text("body"))
            out[name] = "\n".join([page.inner_text("body"), page.content(), *frames])
    finally:
        page.close()
    return out


def dump_tables(url: str) -> str:
    """Every row of every table of the store at ``url``, as text."""
    from db.engine import resolve_db_url

    engine = create_engine(resolve_db_url(url))
    meta = MetaData()
    meta.reflect(engine)
    lines = []
    try:
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    lines.append(f"{table.name}: {tuple(row)!r}")
    finally:
        engine.dispose()
    assert any(line.startswith("sources:") for line in lines), "no sources table rows: wrong store?"
    return "\n".join(lines)
