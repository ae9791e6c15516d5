"""`entropy-dash dashboard` and `entropy-dash demo`: serve the Streamlit app (the demo builds its data first)."""

from __future__ import annotations

import argparse
import sys

from entropy_dash.commands.output import open_store
from entropy_dash.errors import ConfigError


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from analysis.payloads import fit_payload
    from analysis.pipeline import current_results
    from db import resolve_db_url
    from db.limits import inert_lines
    from entropy_dash.commands.output import progress
    from entropy_dash.commands.read import fit_table
    from entropy_dash.demo_data import log_runs
    from entropy_dash.simulator import demo_sweep, simulate
    from entropy_dash.sync_workflow import sync_and_analyse
    from ingest import registry

    check_can_listen(args.host, args.port)  # before the simulation, not after it
    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    print(f"simulating GRPO runs and logging them to MLflow at {tracking} …", file=sys.stderr)
    runs = [simulate(cfg) for cfg in demo_sweep()]
    log_runs(runs, tracking, experiment=args.experiment)  # runs already there are not logged again
    store = open_store(args)
    with progress(args, "ingest mlflow") as bar:
        summary = sync_and_analyse(store, registry.build("mlflow", tracking, {"experiments": [args.experiment]}),
                                   progress=bar)
    print(f"ingested {summary.result.runs_seen} runs ({summary.result.points} new points) into {store.url}",
          file=sys.stderr)
    print(inert_lines(fit_table(fit_payload(store, current_results(store)))))
    return _serve(resolve_db_url(args.db), args.port, args.host, open_browser=not args.no_browser)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def streamlit_command(host: str, port: int) -> list[str]:
    """``streamlit run dashboard/app.py`` as a service: headless always (no first-run e-mail prompt, no browser
    of its own), no usage statistics, bound to ``host``; its welcome banner (which would list network and
    external addresses, looking the latter up on the internet) is replaced by our own line; no developer
    menu (Deploy), no watching of the source files, and a page that fails shows its error's type only (never a
    traceback with the install's paths). Run through ``dashboard.server``, which imports the pages' modules
    while the server starts (the first page after a start does not wait for them)."""
    from pathlib import Path

    import dashboard

    app = Path(dashboard.__file__).with_name("app.py")
    return [sys.executable, "-m", "dashboard.server", "run", str(app), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--logger.hideWelcomeMessage", "true", "--client.toolbarMode", "viewer",
            "--server.fileWatcherType", "none", "--client.showErrorDetails", "type"]


def local_url(host: str, port: int) -> str:
    """The URL to open on this machine: the loopback one unless bound to one other address."""
    if host in ("0.0.0.0", "::", "") or host in LOOPBACK:  # noqa: S104 - we only format it
        host = "127.0.0.1" if host != "::1" else "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _serve(db_url: str, port: int, host: str, *, open_browser: bool) -> int:
    import os
    import signal
    import subprocess
    import threading

    from db.masking import mask_secrets, mask_url

    url = local_url(host, port)
    check_can_listen(host, port)  # a taken port or a foreign address: one line, before anything starts
    # the store's URL (and its password) reaches Streamlit through the environment, never the command line;
    # stdin is closed, so nothing can ever wait for an answer from a terminal
    env = {**os.environ, "ENTROPY_DASH_DB": db_url}
    proc = subprocess.Popen(streamlit_command(host, port), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    # everything Streamlit prints passes through here, with any password masked
    said: list[str] = []
    threading.Thread(target=_relay, args=(proc, mask_secrets, said), daemon=True).start()

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        if not _wait_ready(url, proc):  # the address is printed only once the server listens on it
            proc.wait()
            last = next((ln.strip() for ln in reversed(said) if ln.strip()), "no output")
            raise ConfigError(f"the dashboard could not start on {host}:{port}: {last}")
        print(f"dashboard: {url}  (store {mask_url(db_url)}; Ctrl-C to stop)", flush=True)
        if host not in LOOPBACK:
            print(f"listening on {host}: anyone who can reach this machine on port {port} can read the dashboard, "
                  "which has no login of its own; put a reverse proxy with authentication in front of it (README: "
                  "Run as a service)", file=sys.stderr, flush=True)
        if open_browser:
            threading.Thread(target=_open_browser, args=(url,), daemon=True).start()
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached Streamlit too: let it stop, then return
                forward(signal.SIGINT, None)
        return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` once (as the server will, with SO_REUSEADDR): a port another process listens on,
    or an address that is not this machine's, is a ``ConfigError`` naming it."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror} (give an address of this machine, e.g. "
                          "127.0.0.1 or 0.0.0.0)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is taken by another program: stop it, or give another "
                                  "--port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _relay(proc, mask, said: list[str]) -> None:  # noqa: ANN001 - subprocess.Popen, callable
    for line in proc.stdout:
        line = mask(line)
        said[:] = [*said[-20:], line]
        sys.stderr.write(line)
        sys.stderr.flush()


def _wait_ready(url: str, proc, timeout: float = 300) -> bool:  # noqa: ANN001 - subprocess.Popen
    """Wait until the server at ``url`` answers its health check: True, or False when it ended first."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return proc.poll() is None


def _open_browser(url: str) -> None:
    """Open ``url`` in the user's browser (the server answers already)."""
    import webbrowser

    try:
        opened = webbrowser.open(url)
    except Exception:  # noqa: BLE001 - no browser is not an error
        opened = False
    if not opened:
        print(f"no browser found here: open {url} yourself", file=sys.stderr, flush=True)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from db import resolve_db_url

    return _serve(resolve_db_url(args.db), args.port, args.host, open_browser=not args.no_browser)
