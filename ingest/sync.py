"""The sync engine: read a source, write new points run by run, keep a log, retry connection errors.

Runs are written in batches, each batch in one transaction (run rows, new/changed points, watermarks, data
versions, file read positions; ``Batch``: for files up to 2,000 runs, 500,000 points or 2 s of reading,
for other sources one run), so a sync
killed at any moment leaves every run either as before or fully updated; rerunning it fetches from the
watermarks and writes exactly what is missing. A ``sync_log`` row records every job: start, end, runs,
points and the error, if any.

Failures stay with their part: a file (or run folder) that cannot be read, or a run the store refuses (a
key over the length limit), is skipped and named; the other runs are written, and then the job ends with
``PartialIngest`` (an ``IngestError``) listing them — unless the source is ``fail_fast``. Values the fits
cannot use are stored as missing and named in the run's notes (``ingest.values``). File sources resume from
their saved read positions (``Store.file_states``), which are written with the points they gave.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from time import monotonic

from db import Store
from db.errors import RecordError, StoreError
from db.limits import check_run, one_line
from db.records import RunData
from db.store import WriteResult
from ingest.base import Source
from ingest.errors import IngestError, PartialIngest, SourceUnavailable
from ingest.keys import resolve_roles
from ingest.values import screen

log = logging.getLogger(__name__)

#: progress callback: (runs done, runs total or None, run name)
Progress = Callable[[int, int | None, str], None]


@dataclass(frozen=True)
class SyncResult:
    source_id: int
    log_id: int
    runs_seen: int
    points: int
    changed_run_ids: tuple[int, ...]
    notes: tuple[str, ...] = field(default=())
    #: parts skipped (files, run folders, runs), each "what: why"
    failures: tuple[str, ...] = field(default=())
    #: files not opened because they did not change since the last sync
    unchanged_files: int = 0


def sync_source(
    store: Store,
    source: Source,
    *,
    progress: Progress | None = None,
    retries: int = 3,
    backoff: float = 1.0,
) -> SyncResult:
    """Bring the store up to date with ``source``; raises ``IngestError`` (logged in sync_log) on failure.

    Connection errors (``SourceUnavailable``) are retried ``retries`` times with exponential backoff; each
    retry resumes from the watermarks, so runs already written are not fetched again.
    """
    source_id = store.source_id(source.kind, source.uri, _stored_options(source))
    log_id = store.start_sync(source_id)
    overrides = dict(source.options.get("roles") or {})
    entropy_key = source.options.get("entropy_key")
    runs_seen, points, changed, notes, failures = 0, 0, [], [], []
    attempt = 0
    while True:
        try:
            if source.tails_files:
                source.known_files = store.file_states(source_id)
            total = source.count_runs()
            failed: set[str | None] = set()  # files one of whose runs was refused: their offsets stay put
            per_batch = BATCH_RUNS if source.tails_files else 1
            batch = Batch(per_batch)
            for data in source.iter_runs(store.watermarks(source_id)):
                roles = resolve_roles(data.all_keys(), overrides)
                data = screen(data, {**roles, **({entropy_key: "entropy"} if entropy_key else {})})
                if data.file_states and data.origin in failed:
                    data = replace(data, file_states=())
                try:
                    check_run(data)
                except RecordError as exc:
                    if source.fail_fast:
                        raise
                    failures.append(str(exc))
                    failed.add(data.origin)
                    continue
                batch.add(data, roles)
                if batch.full():
                    done = _write(store, source_id, batch, source.fail_fast, failures, failed)
                    batch = Batch(per_batch)
                    runs_seen, points = _count(done, runs_seen, points, changed, notes)
                    _report(progress, runs_seen, total, done)
            done = _write(store, source_id, batch, source.fail_fast, failures, failed)
            runs_seen, points = _count(done, runs_seen, points, changed, notes)
            _report(progress, runs_seen, total, done)
            store.save_file_states(source_id, source.leftover_states)
            break
        except SourceUnavailable as exc:
            attempt += 1
            if attempt > retries:
                store.finish_sync(log_id, runs=runs_seen, points=points, error=str(exc))
                raise
            wait = backoff * 2 ** (attempt - 1)
            log.warning("%s — retry %d/%d in %.0f s", exc, attempt, retries, wait)
            time.sleep(wait)
            fresh = type(source)(source.uri, source.options)  # fresh connection state
            fresh.fail_fast = source.fail_fast
            source = fresh
        except (IngestError, StoreError) as exc:
            store.finish_sync(log_id, runs=runs_seen, points=points, error=str(exc))
            raise
        except Exception as exc:  # an unexpected failure is still logged, then surfaces as IngestError
            store.finish_sync(log_id, runs=runs_seen, points=points, error=f"{type(exc).__name__}: {exc}")
            raise IngestError(one_line(f"ingest of {source.describe()} failed: {type(exc).__name__}: {exc}",
                                       500)) from exc
    failures = [*source.failures, *failures]
    result = SyncResult(source_id, log_id, runs_seen, points, tuple(dict.fromkeys(changed)),
                        (*notes, *source.notices), tuple(failures), int(getattr(source, "unchanged", 0)))
    if failures:
        store.finish_sync(log_id, runs=runs_seen, points=points,
                          error=f"{len(failures)} skipped: " + " | ".join(failures))
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise PartialIngest(one_line(f"{source.describe()}: {len(failures)} {source.part}(s) skipped, the others "
                                     f"are in the store: {failures[0]}{more}", 1000), result)
    store.finish_sync(log_id, runs=runs_seen, points=points)
    return result


#: a batch of runs is written in one transaction when it holds this many runs or points, or is this old
BATCH_RUNS = 2_000
BATCH_POINTS = 500_000
BATCH_SECONDS = 2.0


class Batch:
    """Runs read but not yet written: many small runs of a file cost one transaction, not one each. Runs of
    other sources (each fetched over the network) are written one by one, as they come (``runs=1``)."""

    def __init__(self, runs: int = BATCH_RUNS) -> None:
        self.items: list[tuple[RunData, dict]] = []
        self.points = 0
        self.runs = runs
        self.started = monotonic()

    def add(self, data: RunData, roles: dict) -> None:
        self.items.append((data, roles))
        self.points += sum(len(s) for s in data.series)

    def full(self) -> bool:
        return (len(self.items) >= self.runs or self.points >= BATCH_POINTS
                or monotonic() - self.started >= BATCH_SECONDS)


def _write(store: Store, source_id: int, batch: Batch, fail_fast: bool, failures: list[str],
           failed: set[str | None]) -> list[tuple[RunData, WriteResult]]:
    """Write a batch in one transaction; a run the store refuses makes it go run by run (the others are
    written, the refused one is named in ``failures``)."""
    if not batch.items:
        return []
    try:
        return list(zip([d for d, _ in batch.items], store.write_runs(source_id, batch.items), strict=True))
    except RecordError:
        if fail_fast and len(batch.items) == 1:
            raise
    done = []
    for data, roles in batch.items:
        try:
            done.append((data, store.write_run(source_id, data, roles)))
        except RecordError as exc:
            if fail_fast:
                raise
            failures.append(str(exc))
            failed.add(data.origin)
    return done


def _count(done: list[tuple[RunData, WriteResult]], runs_seen: int, points: int, changed: list[int],
           notes: list[str]) -> tuple[int, int]:
    """The counts with a written batch added (before its progress is reported: a progress callback that stops
    the sync, the scheduler's on a signal, finds every run of the batch counted, as its transaction stored them)."""
    for data, res in done:
        runs_seen += 1
        points += res.points
        if res.points:
            changed.append(res.run_id)
        notes.extend(f"{data.run.name}: {n}" for n in data.notes)
        notes.extend(data.notices)
    return runs_seen, points


def _report(progress: Progress | None, runs_seen: int, total: int | None,
            done: list[tuple[RunData, WriteResult]]) -> None:
    if progress and done:
        progress(runs_seen, total, done[-1][0].run.name)


_SECRET_WORDS = ("token", "password", "secret", "api_key", "apikey")


def _stored_options(source: Source) -> dict:
    """Options worth remembering with the source (never credentials)."""
    return {k: v for k, v in source.options.items() if not any(w in k.lower() for w in _SECRET_WORDS)}
