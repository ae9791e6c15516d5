"""The sync engine: read a source, write new points run by run, keep a log, retry connection errors.

Each run is written in its own transaction (run row, new/changed points, watermarks, data version), so a
sync killed at any moment leaves every run either as before or fully updated; rerunning it fetches from the
watermarks and writes exactly what is missing. A ``sync_log`` row records every job: start, end, runs,
points and the error, if any.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from db import Store
from db.errors import StoreError
from ingest.base import Source
from ingest.errors import IngestError, SourceUnavailable
from ingest.keys import resolve_roles

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
    runs_seen, points, changed, notes = 0, 0, [], []
    attempt = 0
    while True:
        try:
            total = source.count_runs()
            for data in source.iter_runs(store.watermarks(source_id)):
                roles = resolve_roles(data.all_keys(), overrides)
                res = store.write_run(source_id, data, roles)
                runs_seen += 1
                points += res.points
                if res.points:
                    changed.append(res.run_id)
                notes.extend(f"{data.run.name}: {n}" for n in data.notes)
                if progress:
                    progress(runs_seen, total, data.run.name)
            break
        except SourceUnavailable as exc:
            attempt += 1
            if attempt > retries:
                store.finish_sync(log_id, runs=runs_seen, points=points, error=str(exc))
                raise
            wait = backoff * 2 ** (attempt - 1)
            log.warning("%s — retry %d/%d in %.0f s", exc, attempt, retries, wait)
            time.sleep(wait)
            source = type(source)(source.uri, source.options)  # fresh connection state
        except (IngestError, StoreError) as exc:
            store.finish_sync(log_id, runs=runs_seen, points=points, error=str(exc))
            raise
        except Exception as exc:  # an unexpected failure is still logged, then surfaces as IngestError
            store.finish_sync(log_id, runs=runs_seen, points=points, error=f"{type(exc).__name__}: {exc}")
            raise IngestError(f"ingest of {source.describe()} failed: {type(exc).__name__}: {exc}") from exc
    store.finish_sync(log_id, runs=runs_seen, points=points)
    return SyncResult(source_id, log_id, runs_seen, points, tuple(dict.fromkeys(changed)), tuple(notes))


_SECRET_WORDS = ("token", "password", "secret", "api_key", "apikey")


def _stored_options(source: Source) -> dict:
    """Options worth remembering with the source (never credentials)."""
    return {k: v for k, v in source.options.items() if not any(w in k.lower() for w in _SECRET_WORDS)}
