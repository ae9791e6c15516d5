"""`entropy-dash dashboard` and `entropy-dash demo`: serve the Streamlit app (the demo builds its data first)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path

import dashboard
from db import resolve_db_url
from db.masking import mask_secrets, mask_url
from entropy_dash.commands.output import open_store, progress


def cmd_demo(args: argparse.Namespace) -> int:
    # the demo's own modules (MLflow, the simulator, the analyses) load only for it: `dashboard` starts without
    from analysis.payloads import fit_payload
    from analysis.pipeline import current_results
    from entropy_dash.commands.read import fit_table
    from entropy_dash.demo_data import log_runs
    from entropy_dash.simulator import demo_sweep, simulate
    from entropy_dash.sync_workflow import sync_and_analyse
    from ingest import registry

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
    print(fit_table(fit_payload(store, current_results(store))))
    return _serve(resolve_db_url(args.db), args.port, args.host, open_browser=not args.no_browser)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def streamlit_command(host: str, port: int) -> list[str]:
    """``streamlit run dashboard/app.py`` as a service: headless always (no first-run e-mail prompt, no browser
    of its own), no usage statistics, bound to ``host``; its welcome banner (which would list network and
    external addresses, looking the latter up on the internet) is replaced by our own line; no developer
    menu (Deploy) and no watching of the source files. Run through ``dashboard.server``, which imports the
    pages' modules while the server starts (the first page after a start does not wait for them)."""
    app = Path(dashboard.__file__).with_name("app.py")
    return [sys.executable, "-m", "dashboard.server", "run", str(app), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--logger.hideWelcomeMessage", "true", "--client.toolbarMode", "viewer",
            "--server.fileWatcherType", "none"]


def local_url(host: str, port: int) -> str:
    """The URL to open on this machine: the loopback one unless bound to one other address."""
    if host in ("0.0.0.0", "::", "") or host in LOOPBACK:  # noqa: S104 - we only format it
        host = "127.0.0.1" if host != "::1" else "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _serve(db_url: str, port: int, host: str, *, open_browser: bool) -> int:
    url = local_url(host, port)
    print(f"dashboard: {url}  (store {mask_url(db_url)}; Ctrl-C to stop)", flush=True)
    if host not in LOOPBACK:
        print(f"listening on {host}: anyone who can reach this machine on port {port} can read the dashboard, "
              "which has no login of its own; put a reverse proxy with authentication in front of it (README: "
              "Run as a service)", file=sys.stderr, flush=True)
    # the store's URL (and its password) reaches Streamlit through the environment, never the command line;
    # stdin is closed, so nothing can ever wait for an answer from a terminal
    env = {**os.environ, "ENTROPY_DASH_DB": db_url}
    proc = subprocess.Popen(streamlit_command(host, port), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    # everything Streamlit prints passes through here, with any password masked
    threading.Thread(target=_relay, args=(proc, mask_secrets), daemon=True).start()
    if open_browser:
        threading.Thread(target=_open_when_ready, args=(url, proc), daemon=True).start()

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached Streamlit too: let it stop, then return
                forward(signal.SIGINT, None)
        return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
    finally:
        signal.signal(signal.SIGTERM, previous)


def _relay(proc, mask) -> None:  # noqa: ANN001 - subprocess.Popen, callable
    for line in proc.stdout:
        sys.stderr.write(mask(line))
        sys.stderr.flush()


def _open_when_ready(url: str, proc) -> None:  # noqa: ANN001 - subprocess.Popen
    """Open ``url`` in the user's browser once the server answers its health check (never before)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        return
    try:
        opened = webbrowser.open(url)
    except Exception:  # noqa: BLE001 - no browser is not an error
        opened = False
    if not opened:
        print(f"no browser found here: open {url} yourself", file=sys.stderr, flush=True)


def cmd_dashboard(args: argparse.Namespace) -> int:
    return _serve(resolve_db_url(args.db), args.port, args.host, open_browser=not args.no_browser)
