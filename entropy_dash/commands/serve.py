"""`entropy-dash dashboard` and `entropy-dash demo`: serve the Streamlit app (the demo builds its data first)."""

from __future__ import annotations

import argparse
import sys

from entropy_dash.commands.output import open_store


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from analysis.payloads import fit_payload
    from entropy_dash.commands.ingest import ingest_and_analyse
    from entropy_dash.commands.read import fit_table
    from entropy_dash.demo_data import log_runs
    from entropy_dash.simulator import demo_sweep, simulate
    from ingest.mlflow_source import MlflowSource

    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    print(f"simulating GRPO runs and logging them to MLflow at {tracking} …", file=sys.stderr)
    runs = [simulate(cfg) for cfg in demo_sweep()]
    log_runs(runs, tracking, experiment=args.experiment)  # runs already there are not logged again
    store = open_store(args)
    summary = ingest_and_analyse(store, MlflowSource(tracking, {"experiments": [args.experiment]}), args)
    print(f"ingested {summary['runs']} runs ({summary['points']} new points) into {store.url}", file=sys.stderr)
    from analysis.pipeline import current_results

    print(fit_table(fit_payload(store, current_results(store))))
    return _serve(store.url, args.port, open_browser=not args.no_browser)


def _serve(db_url: str, port: int, *, open_browser: bool) -> int:
    import os
    import subprocess
    from pathlib import Path

    import dashboard

    app = Path(dashboard.__file__).with_name("app.py")
    env = {**os.environ, "ENTROPY_DASH_DB": db_url}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
           "--server.headless", "false" if open_browser else "true", "--browser.gatherUsageStats", "false"]
    print(f"dashboard: http://localhost:{port}  (store {db_url}; Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from db import resolve_db_url

    return _serve(resolve_db_url(args.db), args.port, open_browser=not args.no_browser)
