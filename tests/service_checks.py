"""What the service tests look at: the dashboard started as a service (no terminal, empty HOME), every page
read in Chromium, which addresses a port listens on, and every row of every table of a store — each searched
for planted passwords."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import MetaData, create_engine, select

from tests.fixtures_servers import STARTUP_S, free_port, wait_http

PAGES = ("runs", "collapse", "health", "groups", "ceiling", "compare", "backtest", "sources")
TITLES = {name: name.capitalize() for name in PAGES}

#: true once a Streamlit page has drawn: its script run has ended (not merely not started), its title and every
#: text asked for are shown, no spinner is left, and every chart container holds plotly's drawing
_DRAWN = """([title, texts]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== 'notRunning') return false;
  if (![...document.querySelectorAll('h1')].some(h => h.innerText.includes(title))) return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  const body = document.body.innerText;
  if (!texts.every(t => body.includes(t))) return false;
  return [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(c => c.querySelector('.main-svg'));
}"""
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
        wait_http(f"{self.url}/_stcore/health", self.proc, STARTUP_S, self.log)

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


def wait_drawn(page, title: str, texts: Sequence[str] = (), timeout: float = 120_000) -> None:  # noqa: ANN001
    """Wait until the Streamlit page has drawn (``_DRAWN``) and shows each of ``texts``; on a timeout, fail
    saying which text never came and what the page showed instead."""
    try:
        page.wait_for_function(_DRAWN, arg=[title, list(texts)], timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError: say what was missing
        body = page.inner_text("body")
        state = page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state")
        missing = [t for t in texts if t not in body]
        raise AssertionError(f"page {title!r} not drawn (script {state}; missing {missing}): {body[:1500]}") from exc


def read_every_page(browser, base_url: str, query: str = "",  # noqa: ANN001 - playwright
                    expect: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Each page once it has drawn (``wait_drawn``: its script run ended, its title, the texts ``expect`` names
    for it — a run name, a number — and every chart drawn): its visible text, its HTML, and every message the
    server sent it over the websocket (tables are drawn on a canvas: their cells are only in those messages,
    as Arrow data with plain UTF-8 strings)."""
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
            path = "" if name == "runs" else name  # the default page lives at the root URL
            page.goto(f"{base_url}/{path}{query}", wait_until="networkidle")
            wait_drawn(page, TITLES[name], (expect or {}).get(name, ()))
            assert page.locator('[data-testid="stException"]').count() == 0, (name, page.inner_text("body"))
            out[name] = "\n".join([page.inner_text("body"), page.content(), *frames])
    finally:
        page.close()
    return out


def page_texts(fit: Sequence[Mapping], backtest: Mapping, sources: Sequence[str] = ()) -> dict[str, list[str]]:
    """What each page must show once drawn with every run of ``fit`` (``fit --json``) selected (``?runs=…``):
    the run count, each run's label in the pickers, the first run's ceiling, the group count, the Backtest page's replay charts when
    ``backtest --json`` has a summary (or why there is none), and ``sources`` on the Sources page."""
    labels = [f"{f['run']} (#{f['run_id']})" for f in fit]
    first = fit[0]
    summaries = [d for d in backtest["cutoffs"] if d.get("summary")]
    return {
        "runs": [f"runs 1–{len(fit)} of {len(fit)} matching"],
        "collapse": labels,
        "health": [" critical · "],  # the severity counts' caption, drawn once the findings are read
        "groups": [f"{len(fit)} runs in "],
        "ceiling": [f"{first['ceiling']:.4f}" if first["status"] == "ok" else first["status"]],
        "compare": labels,
        "backtest": ["Replay: MAE of the final score against the fraction done",
                     "Replay: coverage of the 95% interval against the fraction done"] if summaries
        else ["No finished run can be backtested yet"],
        "sources": list(sources),
    }


def runs_query(fit: Sequence[Mapping]) -> str:
    return "?runs=" + ",".join(str(f["run_id"]) for f in fit)


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
