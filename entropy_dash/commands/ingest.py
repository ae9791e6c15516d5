"""`entropy-dash init` and `entropy-dash ingest SOURCE …`: sources into the store, then their analyses."""

from __future__ import annotations

import argparse
import logging
import sys

from entropy_dash.commands.output import emit, open_store, progress
from entropy_dash.errors import ConfigError
from entropy_dash.sync_workflow import SyncSummary, sync_and_analyse
from ingest import registry
from ingest.errors import PartialIngest

log = logging.getLogger("entropy_dash")


def cmd_init(args: argparse.Namespace) -> int:
    store = open_store(args)
    print(f"schema ready at {store.url}", file=sys.stderr)
    return 0


def make_source(args: argparse.Namespace):  # noqa: ANN202 - ingest.base.Source
    """The source named by ``entropy-dash ingest <kind> …`` (the kinds and their arguments: ``ingest.registry``),
    with the analysis settings common to every kind."""
    try:
        kind, uri, options = registry.from_cli(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options.update({k: v for k, v in (("entropy_key", args.entropy_key), ("performance_key", args.performance_key),
                                      ("planned_steps", args.planned_steps),
                                      ("finished", getattr(args, "finished", False))) if v})
    return registry.build(kind, uri, options)


def cmd_ingest(args: argparse.Namespace) -> int:
    source = make_source(args)
    source.check()  # an unreachable or unknown source writes nothing, not even an empty database
    store = open_store(args)
    try:
        with progress(args, f"ingest {source.kind}") as bar:
            summary = sync_and_analyse(store, source, progress=bar, analyse=not args.no_analyse)
    except PartialIngest as exc:  # the good files are in: say what was skipped, then fail
        summary = exc.summary  # type: ignore[attr-defined]
        _report(args, summary)
        for why in summary.result.failures:
            print(f"skipped: {why}", file=sys.stderr)
        raise
    _report(args, summary)
    return 0


def _report(args: argparse.Namespace, summary: SyncSummary) -> None:
    for note in summary.result.notes:
        log.warning("%s", note)
    emit(args, summary.to_dict(), summary.text)


def cmd_analyse(args: argparse.Namespace) -> int:
    """Recompute and store the analyses of stale runs (every run with --all, or one with --run)."""
    from analysis.pipeline import refresh_analyses  # the models (~1 s): `init` and `ingest` may not need them

    store = open_store(args)
    ids = None
    if args.run is not None:
        runs = store.runs_frame()
        match = runs[(runs["id"].astype(str) == args.run) | (runs["name"] == args.run)]
        if match.empty:
            raise ConfigError(f"no run {args.run!r} in the store: see `entropy-dash runs`")
        ids = [int(i) for i in match["id"]]
    n = refresh_analyses(store, ids, force=args.all or ids is not None)
    emit(args, {"analysed": n}, lambda: f"{n} run{'s' if n != 1 else ''} analysed and stored")
    return 0
