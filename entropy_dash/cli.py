"""`entropy-dash`: the command line (contract: docs/DESIGN.md, "Command line"; names, flags and --json output
are stable; the subcommands of ``ingest`` come from the source registry, ``ingest.registry``).

This is the only module that wires sources, the store, the models and the reports together. ``--json``
output is one JSON document on stdout; logs and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from db.masking import mask_logs, mask_secrets
from entropy_dash import arguments as types
from entropy_dash.errors import EXIT_USER_ERROR, USER_ERRORS
from ingest import registry

#: command name → "module:function" (imported only when the command runs, so `--help` stays fast)
COMMANDS = {
    "init": "ingest:cmd_init", "ingest": "ingest:cmd_ingest", "analyse": "ingest:cmd_analyse",
    "runs": "read:cmd_runs", "fit": "read:cmd_fit", "backtest": "read:cmd_backtest", "scaling": "read:cmd_scaling",
    "demo": "serve:cmd_demo", "dashboard": "serve:cmd_dashboard",
    "doctor": "doctor:cmd_doctor", "report": "jobs:cmd_report", "schedule": "jobs:cmd_schedule",
}


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    module, func = COMMANDS[name].split(":")
    return getattr(import_module(f"entropy_dash.commands.{module}"), func)


def build_parser(*, with_sources: bool = True) -> argparse.ArgumentParser:
    """The parser of every command; ``with_sources=False`` leaves out the subcommands of ``ingest`` (the other
    commands start without importing the source modules)."""
    def options(default: Any) -> argparse.ArgumentParser:
        opts = types.Parser(add_help=False)
        opts.add_argument("--db", metavar="URL", default=default, help="database URL (default: $ENTROPY_DASH_DB or "
                          "sqlite:///entropy-dash.db); PostgreSQL: postgresql://user:pw@host/db")
        opts.add_argument("--debug", action="store_true", default=default, help="show tracebacks and debug logs")
        opts.add_argument("--quiet", "-q", action="store_true", default=default,
                          help="no progress bars or info logs")
        opts.add_argument("--busy-timeout", metavar="SECONDS", type=types.busy_timeout, default=default,
                          help="how long to wait for another command's lock on the store before giving up and "
                               "naming who holds it (default 60; also $ENTROPY_DASH_BUSY_TIMEOUT)")
        return opts

    # the options work before and after the command; given after it, they must not be reset by its defaults
    top, common = options(None), options(argparse.SUPPRESS)
    as_json = types.Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    keys = types.Parser(add_help=False)
    keys.add_argument("--performance-key", metavar="KEY", help="use this metric as performance for the source's "
                      "runs (remembered for later ingests; per run: the scheduler's sources.toml)")
    keys.add_argument("--entropy-key", metavar="KEY", help="use this metric as entropy for the source's runs")
    keys.add_argument("--planned-steps", metavar="N", type=types.planned_steps, help="the planned length of the source's runs in "
                      "steps, where the source does not say it (remembered; per run: sources.toml)")
    keys.add_argument("--finished", action="store_true", help="the source's runs finished (for sources that do not "
                      "say so, e.g. a CSV): only finished runs teach the replay, the cross-run model and the "
                      "backtests (remembered; per run: finished = true in sources.toml)")
    keys.add_argument("--no-analyse", action="store_true", help="store the points only; the next ingest of the "
                      "source without this flag analyses the runs that changed")

    p = types.Parser(prog="entropy-dash", parents=[top],
                                description="Policy entropy vs performance of RL fine-tuning runs: ingest, "
                                            "fit R = -a*exp(H) + b, predict the ceiling.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", parents=[common], help="create/upgrade the schema")
    s.set_defaults(command_name="init")

    s = sub.add_parser("demo", parents=[common], help="simulated GRPO runs → local MLflow → DB → fits → dashboard")
    s.add_argument("--no-browser", action="store_true", help="start the dashboard without opening a browser")
    s.add_argument("--dir", default="demo-data", help="where the demo's MLflow store goes (default: ./demo-data)")
    s.add_argument("--experiment", default="entropy-demo", help="MLflow experiment name of the demo runs")
    s.add_argument("--port", type=types.port, default=8501, help="TCP port (1-65535; default 8501)")
    s.add_argument("--host", type=types.host, default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
                   "interface — put a reverse proxy with authentication in front first)")
    s.set_defaults(command_name="demo")

    ing = sub.add_parser("ingest", parents=[common], help="pull runs from a source into the store")
    isub = ing.add_subparsers(dest="source", required=True, metavar="SOURCE")
    if with_sources:  # one subcommand per registered kind; loads the source modules (~0.5 s): `ingest` only
        registry.add_cli_commands(isub, [common, as_json, keys])
    ing.set_defaults(command_name="ingest")

    s = sub.add_parser("runs", parents=[common, as_json], help="list runs and the keys chosen for them")
    s.set_defaults(command_name="runs")
    s = sub.add_parser("analyse", parents=[common, as_json], help="(re)compute and store the analyses of stale "
                       "runs (ingest and schedule do it for the runs they change)")
    s.add_argument("--run", metavar="ID", help="one run (id or name), recomputed even when fresh")
    s.add_argument("--all", action="store_true", help="recompute every run, fresh or not")
    s.set_defaults(command_name="analyse")
    s = sub.add_parser("fit", parents=[common, as_json], help="law, benchmarks, ceiling + CI, stage, collapse, "
                       "live forecast per run")
    s.add_argument("--run", metavar="ID", help="one run (id or name)")
    s.add_argument("--robust", choices=["soft_l1", "huber"],
                   help="refit with a robust loss that sets aside outlier evaluations")
    s.add_argument("--keep-warmup", action="store_true", help="fit every evaluation: no warm-up detection")
    s.set_defaults(command_name="fit")
    s = sub.add_parser("doctor", parents=[common, as_json],
                       help="run health: every detector's finding per run (collapse, divergence, plateau, KL, "
                            "clipping, length, gradients, advantage), with evidence and advice")
    s.add_argument("--run", action="append", metavar="ID|NAME", help="only this run (repeatable)")
    s.add_argument("--experiment", action="append", metavar="NAME", help="only runs of this experiment/project "
                   "(repeatable)")
    s.add_argument("--fail-on", choices=["info", "warn", "critical"],
                   help="exit 1 when a finding reaches this severity (for CI)")
    s.set_defaults(command_name="doctor")
    s = sub.add_parser("backtest", parents=[common, as_json],
                       help="per finished run: the forecast of the final score from its first part vs what happened, "
                            "every method, coverage")
    s.add_argument("--cutoff", type=float, action="append", metavar="FRACTION",
                   help="fraction of each run's steps to forecast from (repeatable; default 0.1 0.2 0.3 0.5)")
    s.add_argument("--keep-warmup", action="store_true", help="fit every evaluation: no warm-up detection")
    s.set_defaults(command_name="backtest")
    s = sub.add_parser("schedule", parents=[common], help="ingest the sources of a config file on interval/cron "
                       "triggers, re-fit, and write reports, until stopped (SIGTERM/Ctrl-C)")
    s.add_argument("--config", required=True, metavar="FILE", help="sources.toml (format: entropy_dash/scheduler.py)")
    s.add_argument("--once", action="store_true", help="sync every source once and exit (1 if any failed)")
    s.set_defaults(command_name="schedule")
    s = sub.add_parser("scaling", parents=[common, as_json],
                       help="a, b, ceiling vs model size / algorithm / intervention, and the log-linear fit")
    s.add_argument("--group", choices=["algorithm", "intervention"], help="fit each group separately")
    s.set_defaults(command_name="scaling")
    s = sub.add_parser("report", parents=[common], help="ceiling-prediction report: self-contained HTML, Markdown, "
                       "JSON (the numbers of fit/backtest --json)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder to write report.html/.md/.json into")
    s.add_argument("--format", default="html,md,json", help="comma-separated subset of html,md,json (default: all)")
    s.add_argument("--experiment", action="append", metavar="NAME", help="only runs of this experiment/project "
                   "(repeatable)")
    s.add_argument("--run", action="append", metavar="ID|NAME", help="only this run (repeatable)")
    s.add_argument("--png", action=argparse.BooleanOptionalAction, default=None,
                   help="PNG figures via kaleido + Chromium (default: when kaleido is installed)")
    s.add_argument("--sections", type=types.whole(0, 100_000, "a number of runs"), default=12, metavar="N",
                   help="per-run sections with figures for at most N runs (default 12; above N: the highest and "
                   "lowest ceilings; 0: none); the tables list every run")
    s.set_defaults(command_name="report")
    s = sub.add_parser("dashboard", parents=[common], help="start the Streamlit dashboard (headless; opens your "
                       "browser once it answers)")
    s.add_argument("--port", type=types.port, default=8501, help="TCP port (1-65535; default 8501)")
    s.add_argument("--host", type=types.host, default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
                   "interface — put a reverse proxy with authentication in front first)")
    s.add_argument("--no-browser", action="store_true", help="do not open a browser")
    s.set_defaults(command_name="dashboard")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(with_sources="ingest" in argv).parse_args(argv)
    except types.UsageError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.busy_timeout is not None:  # the store's engines read it, in this process and the ones it starts
        from db.engine import BUSY_ENV

        os.environ[BUSY_ENV] = repr(args.busy_timeout)
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.WARNING)
    mask_logs()  # every log line, --debug included, shows URLs with their password masked
    for handler in logging.getLogger().handlers:  # and the run names and notes they quote are inert text
        handler.addFilter(_inert_record)
    logging.captureWarnings(True)
    try:
        return int(_command(args.command_name)(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            _print_traceback()
        print(f"error: {_one_line(mask_secrets(str(exc)))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `entropy-dash fit --json | head`
        sys.stderr.close()
        return 0
    except Exception:  # a bug: its traceback, with any URL's password masked
        _print_traceback()
        return 1


def _inert_record(record: logging.LogRecord) -> bool:
    """A log record's message with its control characters escaped (after masking: ``mask_logs``)."""
    from db.limits import inert_lines

    record.msg, record.args = inert_lines(record.getMessage()), None
    return True


def _print_traceback() -> None:
    print(mask_secrets(traceback.format_exc()), end="", file=sys.stderr)


def _one_line(text: str, limit: int = 2000) -> str:
    """An error message as one line of at most ``limit`` characters, control characters escaped."""
    from db.limits import inert

    text = inert(" / ".join(ln.strip() for ln in text.splitlines() if ln.strip()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
