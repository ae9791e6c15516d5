"""`entropy-dash`: the command line (contract in docs/DESIGN.md; names, flags and --json output are stable).

This is the only module that wires sources, the store, the models and the reports together. ``--json``
output is one JSON document on stdout; logs and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

from entropy_dash.errors import ConfigError, EntropyDashError
from entropy_dash.payloads import backtest_payload, fit_payload, runs_payload, scaling_payload

log = logging.getLogger("entropy_dash")


# ---------------------------------------------------------------------------- helpers
def _store(args: argparse.Namespace, *, create: bool = True):  # noqa: ANN202 - db.Store, imported lazily
    from db import Store

    return Store.open(args.db, create=create)


def _emit(args: argparse.Namespace, payload: Any, text: Callable[[], str]) -> None:
    if getattr(args, "json", False):
        json.dump(_clean(payload), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text() + "\n")


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf → null (the output stays strict JSON)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@contextmanager
def _progress(args: argparse.Namespace, label: str):  # noqa: ANN202 - yields a progress callback
    """A rich progress bar on stderr (silenced by --quiet or when stderr is not a terminal... or --json)."""
    if args.quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[run]}"), TimeElapsedColumn(), console=console,
                  transient=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None, run="")

        def update(done: int, total: int | None, run: str) -> None:
            bar.update(task, completed=done, total=total, run=run[:40])

        yield update


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------- commands
def cmd_init(args: argparse.Namespace) -> int:
    store = _store(args)
    print(f"schema ready at {store.url}", file=sys.stderr)
    return 0


def _make_source(args: argparse.Namespace):  # noqa: ANN202 - ingest.base.Source
    from entropy_dash.scheduler import build_source

    if args.source == "mlflow":
        opts: dict[str, Any] = {"experiments": args.experiment or []}
        if args.all_keys:
            opts["all_keys"] = True
        return build_source("mlflow", args.uri, opts)
    if args.source == "wandb":
        if bool(args.project) == bool(args.offline):
            raise ConfigError("ingest wandb takes ENTITY/PROJECT or --offline DIR (one of the two)")
        if args.offline:
            return build_source("wandb-offline", _abspath(args.offline))
        if "/" not in args.project:
            raise ConfigError(f"W&B project must be ENTITY/PROJECT, got {args.project!r}")
        return build_source("wandb", args.project)
    if args.source == "tensorboard":
        return build_source("tensorboard", _abspath(args.dir))
    return build_source("file", _abspath(args.path))


def _abspath(p: str) -> str:
    from pathlib import Path

    return str(Path(p).expanduser().resolve())


def ingest_and_analyse(store: Any, source: Any, args: argparse.Namespace) -> dict[str, Any]:
    from entropy_dash.analysis import refresh_analyses
    from ingest.sync import sync_source

    with _progress(args, f"ingest {source.kind}") as progress:
        result = sync_source(store, source, progress=progress)
    if {"entropy_key", "performance_key"} & set(source.options):  # a key choice changes every run's analysis
        analysed = refresh_analyses(store, store.run_ids_of_source(result.source_id), force=True)
    else:
        analysed = refresh_analyses(store, result.changed_run_ids) if result.changed_run_ids else 0
    for note in result.notes:
        log.warning("%s", note)
    return {"source": source.describe(), "runs": result.runs_seen, "points": result.points,
            "changed_runs": len(result.changed_run_ids), "analysed": analysed, "notes": list(result.notes)}


def cmd_ingest(args: argparse.Namespace) -> int:
    source = _make_source(args)
    source.options.update({k: v for k, v in (("entropy_key", args.entropy_key),
                                             ("performance_key", args.performance_key)) if v})
    source.check()  # an unreachable or unknown source writes nothing, not even an empty database
    store = _store(args)
    summary = ingest_and_analyse(store, source, args)
    _emit(args, summary, lambda: f"{summary['source']}: {summary['runs']} runs, {summary['points']} new points, "
                                 f"{summary['analysed']} runs re-analysed")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    payload = runs_payload(_store(args, create=False))

    def text() -> str:
        if not payload:
            return "no runs yet: ingest some with `entropy-dash ingest …` or try `entropy-dash demo`"
        lines = [f"{'id':>4}  {'run':40}  {'entropy key':22}  {'performance key':38}  {'H pts':>6}  {'R pts':>6}  last"]
        for r in payload:
            lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {(r['entropy_key'] or '–')[:22]:22}  "
                         f"{(r['performance_key'] or '–')[:38]:38}  {r['n_entropy']:>6}  {r['n_performance']:>6}  "
                         f"{_fmt(r['last_step'])}" + (f"   ({r['reason']})" if r["reason"] else ""))
        return "\n".join(lines)

    _emit(args, payload, text)
    return 0


def fit_table(payload: list[dict[str, Any]]) -> str:
    if not payload:
        return "no runs yet: ingest some with `entropy-dash ingest …` or try `entropy-dash demo`"
    lines = [f"{'id':>4}  {'run':40}  {'a':>8}  {'b':>8}  {'ceiling':>8}  {'95% CI':>17}  {'R²':>6}  {'n':>4}"]
    for r in payload:
        if r["status"] != "ok":
            lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {r['status']}: {r['reason']}")
            continue
        ci = r["ceiling_ci"]
        lines.append(f"{r['run_id']:>4}  {r['run'][:40]:40}  {_fmt(r['a'], 4):>8}  {_fmt(r['b'], 4):>8}  "
                     f"{_fmt(r['ceiling'], 4):>8}  {_fmt(ci[0], 3):>8}–{_fmt(ci[1], 3):<8}  {_fmt(r['r2']):>6}  "
                     f"{r['n']:>4}" + (f"  ({r['n_excluded']} outliers set aside)" if r["n_excluded"] else "")
                     + ("  ⚠ " + "; ".join(r["flags"]) if r["flags"] else ""))
    return "\n".join(lines)


def cmd_fit(args: argparse.Namespace) -> int:
    payload = fit_payload(_store(args, create=False), args.run, args.robust)
    _emit(args, payload, lambda: fit_table(payload))
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    payload = backtest_payload(_store(args, create=False), args.cutoff)

    def text() -> str:
        if not payload["runs"]:
            return "no run can be backtested yet" + "".join(f"\n  {s['run']}: {s['reason']}" for s in payload["skipped"])
        methods = list(payload["runs"][0]["baselines"])
        head = f"{'run':40}  {'observed':>8}  " + "  ".join(f"{m:>11}" for m in methods)
        lines = [f"backtest: forecast from the first {payload['cutoff']:.0%} of each run vs its final score "
                 "(mean of the last 3 evaluations); error in points", head]
        for r in payload["runs"]:
            cells = "  ".join(f"{r['baselines'][m]['predicted']:.3f}({100 * r['baselines'][m]['error']:+.1f})"
                              for m in methods)
            lines.append(f"{r['run'][:40]:40}  {r['observed_final']:>8.3f}  {cells}")
        lines += [f"  skipped {s['run']}: {s['reason']}" for s in payload["skipped"]]
        summary = payload["summary"]
        lines.append("MAE (pt): " + ", ".join(f"{m} {100 * v['mae']:.2f}" for m, v in summary["scores"].items()))
        lines.append(summary["sentence"])
        return "\n".join(lines)

    _emit(args, payload, text)
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    payload = scaling_payload(_store(args, create=False), args.group)

    def text() -> str:
        lines = [f"{'run':40}  {'size (B)':>8}  {'algorithm':10}  {'intervention':14}  {'a':>7}  {'b':>7}  {'ceiling':>7}"]
        for r in payload["runs"]:
            lines.append(f"{r['run'][:40]:40}  {_fmt(r['size'], 2):>8}  {(r['algorithm'] or '–')[:10]:10}  "
                         f"{r['intervention'][:14]:14}  {r['a']:>7.4f}  {r['b']:>7.4f}  {r['ceiling']:>7.4f}")
        lines.append(payload["note"] + ":")
        for f in payload["fits"]:
            grp = f"[{f['group']}] " if f["group"] is not None else ""
            if "reason" in f:
                lines.append(f"  {grp}{f['coefficient']}: {f['reason']}")
            else:
                lines.append(f"  {grp}{f['coefficient']} = {f['k']:.4f}·ln(size) + {f['c']:.4f}  "
                             f"(k ± {f['k_se']:.4f}, R² {f['r2']:.3f}, n {f['n']})")
        return "\n".join(lines)

    _emit(args, payload, text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from entropy_dash.demo_data import log_runs
    from entropy_dash.simulator import demo_sweep, simulate
    from ingest.mlflow_source import MlflowSource

    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    print(f"simulating GRPO runs and logging them to MLflow at {tracking} …", file=sys.stderr)
    runs = [simulate(cfg) for cfg in demo_sweep()]
    log_runs(runs, tracking, experiment=args.experiment)  # runs already there are not logged again
    store = _store(args)
    summary = ingest_and_analyse(store, MlflowSource(tracking, {"experiments": [args.experiment]}), args)
    print(f"ingested {summary['runs']} runs ({summary['points']} new points) into {store.url}", file=sys.stderr)
    print(fit_table(fit_payload(store)))
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


def cmd_report(args: argparse.Namespace) -> int:
    from dashboard.report import write_report

    written = write_report(_store(args, create=False), args.out, args.format.split(","),
                           experiments=args.experiment, runs=args.run, png=args.png)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from entropy_dash import scheduler

    config = scheduler.load_config(args.config, require_trigger=not args.once)
    return scheduler.run(config, db=args.db, once=args.once)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    def options(default: Any) -> argparse.ArgumentParser:
        opts = argparse.ArgumentParser(add_help=False)
        opts.add_argument("--db", metavar="URL", default=default, help="database URL (default: $ENTROPY_DASH_DB or "
                          "sqlite:///entropy-dash.db); PostgreSQL: postgresql://user:pw@host/db")
        opts.add_argument("--debug", action="store_true", default=default, help="show tracebacks and debug logs")
        opts.add_argument("--quiet", "-q", action="store_true", default=default,
                          help="no progress bars or info logs")
        return opts

    # the options work before and after the command; given after it, they must not be reset by its defaults
    top, common = options(None), options(argparse.SUPPRESS)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    keys = argparse.ArgumentParser(add_help=False)
    keys.add_argument("--performance-key", metavar="KEY", help="use this metric as performance for the source's "
                      "runs (remembered for later ingests; per run: the scheduler's sources.toml)")
    keys.add_argument("--entropy-key", metavar="KEY", help="use this metric as entropy for the source's runs")

    p = argparse.ArgumentParser(prog="entropy-dash", parents=[top],
                                description="Policy entropy vs performance of RL fine-tuning runs: ingest, "
                                            "fit R = -a*exp(H) + b, predict the ceiling.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", parents=[common], help="create/upgrade the schema")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("demo", parents=[common], help="simulated GRPO runs → local MLflow → DB → fits → dashboard")
    s.add_argument("--no-browser", action="store_true", help="start the dashboard without opening a browser")
    s.add_argument("--dir", default="demo-data", help="where the demo's MLflow store goes (default: ./demo-data)")
    s.add_argument("--experiment", default="entropy-demo", help="MLflow experiment name of the demo runs")
    s.add_argument("--port", type=int, default=8501)
    s.set_defaults(func=cmd_demo)

    ing = sub.add_parser("ingest", parents=[common], help="pull runs from a source into the store")
    isub = ing.add_subparsers(dest="source", required=True, metavar="SOURCE")
    s = isub.add_parser("mlflow", parents=[common, as_json, keys], help="runs of an MLflow tracking server or store URI")
    s.add_argument("uri", help="http://host:5000 or a store URI such as sqlite:///path/mlflow.db")
    s.add_argument("--experiment", action="append", metavar="NAME", help="experiment name (repeatable; default all)")
    s.add_argument("--all-keys", action="store_true", help="fetch every metric, not only the recognised ones")
    s = isub.add_parser("wandb", parents=[common, as_json, keys], help="a W&B project (cloud API) or offline run folders")
    s.add_argument("project", nargs="?", metavar="ENTITY/PROJECT")
    s.add_argument("--offline", metavar="DIR", help="folder of offline runs (wandb/offline-run-*)")
    s = isub.add_parser("tensorboard", parents=[common, as_json, keys], help="TensorBoard event folders (recursive)")
    s.add_argument("dir")
    s = isub.add_parser("file", parents=[common, as_json, keys],
                        help="csv, jsonl, verl console log, TRL trainer_state.json (a file or a folder)")
    s.add_argument("path")
    ing.set_defaults(func=cmd_ingest)

    s = sub.add_parser("runs", parents=[common, as_json], help="list runs and the keys chosen for them")
    s.set_defaults(func=cmd_runs)
    s = sub.add_parser("fit", parents=[common, as_json], help="law, ceiling + CI per run")
    s.add_argument("--run", metavar="ID", help="one run (id or name)")
    s.add_argument("--robust", choices=["soft_l1", "huber"],
                   help="refit with a robust loss that sets aside outlier evaluations")
    s.set_defaults(func=cmd_fit)
    s = sub.add_parser("backtest", parents=[common, as_json],
                       help="per-run predicted vs observed final score + baselines, and the aggregate")
    s.add_argument("--cutoff", type=float, default=0.3, help="fraction of each run's steps to forecast from")
    s.set_defaults(func=cmd_backtest)
    s = sub.add_parser("schedule", parents=[common], help="ingest the sources of a config file on interval/cron "
                       "triggers, re-fit, and write reports, until stopped (SIGTERM/Ctrl-C)")
    s.add_argument("--config", required=True, metavar="FILE", help="sources.toml (format: entropy_dash/scheduler.py)")
    s.add_argument("--once", action="store_true", help="sync every source once and exit (1 if any failed)")
    s.set_defaults(func=cmd_schedule)
    s = sub.add_parser("scaling", parents=[common, as_json],
                       help="a, b, ceiling vs model size / algorithm / intervention, and the log-linear fit")
    s.add_argument("--group", choices=["algorithm", "intervention"], help="fit each group separately")
    s.set_defaults(func=cmd_scaling)
    s = sub.add_parser("report", parents=[common], help="ceiling-prediction report: self-contained HTML, Markdown, "
                       "JSON (the numbers of fit/backtest --json)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder to write report.html/.md/.json into")
    s.add_argument("--format", default="html,md,json", help="comma-separated subset of html,md,json (default: all)")
    s.add_argument("--experiment", action="append", metavar="NAME", help="only runs of this experiment/project "
                   "(repeatable)")
    s.add_argument("--run", action="append", metavar="ID|NAME", help="only this run (repeatable)")
    s.add_argument("--png", action=argparse.BooleanOptionalAction, default=None,
                   help="PNG figures via kaleido + Chromium (default: when kaleido is installed)")
    s.set_defaults(func=cmd_report)
    s = sub.add_parser("dashboard", parents=[common], help="start the Streamlit dashboard")
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--no-browser", action="store_true", help="do not open a browser")
    s.set_defaults(func=cmd_dashboard)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except EntropyDashError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `entropy-dash fit --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
