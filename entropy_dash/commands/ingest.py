"""`entropy-dash init` and `entropy-dash ingest SOURCE …`: sources into the store, then their analyses."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from entropy_dash.commands.output import emit, open_store, progress
from entropy_dash.errors import ConfigError

log = logging.getLogger("entropy_dash")


def cmd_init(args: argparse.Namespace) -> int:
    store = open_store(args)
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


#: ``analysis.pipeline.KIND``, named here so that a sync that changed nothing finds out without importing the
#: analysis code and the models (about 2 s of start-up); tests/test_mlflow_ingest.py checks that they agree
ANALYSIS_KIND = "summary"


def ingest_and_analyse(store: Any, source: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Sync ``source``, then analyse the runs of it whose points changed since their last analysis (this
    sync's changes and any an earlier ``--no-analyse`` left). The analysis code is imported only then."""
    from ingest.sync import sync_source

    with progress(args, f"ingest {source.kind}") as bar:
        result = sync_source(store, source, progress=bar)
    analysed = 0
    key_choice = bool({"entropy_key", "performance_key"} & set(source.options))
    if getattr(args, "no_analyse", False):
        if key_choice:
            log.info("no run re-analysed (--no-analyse): the key choice reaches the analyses when the ingest is "
                     "run with it and without --no-analyse")
        elif result.changed_run_ids:
            log.info("%d changed runs not analysed (--no-analyse): the next ingest of this source without "
                     "--no-analyse analyses them", len(result.changed_run_ids))
    elif key_choice:  # a key choice changes every run's analysis
        from analysis.pipeline import refresh_analyses

        analysed = refresh_analyses(store, store.run_ids_of_source(result.source_id), force=True)
    else:
        todo = set(result.changed_run_ids)
        todo |= set(store.stale_runs(ANALYSIS_KIND)) & set(store.run_ids_of_source(result.source_id))
        if todo:
            from analysis.pipeline import refresh_analyses

            analysed = refresh_analyses(store, sorted(todo))
    for note in result.notes:
        log.warning("%s", note)
    return {"source": source.describe(), "runs": result.runs_seen, "points": result.points,
            "changed_runs": len(result.changed_run_ids), "analysed": analysed, "notes": list(result.notes)}


def cmd_ingest(args: argparse.Namespace) -> int:
    source = _make_source(args)
    source.options.update({k: v for k, v in (("entropy_key", args.entropy_key),
                                             ("performance_key", args.performance_key)) if v})
    source.check()  # an unreachable or unknown source writes nothing, not even an empty database
    store = open_store(args)
    summary = ingest_and_analyse(store, source, args)
    emit(args, summary, lambda: f"{summary['source']}: {summary['runs']} runs, {summary['points']} new points, "
                                 f"{summary['analysed']} runs re-analysed")
    return 0
