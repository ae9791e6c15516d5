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
        source = build_source("tensorboard", _abspath(args.dir))
    else:
        source = build_source("file", _abspath(args.path))
        source.allow_empty = args.allow_empty
        source.strict = args.strict
    source.fail_fast = args.fail_fast
    return source


def _abspath(p: str) -> str:
    from pathlib import Path

    from ingest.errors import IngestError

    try:
        return str(Path(p).expanduser().resolve())
    except (RuntimeError, OSError) as exc:  # Python 3.11: RuntimeError on a symlink loop
        why = "a symlink loop" if isinstance(exc, RuntimeError) else (exc.strerror or str(exc))
        raise IngestError(f"{p}: cannot resolve the path ({why})") from None


def ingest_and_analyse(store: Any, source: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Sync ``source``, then analyse the runs of it that changed since their last analysis (this sync's changes,
    any an earlier ``--no-analyse`` left, an older analysis version); the analysis code is imported only then.
    A ``PartialIngest`` (some files skipped) is raised again only after the good runs are written and analysed,
    with the summary in ``.summary``."""
    from analysis.version import ANALYSIS_VERSION, KIND
    from ingest.errors import PartialIngest
    from ingest.sync import sync_source

    before = store.source_options(source.kind, source.uri)
    partial = None
    with progress(args, f"ingest {source.kind}") as bar:
        try:
            result = sync_source(store, source, progress=bar)
        except PartialIngest as exc:
            partial, result = exc, exc.result
    analysed = 0
    # a new key choice, warm-up, range or planned length changes every analysis of the source
    options_changed = before is not None and store.source_options(source.kind, source.uri) != before
    if getattr(args, "no_analyse", False):
        if options_changed:
            log.info("no run re-analysed (--no-analyse): the new options reach the analyses with "
                     "`entropy-dash analyse --all`")
        elif result.changed_run_ids:
            log.info("%d changed runs not analysed (--no-analyse): the next ingest of this source without "
                     "--no-analyse analyses them", len(result.changed_run_ids))
    else:
        source_runs = store.run_ids_of_source(result.source_id)
        todo = source_runs if options_changed else sorted(
            set(result.changed_run_ids) | (set(store.stale_runs(KIND, ANALYSIS_VERSION)) & set(source_runs)))
        if todo:  # imported only now: the analyses' imports take a while
            from analysis.pipeline import refresh_analyses

            analysed = refresh_analyses(store, todo, force=options_changed)
    for note in result.notes:
        log.warning("%s", note)
    summary = {"source": source.describe(), "runs": result.runs_seen, "points": result.points,
               "changed_runs": len(result.changed_run_ids), "analysed": analysed, "notes": list(result.notes),
               "skipped": list(result.failures), "unchanged_files": result.unchanged_files}
    if partial is not None:
        partial.summary = summary
        raise partial
    return summary


def _summary_text(summary: dict[str, Any]) -> str:
    unchanged = summary.get("unchanged_files")
    return (f"{summary['source']}: {summary['runs']} runs, {summary['points']} new points, "
            f"{summary['analysed']} runs re-analysed"
            + (f", {unchanged} files unchanged since the last sync (not read)" if unchanged else ""))


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.errors import PartialIngest

    source = _make_source(args)
    source.options.update({k: v for k, v in (("entropy_key", args.entropy_key),
                                             ("performance_key", args.performance_key),
                                             ("planned_steps", args.planned_steps),
                                             ("finished", getattr(args, "finished", False))) if v})
    source.check()  # an unreachable or unknown source writes nothing, not even an empty database
    store = open_store(args)
    try:
        summary = ingest_and_analyse(store, source, args)
    except PartialIngest as exc:  # the good files are in: say what was skipped, then fail
        summary = exc.summary  # type: ignore[attr-defined]
        emit(args, summary, lambda: _summary_text(summary))
        for why in summary["skipped"]:
            print(f"skipped: {why}", file=sys.stderr)
        raise
    emit(args, summary, lambda: _summary_text(summary))
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    """Recompute and store the analyses of stale runs (every run with --all, or one with --run)."""
    from analysis.pipeline import refresh_analyses

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
