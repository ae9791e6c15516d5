"""Sync a source, then analyse what changed: the one workflow behind ``entropy-dash ingest``, each job of
``entropy-dash schedule`` and the dashboard's "sync now" (which runs ``entropy-dash ingest``).

After ``ingest.sync.sync_source`` has written the source's new points, the runs of that source whose stored
analysis is stale (this sync's changes, any an earlier ``--no-analyse`` or a stopped job left, an older
analysis version) are analysed; every run of the source is, when the source's options changed (a new key
choice, warm-up, range or planned length changes every analysis of it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analysis.version import ANALYSIS_VERSION, KIND
from ingest.errors import PartialIngest
from ingest.sync import Progress, SyncResult, sync_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncSummary:
    """What one sync did: the sync engine's result and how many runs were analysed."""

    source: str  # the source's description (kind and URI, password masked)
    result: SyncResult
    analysed: int
    options_changed: bool

    def to_dict(self) -> dict[str, Any]:
        """The ``ingest --json`` document."""
        r = self.result
        return {"source": self.source, "runs": r.runs_seen, "points": r.points,
                "changed_runs": len(r.changed_run_ids), "analysed": self.analysed, "notes": list(r.notes),
                "skipped": list(r.failures), "unchanged_files": r.unchanged_files}

    def text(self) -> str:
        r = self.result
        return (f"{self.source}: {r.runs_seen} runs, {r.points} new points, {self.analysed} runs re-analysed"
                + (f", {r.unchanged_files} files unchanged since the last sync (not read)"
                   if r.unchanged_files else ""))


def sync_and_analyse(store: Any, source: Any, *, progress: Progress | None = None, analyse: bool = True,
                     stopped: Callable[[], bool] = lambda: False) -> SyncSummary:
    """Sync ``source`` (an ``ingest.base.Source``) into ``store``, then analyse the source's stale runs.

    ``analyse=False`` stores the points only (``ingest --no-analyse``); ``stopped()`` true after the sync
    (the scheduler got a signal) skips the analyses too: the runs stay stale and the next sync analyses
    them. A ``PartialIngest`` (some files skipped) is raised again only after the good runs are written and
    analysed, with this summary in ``.summary``."""
    before = store.source_options(source.kind, source.uri)
    partial = None
    try:
        result = sync_source(store, source, progress=progress)
    except PartialIngest as exc:
        partial, result = exc, exc.result
    options_changed = before is not None and store.source_options(source.kind, source.uri) != before
    analysed = 0
    if not analyse or stopped():
        if not analyse and options_changed:
            log.info("no run re-analysed (--no-analyse): the new options reach the analyses with "
                     "`entropy-dash analyse --all`")
        elif not analyse and result.changed_run_ids:
            log.info("%d changed runs not analysed (--no-analyse): the next ingest of this source without "
                     "--no-analyse analyses them", len(result.changed_run_ids))
    else:
        analysed = _analyse(store, result, force=options_changed)
    summary = SyncSummary(source.describe(), result, analysed, options_changed)
    if partial is not None:
        partial.summary = summary  # type: ignore[attr-defined]
        raise partial
    return summary


def _analyse(store: Any, result: SyncResult, *, force: bool) -> int:
    source_runs = store.run_ids_of_source(result.source_id)
    todo = source_runs if force else sorted(
        set(result.changed_run_ids) | (set(store.stale_runs(KIND, ANALYSIS_VERSION)) & set(source_runs)))
    if not todo:
        return 0
    from analysis.pipeline import refresh_analyses  # only when there is work: it imports the models (~1 s)

    return refresh_analyses(store, todo, force=force)
